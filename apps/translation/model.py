"""The translation model: encoder, attention, decoder, and text in and out."""

import keras
import tensorflow as tf
from keras import ops

from seqapps.apps.translation import decoding
from seqapps.apps.translation.text import END, START, capitalize, detokenize_text, normalize_text, sentence_initial
from seqapps.layers import make_attention, make_rnn


@keras.saving.register_keras_serializable(package="seqapps")
def masked_loss(y_true, y_pred):
    """Cross-entropy per target word, averaged over the real words of the batch (id 0 is
    padding): the training loss. Keras averages it over an epoch by sentences, so with
    length-bucketed batches it is not a per-word figure; `TokenCrossEntropy` is."""
    mask = ops.cast(ops.not_equal(y_true, 0), y_pred.dtype)
    loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)


def word_hits(y_true, y_pred):
    return ops.cast(ops.equal(ops.cast(y_true, "int32"), ops.cast(ops.argmax(y_pred, -1), "int32")), "float32")


@keras.saving.register_keras_serializable(package="seqapps")
def masked_accuracy(y_true, y_pred):
    """The share of real target words of a batch predicted right: the metric of runs
    written before `TokenAccuracy`, kept so that they load and resume."""
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    return ops.sum(word_hits(y_true, y_pred) * mask) / ops.maximum(ops.sum(mask), 1.0)


class PerWord(keras.metrics.Metric):
    """A sum over all real target words seen since the last reset (id 0 is padding),
    divided by their number: a per-word figure of the whole epoch, whatever the batches."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.words = self.add_variable(shape=(), initializer="zeros", name="words")

    def per_word(self, y_true, y_pred):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        mask = ops.cast(ops.not_equal(y_true, 0), "float32")
        self.total.assign_add(ops.sum(ops.cast(self.per_word(y_true, y_pred), "float32") * mask))
        self.words.assign_add(ops.sum(mask))

    def result(self):
        return self.total / ops.maximum(self.words, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.words.assign(0.0)


@keras.saving.register_keras_serializable(package="seqapps")
class TokenCrossEntropy(PerWord):
    """The cross-entropy per real target word over the epoch: what early stopping follows."""

    def __init__(self, name="token_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_word(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


@keras.saving.register_keras_serializable(package="seqapps")
class TokenAccuracy(PerWord):
    """The share of real target words predicted right over the epoch."""

    def __init__(self, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_word(self, y_true, y_pred):
        return word_hits(y_true, y_pred)


def attended_words(attention, source_words):
    """For each target step, the source word its attention weighs most."""
    return tf.gather(source_words, tf.argmax(attention, -1, output_type=tf.int32), batch_dims=1)


@keras.saving.register_keras_serializable(package="seqapps")
class Translator(keras.Model):
    """Encoder-decoder with attention, from raw source text to raw target text.

    `call((source_ids, target_in_ids))` gives the next-word logits under teacher
    forcing (for `fit`); `translate(texts)` decodes greedily or with beam search and
    writes the words out: an unknown word becomes the source word it attended to most,
    the others take their usual case (`casing`), and sentences start with a capital.

    Args:
        config: The app config (see `OPTIONS` in `seqapps.apps.translation`).
        source_vocabulary, target_vocabulary: Words by frequency, without padding and [UNK].
        casing: {word: its usual written form} for the target words not written in
            lower case ("i": "I", "tom": "Tom"); empty for a cased model.
    """

    def __init__(self, config, source_vocabulary, target_vocabulary, casing=None, **kwargs):
        super().__init__(name=kwargs.pop("name", f"translator_{config['cell']}_{config['attention']}"), **kwargs)
        self.config = dict(config)
        self.source_vocabulary, self.target_vocabulary = list(source_vocabulary), list(target_vocabulary)
        # A run of an earlier version has no casing: its words only get sentence capitals.
        self.casing = dict(casing or {})
        for token in (START, END):
            if token not in self.target_vocabulary:
                raise ValueError(f"the target vocabulary lacks {token}")
        c = self.config
        self.source_lookup = keras.layers.StringLookup(vocabulary=self.source_vocabulary, mask_token="")
        self.target_lookup = keras.layers.StringLookup(vocabulary=self.target_vocabulary, mask_token="")
        # Each target id's word as written; ids 0 and 1 are padding and [UNK].
        self.written_target_words = tf.constant(["", "[UNK]"] + [self.casing.get(w, w) for w in self.target_vocabulary])
        self.start_id = self.target_vocabulary.index(START) + 2
        self.end_id = self.target_vocabulary.index(END) + 2
        self.source_embedding = keras.layers.Embedding(len(self.source_vocabulary) + 2, c["embedding_dim"])
        self.target_embedding = keras.layers.Embedding(len(self.target_vocabulary) + 2, c["embedding_dim"])
        self.dropout = keras.layers.Dropout(c["dropout"], seed=c["seed"])
        self.encoder = [
            make_rnn(
                c["cell"],
                c["units"],
                return_sequences=True,
                return_state=i == c["layers"] - 1,
                bidirectional=c["bidirectional"],
                dropout=c["dropout"] if i else 0.0,
                recurrent_dropout=c["recurrent_dropout"],
                seed=c["seed"] + i,
                name=f"encoder_{i}",
            )
            for i in range(c["layers"])
        ]
        # The decoder is as wide as the encoder outputs: it starts from the encoder's
        # final states (both directions side by side), and `dot` attention needs it.
        self.decoder_units = c["units"] * (2 if c["bidirectional"] else 1)
        self.decoder = make_rnn(
            c["cell"],
            self.decoder_units,
            return_sequences=True,
            return_state=True,
            recurrent_dropout=c["recurrent_dropout"],
            seed=c["seed"] + c["layers"],
            name="decoder",
        )
        self.attention = make_attention(c["attention"], self.decoder_units)
        # Luong et al.'s attentional state: tanh(W [decoder output; context]).
        self.attention_combine = keras.layers.Dense(self.decoder_units, activation="tanh", use_bias=False)
        # float32 logits whatever the dtype policy, for a stable softmax and loss.
        self.next_word = keras.layers.Dense(len(self.target_vocabulary) + 2, name="next_word", dtype="float32")
        self.build()

    def build(self, input_shape=None):
        width = self.config["embedding_dim"]
        self.source_embedding.build((None, None))
        self.target_embedding.build((None, None))
        for layer in self.encoder:
            layer.build((None, None, width))
            width = self.decoder_units
        self.decoder.build((None, None, self.config["embedding_dim"]))
        self.attention.build((None, None, self.decoder_units), (None, None, self.decoder_units))
        self.attention_combine.build((None, None, 2 * self.decoder_units))
        self.next_word.build((None, None, self.decoder_units))
        self.built = True

    def get_config(self):
        return {
            "config": self.config,
            "source_vocabulary": self.source_vocabulary,
            "target_vocabulary": self.target_vocabulary,
            "casing": self.casing,
            "name": self.name,
        }

    # Text <-> ids. Sources end with [END], so even an empty sentence has a word.

    def source_words(self, texts):
        """The source words as written (normalised, not lower-cased), [END] appended."""
        words = tf.strings.split(normalize_text(texts, lowercase=False))[:, : self.config["max_length"] - 1]
        return tf.concat([words, tf.fill([tf.shape(texts)[0], 1], END)], 1)

    def source_lookup_ids(self, written_words):
        """Ids of padded source words as written."""
        words = written_words
        if self.config["lowercase"]:
            words = tf.where(words == END, END, tf.strings.lower(words, encoding="utf-8"))
        return self.source_lookup(words)

    def source_ids(self, texts):
        return self.source_lookup_ids(self.source_words(texts).to_tensor(""))

    def target_ids(self, texts):
        """[START] words [END], at most max_length + 1 ids, padded with 0."""
        words = tf.strings.split(normalize_text(texts, self.config["lowercase"]))[:, : self.config["max_length"]]
        batch = tf.shape(texts)[0]
        words = tf.concat([tf.fill([batch, 1], START), words, tf.fill([batch, 1], END)], 1)
        return self.target_lookup(words.to_tensor(""))

    def written_words(self, ids, attention, source_words):
        """Target ids (batch, steps) -> words as written, "" after the end. An unknown
        word is the source word it attended to most, copied as written there (Luong et
        al. 2015's unknown-word replacement, which carries names and numbers over)."""
        words = tf.gather(self.written_target_words, ids)
        copied = attended_words(attention, source_words)
        words = tf.where(ids == 1, tf.where(copied == END, "", copied), words)  # 1: StringLookup's [UNK]
        words = tf.where((ids == 0) | (ids == self.start_id) | (ids == self.end_id), "", words)
        return tf.where(sentence_initial(words), capitalize(words), words)

    # The network.

    def encode(self, source_ids, training=False):
        mask = ops.not_equal(source_ids, 0)
        x = self.dropout(self.source_embedding(source_ids), training=training)
        for layer in self.encoder:
            x = layer(x, mask=mask, training=training)
        outputs, *states = x
        if self.config["bidirectional"]:  # forward and backward final states side by side
            half = len(states) // 2
            states = [ops.concatenate([f, b], -1) for f, b in zip(states[:half], states[half:], strict=True)]
        return outputs, mask, states

    def attend(self, decoded, encoded, source_mask, training=False):
        """Next-word logits and attention weights from decoder outputs (batch, steps, units)."""
        context, weights = self.attention(decoded, encoded, mask=source_mask)
        attentional = self.attention_combine(ops.concatenate([decoded, context], -1))
        return self.next_word(self.dropout(attentional, training=training)), weights

    def call(self, inputs, training=False):
        source_ids, target_in_ids = inputs
        encoded, source_mask, states = self.encode(source_ids, training)
        y = self.dropout(self.target_embedding(target_in_ids), training=training)
        decoded, *_ = self.decoder(y, initial_state=states, mask=ops.not_equal(target_in_ids, 0), training=training)
        return self.attend(decoded, encoded, source_mask, training)[0]

    def decode_step(self, word_ids, encoded, source_mask, states):
        """One decoder step for the previous words (batch,): logits, new states, attention."""
        h, states = self.decoder.cell(self.target_embedding(word_ids), states)
        logits, weights = self.attend(h[:, None, :], encoded, source_mask)
        return logits[:, 0], list(states), weights[:, 0]

    def decode(self, texts, beam_size=1):
        """The best translations of a batch of strings as target ids (batch, steps), with
        their attention weights and the source words: greedy for beam_size 1, else beam search."""
        source_words = self.source_words(texts).to_tensor("")
        source_ids = self.source_lookup_ids(source_words)
        max_length = self.config["max_length"] + 1  # the words and [END]
        if beam_size == 1:
            ids, attention = decoding.greedy_search(self, source_ids, max_length)
        else:
            ids, attention = decoding.beam_search(
                self, source_ids, max_length, beam_size, self.config["length_penalty"]
            )
        return ids, attention, source_words

    def translate(self, texts, beam_size=1, return_attention=False):
        """Translations of a batch of strings (see `decode`). With return_attention,
        also the words in and out and the attention weights."""
        ids, attention, source_words = self.decode(texts, beam_size)
        words = self.written_words(ids, attention, source_words)
        translations = self.joined(words)
        if not return_attention:
            return translations
        return translations, source_words, words, attention

    def joined(self, words):
        return detokenize_text(tf.strings.reduce_join(words, axis=-1, separator=" "))

    def unknown_words(self, ids, attention, source_words):
        """Per sentence: how many of its words the model did not know (the [UNK] it
        wrote), and how many of those were replaced by a source word (the rest, which
        attended to the end of the source, were left out)."""
        unknown = ids == 1
        copied = unknown & (attended_words(attention, source_words) != END)
        return tf.reduce_sum(tf.cast(unknown, tf.int32), -1), tf.reduce_sum(tf.cast(copied, tf.int32), -1)


def build_model(config, pairs):
    """The compiled Translator for `config`, with the vocabularies and casing of `pairs` (`data.Pairs`)."""
    model = Translator(config, pairs.source_vocabulary, pairs.target_vocabulary, pairs.casing)
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"], clipnorm=5.0),
        loss=masked_loss,
        metrics=[TokenCrossEntropy(), TokenAccuracy()],
    )
    return model
