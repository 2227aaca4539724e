"""The sentiment model: raw text -> tokens -> Embedding -> recurrent layers ->
pooled -> probability, with an optional linear path over n-grams beside it.
Cleaning and vocabulary are layers of the model."""

import collections

import keras
import numpy as np
import tensorflow as tf

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


def make_vectorizer(config, vocabulary):
    """The model's TextVectorization: the `vocab_size - 2` most frequent words
    (padding and [UNK] take two ids); a batch is as long as its longest text."""
    return keras.layers.TextVectorization(
        max_tokens=config["vocab_size"],
        standardize=clean_review,
        vocabulary=vocabulary[: config["vocab_size"] - 2],
        name="vectorizer",
    )


@keras.saving.register_keras_serializable(package="seqapps")
class FeatureScaling(keras.layers.Layer):
    """Multiplies each feature by a fixed factor: a weight, not trained, that is
    saved with the model's weights rather than in its config."""

    def build(self, input_shape):
        self.factors = self.add_weight(shape=(input_shape[-1],), initializer="ones", trainable=False, name="factors")

    def call(self, inputs):
        return inputs * self.factors


def ngram_logit(reviews, text):
    """A linear model over NBSVM's features (Wang & Manning 2012): binary unigrams and
    bigrams scaled by their naive-Bayes log-count ratios, which also scale how fast
    Adam moves each feature's weight, so telling n-grams learn first."""
    ngrams = keras.layers.TextVectorization(
        standardize=clean_review,
        ngrams=2,
        output_mode="multi_hot",
        vocabulary=list(reviews.ngrams),
        name="ngram_vectorizer",
    )(text)
    scaling = FeatureScaling(name="naive_bayes_ratios")
    x = scaling(ngrams)
    scaling.factors.assign(np.concatenate([[0.0], reviews.ngram_ratios]))  # [UNK] first
    return keras.layers.Dense(1, kernel_initializer="zeros", name="ngram_logit")(x)


def build_model(config, reviews):
    """The compiled model for `config`, with the vocabulary of `reviews` (`data.Reviews`)."""
    text = keras.Input(shape=(), dtype="string", name="text")
    tokens = make_vectorizer(config, reviews.vocabulary)(text)
    if config["sequence_length"]:
        tokens = tokens[:, : config["sequence_length"]]
    # One padding step more: a batch of empty texts still has a (masked) time step.
    tokens = keras.ops.pad(tokens, [[0, 0], [0, 1]])
    x = keras.layers.Embedding(config["vocab_size"], config["embedding_dim"], mask_zero=True)(tokens)
    x = keras.layers.SpatialDropout1D(config["dropout"], seed=config["seed"])(x)
    for i in range(config["layers"]):
        x = make_rnn(
            config["cell"],
            config["units"],
            return_sequences=True,
            bidirectional=config["bidirectional"],
            dropout=config["dropout"] if i else 0.0,
            recurrent_dropout=config["recurrent_dropout"],
            seed=config["seed"] + i,
        )(x)
    x = GlobalMeanMaxPooling1D()(x)
    x = keras.layers.Dropout(config["dropout"], seed=config["seed"])(x)
    if config["ngram_features"]:
        logit = keras.layers.Dense(1, name="recurrent_logit")(x)
        logit = keras.layers.Add()([logit, ngram_logit(reviews, text)])
        probability = keras.layers.Activation("sigmoid", name="probability")(logit)
    else:
        probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(text, probability, name=f"sentiment_{config['cell']}")
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
