"""`seqapps sentiment pretrain`: a language model over the reviews, whose embedding and
recurrent layers the classifier then starts from (`train --pretrained RUN_DIR`), as in
Dai & Le 2015 and ULMFiT (Howard & Ruder 2018).

It reads the 50,000 unlabeled reviews and the classifier's training reviews: never a
validation or test review of the classifier. A share of the unlabeled reviews is held
out; its perplexity is the run's validation score. The recurrent layers are the
classifier's: in a bidirectional one the forward direction predicts each next word and
the backward direction each previous word, so each direction learns what it will read.

The output layer: an exact softmax over a 20,000-word vocabulary costs 20,000 x units
multiply-adds per word, about 100 times the recurrent step's, more than 3 hours a pass
over IMDB's 17 million words on 2 cores. Training uses a sampled softmax instead (Jean
et al. 2015: the target against `--sampled` words drawn from a Zipfian distribution,
which the vocabulary's ranking by frequency matches); validation scores the exact
softmax, so its perplexity is the true one.
"""

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from seqapps.apps.batching import bucket_by_length
from seqapps.apps.cli import string_tensor
from seqapps.apps.sentiment.data import load_reviews, load_unlabeled, sample, split_seed
from seqapps.apps.sentiment.model import adapt_vocabulary, make_vectorizer, recurrent_layers

# The exact softmax of validation holds a (words x vocabulary) matrix: fewer segments per batch.
VALIDATION_BATCH_SIZE = 16


@dataclass
class Corpus:
    """What a pretraining run reads: the vocabulary (most frequent first) and the word
    ids of the training and held-out reviews, each as (ids of all reviews one after
    the other, number of words of each review)."""

    vocabulary: list[str]
    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]


def word_ids(config, vocabulary, texts, chunk=2000):
    """The ids the classifier's vectorizer gives the words of `texts`: (all ids, words per text)."""
    vectorize = make_vectorizer(config, vocabulary, ragged=True)
    progress = keras.utils.Progbar(len(texts), unit_name="review")
    ids, lengths = [], []
    for start in range(0, len(texts), chunk):
        ragged = vectorize(string_tensor(texts[start : start + chunk]))
        ids.append(ragged.flat_values.numpy().astype(np.int32))
        lengths.append(ragged.row_lengths().numpy())
        progress.update(min(start + chunk, len(texts)))
    return np.concatenate(ids), np.concatenate(lengths)


def pretraining_texts(config):
    """(texts to train on, held-out texts): the classifier's training reviews (its
    split, drawn as `train` draws it) and the unlabeled reviews, less a seeded
    --heldout-fraction of these, held out."""
    train_texts = load_reviews({**config, "dataset": "imdb"}, config["data_dir"], ("train",))["train"][0]
    unlabeled = load_unlabeled(config["data_dir"])
    unlabeled = sample(unlabeled, np.zeros(len(unlabeled)), config["limit"], split_seed(config))[0]
    order = np.random.default_rng(split_seed(config)).permutation(len(unlabeled))
    is_held_out = np.zeros(len(unlabeled), dtype=bool)
    is_held_out[order[: max(1, int(round(len(unlabeled) * config["heldout_fraction"])))]] = True
    print(
        f"Pretraining on {len(train_texts):,} training and {np.sum(~is_held_out):,} unlabeled reviews; "
        f"{np.sum(is_held_out):,} unlabeled reviews held out for validation"
    )
    return np.concatenate([train_texts, unlabeled[~is_held_out]]), unlabeled[is_held_out]


def load(config) -> Corpus:
    texts, held_out = pretraining_texts(config)
    vocabulary = adapt_vocabulary(texts)
    print("Reading the reviews as word ids ...")
    return Corpus(vocabulary, word_ids(config, vocabulary, texts), word_ids(config, vocabulary, held_out))


def segment_lengths(lengths, sequence_length):
    """Each text cut into segments of `sequence_length` words (its last one shorter)."""
    full = lengths // sequence_length
    rest = lengths % sequence_length
    pieces = [
        np.append(np.full(count, sequence_length), r) if r else np.full(count, sequence_length)
        for count, r in zip(full, rest, strict=True)
    ]
    return np.concatenate(pieces).astype(np.int32)


def prediction_targets(tokens, bidirectional):
    """What each position predicts, 0 where nothing: the next word (forward) and the
    previous word (backward, for a bidirectional model), stacked on the last axis."""
    next_words = tf.pad(tokens[:, 1:], [[0, 0], [0, 1]])
    if not bidirectional:
        return next_words[..., None]
    return tf.stack([next_words, tf.pad(tokens[:, :-1], [[0, 0], [1, 0]])], axis=-1)


def dataset(ids, lengths, config, batch_size, shuffle_seed=None):
    """((tokens, targets), targets) batches of segments of similar length."""
    lengths = segment_lengths(lengths, config["sequence_length"])
    starts = (np.cumsum(lengths) - lengths).astype(np.int32)
    ids = tf.constant(ids)
    ds = tf.data.Dataset.from_tensor_slices((starts, lengths))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(lengths), seed=shuffle_seed, reshuffle_each_iteration=True)
    boundaries = [b for b in (32, 64, 128, 192, 256, 384, 512) if b <= config["sequence_length"]]
    ds = ds.map(lambda start, n: (ids[start : start + n], n))
    ds = bucket_by_length(ds, lambda tokens, n: n, lengths, boundaries, [batch_size] * (len(boundaries) + 1))

    def with_targets(tokens, n):
        targets = prediction_targets(tokens, config["bidirectional"])
        return (tokens, targets), targets

    return ds.map(with_targets).prefetch(tf.data.AUTOTUNE)


def datasets(config, corpus: Corpus, model):
    return (
        dataset(*corpus.train, config, config["batch_size"], shuffle_seed=config["seed"]),
        dataset(*corpus.validation, config, VALIDATION_BATCH_SIZE),
    )


@keras.saving.register_keras_serializable(package="seqapps")
class SampledSoftmax(keras.layers.Layer):
    """The cross-entropy of each target word under a softmax over the vocabulary,
    given the hidden state that predicts it; 0 where the target is 0 (nothing).

    In training, a sampled softmax (`tf.nn.sampled_softmax_loss`: the target against
    `num_sampled` words drawn log-uniformly, that is by Zipf's law, which suits ids
    ranked by frequency); otherwise the exact softmax.

    Args:
        vocab_size: Number of words, ids 0 to vocab_size - 1.
        num_sampled: Words sampled per batch in training.
        seed: Seed of the sampler.
    """

    def __init__(self, vocab_size, num_sampled, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.num_sampled = num_sampled
        self.seed = seed
        self.supports_masking = True  # the padding's targets are 0: no loss there, and no mask further on

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def build(self, hidden_shape, targets_shape):
        self.embeddings = self.add_weight(
            shape=(self.vocab_size, hidden_shape[-1]), initializer="glorot_uniform", name="embeddings"
        )
        self.bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="bias")

    def call(self, hidden, targets, training=False):
        hidden = tf.reshape(tf.cast(hidden, self.compute_dtype), [-1, tf.shape(hidden)[-1]])
        words = tf.reshape(targets, [-1])
        if training:
            entropy = tf.nn.sampled_softmax_loss(
                self.embeddings,
                self.bias,
                labels=tf.cast(words[:, None], tf.int64),
                inputs=hidden,
                num_sampled=self.num_sampled,
                num_classes=self.vocab_size,
                seed=self.seed,
            )
        else:
            logits = tf.matmul(hidden, self.embeddings, transpose_b=True) + self.bias
            entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(words, logits)
        return tf.reshape(tf.where(words > 0, entropy, 0.0), tf.shape(targets))

    def get_config(self):
        config = {"vocab_size": self.vocab_size, "num_sampled": self.num_sampled, "seed": self.seed}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="seqapps")
def mean_word_loss(targets, entropies):
    """The mean cross-entropy over the words predicted (targets above 0)."""
    predicted = tf.cast(targets > 0, entropies.dtype)
    return tf.reduce_sum(entropies * predicted) / tf.maximum(tf.reduce_sum(predicted), 1.0)


@keras.saving.register_keras_serializable(package="seqapps")
class Perplexity(keras.metrics.Metric):
    """exp of the mean cross-entropy per word predicted, over all words of the epoch
    (not a mean of batch figures: batches hold different numbers of words)."""

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.entropy = self.add_variable(shape=(), initializer="zeros", name="entropy")
        self.words = self.add_variable(shape=(), initializer="zeros", name="words")

    def update_state(self, targets, entropies, sample_weight=None):
        predicted = tf.cast(targets > 0, "float32")
        self.entropy.assign_add(tf.reduce_sum(tf.cast(entropies, "float32") * predicted))
        self.words.assign_add(tf.reduce_sum(predicted))

    def result(self):
        return tf.exp(self.entropy / tf.maximum(self.words, 1.0))


def build_model(config, corpus: Corpus):
    """The language model: the classifier's embedding and recurrent layers (same names,
    same shapes), and a softmax per direction."""
    directions = 2 if config["bidirectional"] else 1
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    targets = keras.Input(shape=(None, directions), dtype="int32", name="targets")
    x = recurrent_layers(config, tokens, merge_mode=None)  # each direction predicts its own words
    states = x if config["bidirectional"] else [x]
    entropies = [
        SampledSoftmax(config["vocab_size"], config["sampled"], seed=config["seed"], dtype="float32", name=name)(
            keras.layers.Dropout(config["dropout"], seed=config["seed"])(state), targets[..., k]
        )
        for k, (state, name) in enumerate(zip(states, ["next_word", "previous_word"][:directions], strict=True))
    ]
    model = keras.Model([tokens, targets], keras.ops.stack(entropies, axis=-1), name=f"language_model_{config['cell']}")
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]), loss=mean_word_loss, metrics=[Perplexity()])
    return model
