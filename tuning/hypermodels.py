"""One KerasTuner HyperModel per app, built from the app's own code.

A HyperModel loads its app's data once, then for each trial turns the hyperparameters
into an app config (the app's DEFAULTS, then fixed options, then the trial's choices)
and calls the app's `build_model` and `dataset`: the tuned model is the app's model.
"""

import keras
import keras_tuner
import numpy as np

from apps import forecasting, sentiment, translation
from layers import ATTENTIONS, CELLS


def recurrent_space(hp, units=(32, 64, 128), bidirectional=True):
    """Choices every app tunes: the cell first of all."""
    return {
        "cell": hp.Choice("cell", list(CELLS)),
        "units": hp.Choice("units", list(units)),
        "layers": hp.Int("layers", 1, 2),
        **({"bidirectional": hp.Boolean("bidirectional", default=True)} if bidirectional else {}),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.05),
        "recurrent_dropout": hp.Float("recurrent_dropout", 0.0, 0.3, step=0.05),
        "learning_rate": hp.Float("learning_rate", 1e-4, 3e-3, sampling="log"),
        "batch_size": hp.Choice("batch_size", [32, 64, 128]),
    }


class FailOnNaN(keras.callbacks.Callback):
    """Ends a diverged trial as failed, so the search records it and goes on."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise keras_tuner.errors.FailedTrialError(f"loss became {loss} at batch {batch}")


class AppHyperModel(keras_tuner.HyperModel):
    """What the apps' HyperModels share: config from hyperparameters, a fresh session
    per trial (memory stays flat), the NaN guard. Subclasses set `app`, `objective`
    and implement `load`, `space`, `build_model` and `datasets` (of the trial's config and model)."""

    app = None
    objective = None

    def __init__(self, data_dir=None, limit=None, seed=1337, options=None):
        super().__init__(name=self.app.__name__.split(".")[-1])
        self.data_dir, self.limit, self.seed = data_dir, limit, seed
        self.options = dict(options or {})
        # What no trial changes: the app's defaults, the fixed options, the data.
        self.fixed = {**self.app.DEFAULTS, **self.options, "seed": seed, "limit": limit, "data_dir": data_dir}
        self.load()

    def config(self, hp):
        return {**self.fixed, **self.space(hp)}

    def build(self, hp):
        keras.backend.clear_session()
        keras.utils.set_random_seed(self.seed)
        return self.build_model(self.config(hp))

    def fit(self, hp, model, callbacks=None, **kwargs):
        train, validation = self.datasets(self.config(hp), model)
        return model.fit(
            train, validation_data=validation, callbacks=[*(callbacks or []), FailOnNaN()], shuffle=False, **kwargs
        )


class SentimentHyperModel(AppHyperModel):
    app = sentiment
    objective = keras_tuner.Objective("val_accuracy", "max")
    vocab_sizes = [5000, 10000, 20000]

    def load(self):
        texts, labels = sentiment.sample(
            *sentiment.load_imdb(self.data_dir, splits=("train",))["train"], self.limit, self.seed
        )
        self.train, self.validation = sentiment.split_validation(
            texts, labels, self.fixed["validation_fraction"], self.seed
        )
        self.vocabulary = sentiment.adapt_vocabulary(self.train[0], max(self.vocab_sizes))

    def space(self, hp):
        return {
            **recurrent_space(hp),
            "vocab_size": hp.Choice("vocab_size", self.vocab_sizes),
            "embedding_dim": hp.Choice("embedding_dim", [64, 128, 256]),
            "sequence_length": hp.Choice("sequence_length", [200, 300, 400, 600]),
        }

    def build_model(self, config):
        return sentiment.build_model(config, sentiment.make_vectorizer(config, self.vocabulary))

    def datasets(self, config, model):
        return (
            sentiment.dataset(*self.train, config["batch_size"], shuffle_seed=self.seed),
            sentiment.dataset(*self.validation, config["batch_size"]),
        )


class ForecastingHyperModel(AppHyperModel):
    app = forecasting
    objective = keras_tuner.Objective("val_loss", "min")

    def load(self):
        self.series = forecasting.load_series(self.fixed, self.data_dir)

    def space(self, hp):
        # Lookbacks around the configured one, whole numbers of segments.
        base, segment = self.fixed["lookback"], self.fixed["segment"]
        lookbacks = sorted({max(segment, round(base * f / segment) * segment) for f in (0.5, 1, 2)})
        return {
            **recurrent_space(hp, units=(64, 128, 256), bidirectional=False),
            "lookback": hp.Choice("lookback", lookbacks),
        }

    def series_for(self, config):
        """The loaded series with the split bounds of this trial's lookback."""
        bounds = forecasting.split_bounds(len(self.series["values"]), config["dataset"], config["lookback"])
        return {**self.series, "bounds": bounds}

    def build_model(self, config):
        return forecasting.build_model(config, self.series_for(config))

    def datasets(self, config, model):
        series = self.series_for(config)
        return (
            forecasting.dataset(series, "train", config, shuffle_seed=self.seed),
            forecasting.dataset(series, "val", config),
        )


class TranslationHyperModel(AppHyperModel):
    app = translation
    objective = keras_tuner.Objective("val_loss", "min")

    def load(self):
        data = translation.split_data(self.fixed)
        self.train, self.validation = data["train"], data["validation"]
        self.vocabularies = translation.adapt_vocabularies(self.fixed, *self.train)

    def space(self, hp):
        return {
            **recurrent_space(hp, units=(64, 128, 256)),
            "attention": hp.Choice("attention", list(ATTENTIONS)),
            "embedding_dim": hp.Choice("embedding_dim", [128, 256]),
        }

    def build_model(self, config):
        return translation.build_model(config, *self.vocabularies)

    def datasets(self, config, model):
        return (
            translation.dataset(model, *self.train, config["batch_size"], shuffle_seed=self.seed),
            translation.dataset(model, *self.validation, config["batch_size"]),
        )


HYPERMODELS = {
    "sentiment": SentimentHyperModel,
    "translation": TranslationHyperModel,
    "forecasting": ForecastingHyperModel,
}
