"""The sentiment model: raw text -> tokens -> Embedding -> recurrent layers ->
pooled -> probability, and after training an optional linear path over n-grams
beside it (the baseline's model), the two blended. Cleaning and vocabularies are layers of
the model."""

import collections
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

from seqapps.apps import runs
from seqapps.apps.cli import string_tensor
from seqapps.layers import GlobalMeanMaxPooling1D, make_rnn


@keras.saving.register_keras_serializable(package="seqapps")
def clean_review(text):
    """Lower-case, <br /> tags and punctuation to spaces; invalid UTF-8 bytes become U+FFFD."""
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    text = tf.strings.regex_replace(text, "'", "")
    return tf.strings.regex_replace(text, r"[^\pL\pN\s]", " ")


def token_lists(texts, chunk=2000):
    """The tokens of each text as the vectorizer splits them (bytes), `chunk` texts at a time."""
    for start in range(0, len(texts), chunk):
        cleaned = clean_review(string_tensor(texts[start : start + chunk]))
        yield from tf.strings.split(cleaned).to_list()


def adapt_vocabulary(train_texts):
    """Every token of the training texts, most frequent first, ties in the order of
    TextVectorization.adapt (so any prefix is the vocabulary of that size). Counted
    here rather than by `adapt`, which holds about 2 GB while it counts IMDB."""
    counts = collections.Counter()
    for tokens in token_lists(train_texts):
        counts.update(tokens)
    ranked = sorted(counts.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return [token.decode() for token, _ in ranked]


def token_counts(texts, sequence_length=None):
    """How many tokens the model reads of each text (at most `sequence_length`)."""
    counts = np.array([len(tokens) for tokens in token_lists(texts)], dtype=np.int32)
    return counts if sequence_length is None else np.minimum(counts, sequence_length)


def make_vectorizer(config, vocabulary, ragged=False):
    """The model's TextVectorization: the `vocab_size - 2` most frequent words
    (padding and [UNK] take two ids); a batch is as long as its longest text, or
    `ragged`, each text as long as it is."""
    return keras.layers.TextVectorization(
        max_tokens=config["vocab_size"],
        standardize=clean_review,
        vocabulary=vocabulary[: config["vocab_size"] - 2],
        ragged=ragged,
        name="vectorizer",
    )


def ngram_logit(classifier, text):
    """The logit of the bag-of-n-grams baseline (`baseline.NgramClassifier`, fitted on
    the training split): a fixed linear layer over the text's binary unigrams and bigrams."""
    ngrams = keras.layers.TextVectorization(
        standardize=clean_review,
        ngrams=2,
        output_mode="multi_hot",
        vocabulary=classifier.ngrams,
        name="ngram_vectorizer",
    )(text)
    linear = keras.layers.Dense(1, trainable=False, name="ngram_logit")
    logit = linear(ngrams)
    unknown_first = np.concatenate([[0.0], classifier.weights])
    linear.set_weights([unknown_first[:, None], np.array([classifier.bias])])
    return logit


def predict_by_length(model, texts, batch_size=64):
    """`model.predict(texts)`, computed shortest text first (batches of similar length
    run few padding steps) and returned in the order of `texts`. The batch of the
    longest IMDB reviews holds `batch_size` x 2,500 tokens: at 256 it took 4.3 GB."""
    order = np.argsort(token_counts(texts), kind="stable")
    outputs = model.predict(string_tensor(texts[order]), batch_size=batch_size, verbose=1)
    in_order = np.empty_like(outputs)
    in_order[order] = outputs
    return in_order


def with_ngram_path(model, classifier, validation):
    """The final model: the trained recurrent `model` and the n-gram path of `classifier`
    side by side, weighed by the logistic regression of the `validation` (texts,
    labels) on their two logits. Learned on reviews that neither path was fitted on,
    since the n-gram path fits its training reviews almost perfectly (stacking).
    Returns the model, and the weights and validation accuracy of each path and of both."""
    text = model.input
    logits = keras.layers.Concatenate()([model.get_layer("recurrent_logit").output, ngram_logit(classifier, text)])
    texts, labels = validation
    validation_logits = predict_by_length(keras.Model(text, logits), texts)
    fit = LogisticRegression().fit(validation_logits, labels)
    blend = keras.layers.Dense(1, activation="sigmoid", trainable=False, name="probability", dtype="float32")
    both = keras.Model(text, blend(logits), name=model.name)
    blend.set_weights([fit.coef_.T, fit.intercept_])  # not compiled: it is not trained further
    return both, {
        "recurrent_weight": float(fit.coef_[0, 0]),
        "ngram_weight": float(fit.coef_[0, 1]),
        "bias": float(fit.intercept_[0]),
        "recurrent_val_accuracy": float(np.mean((validation_logits[:, 0] >= 0) == labels)),
        "ngram_val_accuracy": float(np.mean((validation_logits[:, 1] >= 0) == labels)),
        "val_accuracy": float(np.mean(fit.predict(validation_logits) == labels)),
    }


def recurrent_probability(model):
    """The model that gives the probability of `model`'s recurrent path alone (the
    model itself when it has no n-gram path)."""
    if "ngram_logit" not in {layer.name for layer in model.layers}:
        return model
    probability = keras.layers.Activation("sigmoid", name="recurrent_probability")
    return keras.Model(model.input, probability(model.get_layer("recurrent_logit").output))


def pretrained_layers(config):
    """The layers a classifier takes from its language model, top recurrent layer first."""
    return [f"recurrent_{i}" for i in range(config["layers"], 0, -1)] + ["embedding"]


def start_from_pretrained(model, config):
    """Gives `model` the embedding and recurrent layers of the language model of the
    `sentiment pretrain` run in config["pretrained"] (layers of the same names)."""
    from seqapps.apps.sentiment import pretraining  # noqa: F401  (registers its layers; it imports this module)

    language_model = runs.load_model(Path(config["pretrained"]) / "model.keras")
    print(f"Starting from the embedding and recurrent layers of {config['pretrained']}")
    for name in pretrained_layers(config):
        model.get_layer(name).set_weights(language_model.get_layer(name).get_weights())


def recurrent_layers(config, tokens, merge_mode="concat"):
    """The word ids `tokens` through the embedding (masked, spatial dropout) and the
    recurrent layers of `config`: the layers that `sentiment pretrain` trains and `train
    --pretrained` copies, by their names ("embedding", "recurrent_1", ...)."""
    x = keras.layers.Embedding(config["vocab_size"], config["embedding_dim"], mask_zero=True, name="embedding")(tokens)
    x = keras.layers.SpatialDropout1D(config["dropout"], seed=config["seed"])(x)
    for i in range(config["layers"]):
        x = make_rnn(
            config["cell"],
            config["units"],
            return_sequences=True,
            bidirectional=config["bidirectional"],
            merge_mode=merge_mode,
            dropout=config["dropout"] if i else 0.0,
            recurrent_dropout=config["recurrent_dropout"],
            seed=config["seed"] + i,
            name=f"recurrent_{i + 1}",
        )(x)
    return x


@keras.saving.register_keras_serializable(package="seqapps")
class LayerwiseAdam(keras.optimizers.Adam):
    """Adam whose learning rate is scaled for the variables of some layers, and zero
    for some until a given step: ULMFiT's discriminative fine-tuning (lower layers
    learning more slowly than the new head) and gradual unfreezing (the head learning
    alone first, then one layer more at a time, from the top).

    Args:
        layer_rates: layer name -> factor of the learning rate for its variables
            (the others get the rate itself).
        layer_start_steps: layer name -> the training step from which its variables
            learn (the others learn from the first). Before it, their gradients
            still feed Adam's moments.
        **kwargs: Adam's.
    """

    def __init__(self, layer_rates=None, layer_start_steps=None, **kwargs):
        super().__init__(**kwargs)
        self.layer_rates = dict(layer_rates or {})
        self.layer_start_steps = dict(layer_start_steps or {})

    def build(self, variables):
        super().build(variables)
        # update_step may be handed the backend's variable (a tf.Variable): keyed as the optimizer keys its slots.
        layers = {self._var_key(v): v.path.split("/")[0] for v in variables}
        self.factors = {key: self.layer_rates.get(layer, 1.0) for key, layer in layers.items()}
        self.start_steps = {key: self.layer_start_steps.get(layer, 0) for key, layer in layers.items()}

    def update_step(self, gradient, variable, learning_rate):
        key = self._var_key(variable)
        learning_rate = learning_rate * self.factors[key]
        if self.start_steps[key]:
            thawed = keras.ops.greater_equal(self.iterations, self.start_steps[key])
            learning_rate = learning_rate * keras.ops.cast(thawed, learning_rate.dtype)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "layer_rates": self.layer_rates, "layer_start_steps": self.layer_start_steps}


@keras.saving.register_keras_serializable(package="seqapps")
class SlantedTriangular(keras.optimizers.schedules.LearningRateSchedule):
    """ULMFiT's slanted triangular learning rates (Howard & Ruder 2018, eq. 3): a short
    linear climb to the maximal rate, then a long linear fall back.

        cut = floor(total_steps * cut_fraction)
        p = step / cut                                  if step < cut
            1 - (step - cut) / (total_steps - cut)      otherwise, at least 0
        rate = maximal_learning_rate * (1 + p * (ratio - 1)) / ratio

    Args:
        maximal_learning_rate: the rate at the top of the climb.
        total_steps: the training steps the triangle spans (every epoch's).
        cut_fraction: share of the steps spent climbing (ULMFiT: 0.1).
        ratio: how many times smaller the first and last rates are (ULMFiT: 32).
    """

    def __init__(self, maximal_learning_rate, total_steps, cut_fraction=0.1, ratio=32.0):
        self.maximal_learning_rate = maximal_learning_rate
        self.total_steps = total_steps
        self.cut_fraction = cut_fraction
        self.ratio = ratio

    def __call__(self, step):
        cut = max(1, int(self.total_steps * self.cut_fraction))
        step = keras.ops.cast(step, "float32")
        climbing = step / cut
        falling = 1 - (step - cut) / max(1, self.total_steps - cut)
        p = keras.ops.maximum(keras.ops.where(step < cut, climbing, falling), 0.0)
        return self.maximal_learning_rate * (1 + p * (self.ratio - 1)) / self.ratio

    def get_config(self):
        return {
            "maximal_learning_rate": self.maximal_learning_rate,
            "total_steps": self.total_steps,
            "cut_fraction": self.cut_fraction,
            "ratio": self.ratio,
        }


def layer_rates(config):
    """With --layer-lr-decay d: the top recurrent layer learns at the rate / d, each one
    below it d times more slowly, the embedding slowest (the head at the rate itself)."""
    return {name: config["layer_lr_decay"] ** -(depth + 1) for depth, name in enumerate(pretrained_layers(config))}


def layer_start_steps(config, steps_per_epoch):
    """With --gradual-unfreezing: the first epoch trains the head alone, each later one
    one layer more, from the top recurrent layer down to the embedding."""
    return {name: (depth + 1) * steps_per_epoch for depth, name in enumerate(pretrained_layers(config))}


def build_model(config, reviews):
    """The compiled model for `config`, with the vocabulary of `reviews` (`data.Reviews`)."""
    text = keras.Input(shape=(), dtype="string", name="text")
    tokens = make_vectorizer(config, reviews.vocabulary)(text)
    if config["sequence_length"]:
        tokens = tokens[:, : config["sequence_length"]]
    # One padding step more: a batch of empty texts still has a (masked) time step.
    tokens = keras.ops.pad(tokens, [[0, 0], [0, 1]])
    x = GlobalMeanMaxPooling1D()(recurrent_layers(config, tokens))
    x = keras.layers.Dropout(config["dropout"], seed=config["seed"])(x)
    # The recurrent model trains alone; with --ngram-features, with_ngram_path adds the
    # n-gram path after training.
    logit = keras.layers.Dense(1, name="recurrent_logit", dtype="float32")(x)
    probability = keras.layers.Activation("sigmoid", name="probability", dtype="float32")(logit)
    model = keras.Model(text, probability, name=f"sentiment_{config['cell']}")
    if config.get("pretrained"):
        start_from_pretrained(model, config)
    # Runs written before these options have none of them.
    rates = layer_rates(config) if config.get("layer_lr_decay", 1.0) != 1 else {}
    slanted = config.get("lr_schedule", "constant") == "slanted-triangular"
    starts, learning_rate = {}, config["learning_rate"]
    if slanted or config.get("gradual_unfreezing"):
        from seqapps.apps.sentiment.data import training_batches  # (it imports this module)

        steps_per_epoch = training_batches(config, reviews)
        if slanted:
            learning_rate = SlantedTriangular(learning_rate, config["epochs"] * steps_per_epoch)
        if config.get("gradual_unfreezing"):
            starts = layer_start_steps(config, steps_per_epoch)
    if rates or starts:
        optimizer = LayerwiseAdam(rates, starts, learning_rate=learning_rate)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(
        optimizer=optimizer,
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
