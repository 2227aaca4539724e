"""The sentiment model: raw text -> tokens -> Embedding -> recurrent layers ->
pooled -> probability. Cleaning and vocabulary are layers of the model."""

import keras
import tensorflow as tf

from seqapps.layers import GlobalMeanMaxPooling1D, make_rnn


@keras.saving.register_keras_serializable(package="seqapps")
def clean_review(text):
    """Lower-case, <br /> tags and punctuation to spaces; invalid UTF-8 bytes become U+FFFD."""
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    text = tf.strings.regex_replace(text, "'", "")
    return tf.strings.regex_replace(text, r"[^\pL\pN\s]", " ")


def adapt_vocabulary(train_texts):
    """Every token of the training texts, most frequent first (ties in a fixed order),
    so that any prefix is the vocabulary of that size."""
    vectorizer = keras.layers.TextVectorization(standardize=clean_review)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_texts.astype(str)).batch(512))
    return vectorizer.get_vocabulary(include_special_tokens=False)


def make_vectorizer(config, vocabulary):
    """The model's TextVectorization: the `vocab_size - 2` most frequent words
    (padding and [UNK] take two ids), `sequence_length` tokens per review."""
    return keras.layers.TextVectorization(
        max_tokens=config["vocab_size"],
        standardize=clean_review,
        output_sequence_length=config["sequence_length"],
        vocabulary=vocabulary[: config["vocab_size"] - 2],
        name="vectorizer",
    )


def build_model(config, reviews):
    """The compiled model for `config`, with the vocabulary of `reviews` (`data.Reviews`)."""
    text = keras.Input(shape=(), dtype="string", name="text")
    tokens = make_vectorizer(config, reviews.vocabulary)(text)
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
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(text, probability, name=f"sentiment_{config['cell']}")
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
