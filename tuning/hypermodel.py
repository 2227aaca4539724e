"""One KerasTuner HyperModel for every app, built from the app's own contract
(`seqapps.apps.app.App`): the tuned model is the app's model.

The data is loaded once, with the fixed config; each trial extends that config with
the hyperparameters of the app's search space, then builds the app's model and
datasets from it.
"""

import keras
import keras_tuner
import numpy as np


class FailOnNaN(keras.callbacks.Callback):
    """Ends a diverged trial as failed, so the search records it and goes on."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise keras_tuner.errors.FailedTrialError(f"loss became {loss} at batch {batch}")


class AppHyperModel(keras_tuner.HyperModel):
    """The HyperModel of `app`.

    Args:
        app: An `seqapps.apps.app.App`.
        config: What no trial changes: the app's defaults, the options set for the
            search, `data_dir`, `limit` and `seed`.
        objective: The `keras_tuner.Objective` trials are scored on (default: the
            metric the app monitors).
    """

    def __init__(self, app, config, objective=None):
        super().__init__(name=app.name)
        self.app = app
        self.fixed = app.complete_config(dict(config))
        self.objective = objective or keras_tuner.Objective(app.monitor, app.mode)
        self.data = app.load(self.fixed)  # with the search's seed: every execution has the same splits
        self.seed = self.fixed["seed"]  # of the model's initialisation and the shuffle; the tuner sets it per execution

    def config(self, hp):
        return {**self.fixed, **self.app.search_space(hp, self.fixed), "seed": self.seed}

    def build(self, hp):
        # KerasTuner clears the session before (a fresh one per trial: memory stays flat), outside the
        # distribution strategy's scope; clearing it inside would drop the scope.
        keras.utils.set_random_seed(self.seed)
        return self.app.build_model(self.config(hp), self.data)

    def fit(self, hp, model, callbacks=None, **kwargs):
        train, validation = self.app.datasets(self.config(hp), self.data, model)
        return model.fit(
            train, validation_data=validation, callbacks=[*(callbacks or []), FailOnNaN()], shuffle=False, **kwargs
        )
