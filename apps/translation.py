"""Translation: a sentence in the source language in, its translation out.

    seqapps translation train --data-dir ../shared/data [--source spa --target eng] [--cell gru]
    seqapps translation evaluate --run-dir runs/translation/<time>
    seqapps translation predict --model runs/translation/<time> "¿Dónde está la estación?"
    seqapps translation export --run-dir runs/translation/<time>

An encoder (embedding and recurrent layers, bidirectional by default) reads the source
sentence; a decoder of the same cell family writes the translation one word at a
time, attending over the encoder outputs (--attention additive, dot or general). The
model reads and writes raw strings: normalisation, vocabularies, greedy or beam-search
decoding and detokenisation are TensorFlow ops inside it, and so inside the export.

Data: sentence pairs in the manythings.org/anki format, `English<TAB>Other` per line,
from `<lang>-eng.zip` or `<lang>.txt`; languages are named as in those files (eng,
spa, fra, deu, ...).
"""

import argparse
import collections
import sys
import time
import unicodedata
import zipfile
from pathlib import Path

import keras
import numpy as np
import sacrebleu
import tensorflow as tf
from keras import ops

from apps import runs
from apps.cli import UsageError, add_option, app_parser, as_bytes, read_inputs, run
from apps.export import agreement_check, export_savedmodel, is_savedmodel, load_serving_signature
from apps.plots import plot_attention
from layers import ATTENTIONS, make_attention, make_rnn

DEFAULTS = {
    "source": "spa",
    "target": "eng",
    "cell": "lstm",
    "attention": "additive",
    "units": 128,
    "layers": 1,
    "bidirectional": True,
    "dropout": 0.2,
    "recurrent_dropout": 0.0,
    "embedding_dim": 256,
    "source_vocab_size": 15000,
    "target_vocab_size": 8000,
    "lowercase": True,
    "max_length": 50,
    "beam_size": 4,
    "length_penalty": 0.6,
    "validation_fraction": 0.1,
    "test_fraction": 0.1,
    "epochs": 8,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "patience": 2,
}

START, END = "[START]", "[END]"

# -- data -------------------------------------------------------------------------

SPA_ENG_URL = "http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip"


def find_pairs_file(data_dir, language):
    """The pairs file for English-`language`: `data_dir` itself if it is a file, else
    `<language>-eng.zip` or `<language>.txt` inside it; downloads spa-eng.zip without it."""
    if data_dir is None:
        if language != "spa":
            raise UsageError(
                f"no download for {language}-eng: get {language}-eng.zip from manythings.org/anki "
                "and pass its directory with --data-dir"
            )
        return Path(keras.utils.get_file("spa-eng.zip", origin=SPA_ENG_URL))  # cached in ~/.keras/datasets
    path = Path(data_dir)
    if path.is_file():
        return path
    candidates = [path / f"{language}-eng.zip", path / f"{language}.txt", path / f"{language}-eng" / f"{language}.txt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(
        f"no {language}-eng sentence pairs in {path}: expected one of "
        + ", ".join(c.name if c.parent == path else str(c.relative_to(path)) for c in candidates)
    )


def read_pairs_text(path, language):
    if path.suffix != ".zip":
        return path.read_bytes().decode("utf-8", errors="replace")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if Path(n).name == f"{language}.txt"]
            if not names:
                raise UsageError(
                    f"{path} holds no {language}.txt; is it the {language}-eng file from manythings.org/anki?"
                )
            return archive.read(names[0]).decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError) as e:
        raise UsageError(f"cannot read {path}: {e}; the archive is damaged, download it again") from None


def load_pairs(data_dir=None, language="spa"):
    """English-`language` sentence pairs: (english, other, malformed), where malformed
    lists the line numbers skipped for lacking a tab or a side."""
    path = find_pairs_file(data_dir, language)
    english, other, malformed = [], [], []
    for number, line in enumerate(read_pairs_text(path, language).splitlines(), 1):
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) >= 2 and fields[0] and fields[1]:
            english.append(fields[0])
            other.append(fields[1])
        elif line.strip():
            malformed.append(number)
    if not english:
        raise UsageError(f"{path}: no sentence pairs; expected lines of English<TAB>{language}[<TAB>attribution]")
    return np.array(english, dtype=object), np.array(other, dtype=object), malformed


def load_translation_pairs(config):
    """(sources, targets) in the direction `config` asks for, malformed lines reported."""
    source, target = config["source"], config["target"]
    if "eng" not in (source, target) or source == target:
        raise UsageError(
            f"--source {source} --target {target}: the pairs files hold English and one other "
            "language, so one side must be eng and the other differ"
        )
    language = target if source == "eng" else source
    english, other, malformed = load_pairs(config["data_dir"], language)
    if malformed:
        print(
            f"Skipped {len(malformed)} malformed lines (no tab or an empty side), e.g. line {malformed[0]}.",
            file=sys.stderr,
        )
    return (english, other) if source == "eng" else (other, english)


def split_pairs(sources, targets, validation_fraction, test_fraction, seed):
    """Seeded train/validation/test index arrays. Pairs that share a sentence, on
    either side, land in the same split: a test sentence is never seen in training,
    neither as a source nor as a translation."""
    parent = list(range(len(sources)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for side in (sources, targets):
        first = {}
        for i, sentence in enumerate(side):
            j = first.setdefault(sentence, i)
            parent[find(i)] = find(j)
    roots = np.array([find(i) for i in range(len(sources))])
    groups = np.unique(roots)
    groups = groups[np.random.default_rng(seed).permutation(len(groups))]
    n_test = int(round(len(groups) * test_fraction))
    n_val = int(round(len(groups) * validation_fraction))
    split_of = dict.fromkeys(groups[:n_test], 2) | dict.fromkeys(groups[n_test : n_test + n_val], 1)
    assigned = np.array([split_of.get(r, 0) for r in roots])
    return tuple(np.flatnonzero(assigned == k) for k in range(3))


def sample(indices, limit, seed):
    """At most `limit` of `indices`, drawn at random (seeded), in their original order."""
    if limit is None or limit >= len(indices):
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, limit, replace=False))


# -- text -------------------------------------------------------------------------

# Core TensorFlow has no Unicode normalisation op, so the model composes decomposed
# Latin letters itself (NFC for the scripts of the anki pairs: "e" + U+0301 -> "é")
# and folds the compatibility characters these corpora contain.
_COMPOSED = {
    unicodedata.normalize("NFD", chr(c)): chr(c)
    for c in range(0xC0, 0x250)
    if len(unicodedata.normalize("NFD", chr(c))) == 2
}
_FOLDED = {
    "\u00a0": " ",
    "\u200b": "",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u2014": " - ",
    "\u2013": " - ",
}


def normalize_text(text, lowercase=True):
    """Raw sentences -> space-separated words: valid UTF-8, composed accents, folded
    quotes and spaces, optionally lower-cased, punctuation split off as words."""
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")

    def compose(text):
        for decomposed, composed in _COMPOSED.items():
            text = tf.strings.regex_replace(text, decomposed, composed)
        return text

    has_marks = tf.reduce_any(tf.strings.regex_full_match(text, "(?s).*[\u0300-\u036f].*"))
    text = tf.cond(has_marks, lambda: compose(text), lambda: text)
    for character, folded in _FOLDED.items():
        text = tf.strings.regex_replace(text, character, folded)
    if lowercase:
        text = tf.strings.lower(text, encoding="utf-8")
    # Every character that is not a letter, digit, mark, apostrophe or space is a word of its own.
    return tf.strings.regex_replace(text, r"([^\pL\pN\pM\s'])", r" \1 ")


def detokenize_text(text):
    """Words joined by spaces -> a sentence: no space before closing punctuation or after opening."""
    text = tf.strings.regex_replace(text, r"\s+", " ")
    text = tf.strings.regex_replace(text, r" ([.,!?;:%)\]}»])", r"\1")
    text = tf.strings.regex_replace(text, r"([¿¡(\[{«]) ", r"\1")
    return tf.strings.strip(text)


def build_vocabulary(normalized, size):
    """The `size - 2` most frequent words (padding and [UNK] take the first two ids)."""
    counts = collections.Counter(word for sentence in normalized for word in sentence.split())
    return [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))][: size - 2]


def normalize_all(texts, lowercase):
    return [s.decode("utf-8") for s in normalize_text(tf.constant(texts.astype(str)), lowercase).numpy()]


# -- model ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="seqapps")
def masked_loss(y_true, y_pred):
    """Cross-entropy per target word, averaged over real words (id 0 is padding)."""
    mask = ops.cast(ops.not_equal(y_true, 0), y_pred.dtype)
    loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="seqapps")
def masked_accuracy(y_true, y_pred):
    """The share of real target words predicted right."""
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    hits = ops.cast(ops.equal(ops.cast(y_true, "int32"), ops.cast(ops.argmax(y_pred, -1), "int32")), "float32")
    return ops.sum(hits * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="seqapps")
class Translator(keras.Model):
    """Encoder-decoder with attention, from raw source text to raw target text.

    `call((source_ids, target_in_ids))` gives the next-word logits under teacher
    forcing (for `fit`); `translate(texts)` decodes greedily or with beam search.

    Args:
        config: The app config (see DEFAULTS).
        source_vocabulary, target_vocabulary: Words by frequency, without padding and [UNK].
    """

    def __init__(self, config, source_vocabulary, target_vocabulary, **kwargs):
        super().__init__(name=kwargs.pop("name", f"translator_{config['cell']}_{config['attention']}"), **kwargs)
        self.config = dict(config)
        self.source_vocabulary, self.target_vocabulary = list(source_vocabulary), list(target_vocabulary)
        for token in (START, END):
            if token not in self.target_vocabulary:
                raise ValueError(f"the target vocabulary lacks {token}")
        c = self.config
        self.source_lookup = keras.layers.StringLookup(vocabulary=self.source_vocabulary, mask_token="")
        self.target_lookup = keras.layers.StringLookup(vocabulary=self.target_vocabulary, mask_token="")
        self.target_words = keras.layers.StringLookup(vocabulary=self.target_vocabulary, mask_token="", invert=True)
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
        self.next_word = keras.layers.Dense(len(self.target_vocabulary) + 2, name="next_word")
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
            "name": self.name,
        }

    # Text <-> ids. Sources end with [END], so even an empty sentence has a word.

    def source_words(self, texts):
        words = tf.strings.split(normalize_text(texts, self.config["lowercase"]))
        return tf.concat([words[:, : self.config["max_length"] - 1], tf.fill([tf.shape(texts)[0], 1], END)], 1)

    def source_ids(self, texts):
        return self.source_lookup(self.source_words(texts).to_tensor(""))

    def target_ids(self, texts):
        """[START] words [END], at most max_length + 1 ids, padded with 0."""
        words = tf.strings.split(normalize_text(texts, self.config["lowercase"]))[:, : self.config["max_length"]]
        batch = tf.shape(texts)[0]
        words = tf.concat([tf.fill([batch, 1], START), words, tf.fill([batch, 1], END)], 1)
        return self.target_lookup(words.to_tensor(""))

    def ids_to_text(self, ids):
        words = self.target_words(ids)
        words = tf.where((ids == self.start_id) | (ids == self.end_id), "", words)
        return detokenize_text(tf.strings.reduce_join(words, axis=-1, separator=" "))

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

    def greedy_search(self, source_ids, max_length):
        """The most likely next word at every step: (ids (batch, steps), attention (batch, steps, source))."""
        encoded, source_mask, states = self.encode(source_ids)
        batch = tf.shape(source_ids)[0]

        def step(t, words, states, done, ids, attention):
            logits, states, weights = self.decode_step(words, encoded, source_mask, states)
            words = tf.where(done, 0, tf.argmax(logits, -1, output_type=tf.int32))
            done = done | (words == self.end_id)
            return t + 1, words, states, done, ids.write(t, words), attention.write(t, weights)

        _, _, _, _, ids, attention = tf.while_loop(
            lambda t, words, states, done, *_: (t < max_length) & ~tf.reduce_all(done),
            step,
            (
                0,
                tf.fill([batch], self.start_id),
                states,
                tf.zeros([batch], bool),
                tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None]),
                tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[None, None]),
            ),
        )
        return tf.transpose(ids.stack(), (1, 0)), tf.transpose(attention.stack(), (1, 0, 2))

    def beam_search(self, source_ids, max_length, beam_size, length_penalty):
        """Beam search over `beam_size` hypotheses per sentence, ranked at the end by
        log-probability / ((5 + length) / 6) ** length_penalty (Wu et al. 2016).
        Returns the best hypothesis as greedy_search does."""
        k = beam_size
        encoded, source_mask, states = self.encode(source_ids)
        batch, source_steps = tf.shape(source_ids)[0], tf.shape(source_ids)[1]
        vocab = len(self.target_vocabulary) + 2

        def per_beam(x):  # (batch, ...) -> (batch * k, ...), the k copies of a sentence adjacent
            return tf.repeat(x, k, axis=0)

        encoded, source_mask, states = per_beam(encoded), per_beam(source_mask), [per_beam(s) for s in states]
        # Only the first copy is live at the start, or the k beams would be k copies of one.
        scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], -1e9)], 0)[None], [batch, 1])
        # A finished hypothesis continues with padding only, at no cost.
        pad_only = tf.concat([[0.0], tf.fill([vocab - 1], -1e9)], 0)

        def step(t, words, states, scores, done, lengths, ids, attention):
            logits, states, weights = self.decode_step(words, encoded, source_mask, states)
            log_probs = tf.reshape(tf.nn.log_softmax(logits), [batch, k, vocab])
            log_probs = tf.where(done[..., None], pad_only, log_probs)
            scores, best = tf.math.top_k(tf.reshape(scores[..., None] + log_probs, [batch, k * vocab]), k)
            beam, words = best // vocab, best % vocab

            def follow(x):  # reorder per-sentence beams after the winners
                return tf.gather(x, beam, batch_dims=1)

            states = [
                tf.reshape(follow(tf.reshape(s, [batch, k, s.shape[-1]])), [batch * k, s.shape[-1]]) for s in states
            ]
            done, lengths, ids, attention = follow(done), follow(lengths), follow(ids), follow(attention)
            at_t = tf.one_hot(t, max_length)
            ids += tf.cast(at_t, tf.int32)[None, None] * words[..., None]
            attention += at_t[None, None, :, None] * follow(tf.reshape(weights, [batch, k, -1]))[:, :, None]
            lengths += tf.cast(~done, tf.int32)
            done = done | (words == self.end_id)
            return t + 1, tf.reshape(words, [-1]), states, scores, done, lengths, ids, attention

        _, _, _, scores, _, lengths, ids, attention = tf.while_loop(
            lambda t, words, states, scores, done, *_: (t < max_length) & ~tf.reduce_all(done),
            step,
            (
                0,
                tf.fill([batch * k], self.start_id),
                states,
                scores,
                tf.zeros([batch, k], bool),
                tf.zeros([batch, k], tf.int32),
                tf.zeros([batch, k, max_length], tf.int32),
                tf.zeros([batch, k, max_length, source_steps]),
            ),
        )
        penalty = ((5.0 + tf.cast(lengths, tf.float32)) / 6.0) ** length_penalty
        best = tf.argmax(scores / penalty, -1, output_type=tf.int32)[:, None]
        return tf.gather(ids, best, batch_dims=1)[:, 0], tf.gather(attention, best, batch_dims=1)[:, 0]

    def translate(self, texts, beam_size=1, return_attention=False):
        """Translations of a batch of strings: greedy for beam_size 1, else beam search.
        With return_attention, also the words in and out and the attention weights."""
        source_words = self.source_words(texts)
        source_ids = self.source_lookup(source_words.to_tensor(""))
        max_length = self.config["max_length"] + 1  # the words and [END]
        if beam_size == 1:
            ids, attention = self.greedy_search(source_ids, max_length)
        else:
            ids, attention = self.beam_search(source_ids, max_length, beam_size, self.config["length_penalty"])
        translations = self.ids_to_text(ids)
        if not return_attention:
            return translations
        return translations, source_words, self.target_words(ids), attention


def build_model(config, source_vocabulary, target_vocabulary):
    model = Translator(config, source_vocabulary, target_vocabulary)
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"], clipnorm=5.0),
        loss=masked_loss,
        metrics=[masked_accuracy],
    )
    return model


def adapt_vocabularies(config, sources, targets):
    """Source and target vocabularies of the training pairs."""
    source_words = build_vocabulary(normalize_all(sources, config["lowercase"]), config["source_vocab_size"] - 1)
    target_words = build_vocabulary(normalize_all(targets, config["lowercase"]), config["target_vocab_size"] - 2)
    return source_words + [END], target_words + [START, END]


BUCKETS = [6, 8, 10, 12, 15, 20, 30]


def dataset(model, sources, targets, batch_size, shuffle_seed=None):
    """((source ids, target ids in), target ids out) batches of sentences of similar length."""
    source_ids = model.source_ids(tf.constant(sources.astype(str)))
    target_ids = model.target_ids(tf.constant(targets.astype(str)))

    source_lengths, target_lengths = (tf.reduce_sum(tf.cast(ids != 0, tf.int32), 1) for ids in (source_ids, target_ids))
    ds = tf.data.Dataset.from_tensor_slices((source_ids, source_lengths, target_ids, target_lengths))
    ds = ds.map(lambda source, source_length, target, target_length: (source[:source_length], target[:target_length]))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(sources), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.bucket_by_sequence_length(
        lambda source, target: tf.maximum(tf.shape(source)[0], tf.shape(target)[0]),
        BUCKETS,
        [batch_size] * (len(BUCKETS) + 1),
    )
    # Every bucket ends with one partial batch, whatever the order: the count is known, and Keras shows it.
    longer = np.maximum(source_lengths.numpy(), target_lengths.numpy())
    per_bucket = np.bincount(np.searchsorted(BUCKETS, longer, side="right"), minlength=len(BUCKETS) + 1)
    ds = ds.apply(tf.data.experimental.assert_cardinality(int(np.sum(-(-per_bucket // batch_size)))))
    return ds.map(lambda source, target: ((source, target[:, :-1]), target[:, 1:])).prefetch(tf.data.AUTOTUNE)


def split_data(config):
    """{split: (sources, targets)} for train, validation and test, --limit applied."""
    sources, targets = load_translation_pairs(config)
    splits = split_pairs(sources, targets, config["validation_fraction"], config["test_fraction"], config["seed"])
    return {
        name: (sources[idx], targets[idx])
        for name, idx in zip(
            ("train", "validation", "test"), (sample(i, config["limit"], config["seed"]) for i in splits), strict=True
        )
    }


# -- commands ---------------------------------------------------------------------


def train_command(args):
    run_dir, config = runs.prepare_run_dir("translation", args, DEFAULTS)
    keras.utils.set_random_seed(config["seed"])
    data = split_data(config)
    print(", ".join(f"{len(data[s][0]):,} {s}" for s in data) + f" pairs; run directory {run_dir}")
    model = build_model(config, *adapt_vocabularies(config, *data["train"]))
    runs.train(
        model,
        dataset(model, *data["train"], config["batch_size"], shuffle_seed=config["seed"]),
        dataset(model, *data["validation"], config["batch_size"]),
        run_dir,
        config,
        monitor="val_loss",
        mode="min",
        verbose=args.verbose,
    )


def translate_all(translate, texts, batch_size=64, label="sentence"):
    """`translate` over `texts` in batches, with a progress bar; (translations, seconds)."""
    translate = tf.function(translate, input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
    progress = keras.utils.Progbar(len(texts), unit_name=label)
    results, started = [], time.perf_counter()
    for i in range(0, len(texts), batch_size):
        batch = texts[i : i + batch_size]
        results.extend(t.decode("utf-8") for t in translate(tf.constant(batch)).numpy())
        progress.add(len(batch))
    return results, time.perf_counter() - started


def references_by_source(sources, targets):
    """Unique source sentences, in order, and every translation of each."""
    refs = {}
    for source, target in zip(sources, targets, strict=True):
        refs.setdefault(source, []).append(target)
    return list(refs), list(refs.values())


def score(hypotheses, references, lowercase):
    """Corpus BLEU and chrF (sacrebleu) against all references of each sentence."""
    streams = [[r[i] if i < len(r) else None for r in references] for i in range(max(map(len, references)))]
    return {
        "bleu": sacrebleu.BLEU(lowercase=lowercase).corpus_score(hypotheses, streams).score,
        "chrf": sacrebleu.CHRF(lowercase=lowercase).corpus_score(hypotheses, streams).score,
    }


def evaluate_command(args):
    model, out_dir = runs.load_model_to_evaluate(args.run_dir or args.model)
    config = {**model.config, "data_dir": args.data_dir or model.config.get("data_dir"), "limit": args.limit}
    sources, targets = split_data(config)["test"]
    sources, references = references_by_source(sources, targets)
    beam_size = args.beam_size or config["beam_size"]
    metrics = {
        "sentences": len(sources),
        "references": int(sum(map(len, references))),
        "lowercase": config["lowercase"],
        "beam_size": beam_size,
    }
    outputs = {}
    for name, size in (("greedy", 1), (f"beam{beam_size}", beam_size)):
        print(f"Translating {len(sources):,} test sentences, {name}:")
        outputs[name], seconds = translate_all(lambda t, size=size: model.translate(t, beam_size=size), sources)
        metrics[name] = {
            **score(outputs[name], references, config["lowercase"]),
            "sentences_per_second": len(sources) / seconds,
        }
        print(
            f"{name}: BLEU {metrics[name]['bleu']:.2f}, chrF {metrics[name]['chrf']:.2f}, "
            f"{metrics[name]['sentences_per_second']:.1f} sentences/s"
        )
    runs.save_json(out_dir / "metrics.json", metrics)
    lines = ["\t".join(["source", "references", *outputs])]
    lines += [
        "\t".join([s, " | ".join(r), *(outputs[n][i] for n in outputs)])
        for i, (s, r) in enumerate(zip(sources, references, strict=True))
    ]
    runs.atomic_write(out_dir / "translations.tsv", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    print(f"Wrote {out_dir / 'metrics.json'} and {out_dir / 'translations.tsv'}")
    return metrics


def warn_if_truncated(texts, max_length, lowercase):
    lengths = tf.strings.split(normalize_text(tf.constant(as_bytes(texts)), lowercase)).row_lengths().numpy()
    for i in np.flatnonzero(lengths > max_length - 1):
        print(
            f"warning: input {i + 1} has {lengths[i]} words; only the first {max_length - 1} are translated",
            file=sys.stderr,
        )


def predict_command(args):
    texts = read_inputs(args)
    model_path = Path(args.model)
    if is_savedmodel(model_path):
        if args.attention_plot:
            raise UsageError(
                "--attention-plot needs a .keras model or run directory; a SavedModel returns translations only"
            )
        info = runs.load_json(model_path / "seqapps.json")
        warn_if_truncated(texts, info["max_length"], info["lowercase"])
        translations = load_serving_signature(model_path)(text=tf.constant(as_bytes(texts)))["translation"]
        translations = [t.decode("utf-8") for t in translations.numpy()]
    else:
        model = runs.load_model(model_path)
        warn_if_truncated(texts, model.config["max_length"], model.config["lowercase"])
        beam_size = args.beam_size or model.config["beam_size"]
        translations, source_words, target_words, attention = model.translate(
            tf.constant(as_bytes(texts)), beam_size=beam_size, return_attention=True
        )
        translations = [t.decode("utf-8") for t in translations.numpy()]
        if args.attention_plot:
            for i, path in enumerate(attention_plot_paths(args.attention_plot, len(texts))):
                sources = [w.decode("utf-8") for w in source_words[i].numpy()]
                targets = [w.decode("utf-8") for w in target_words[i].numpy() if w]
                plot_attention(attention[i].numpy()[: len(targets), : len(sources)], sources, targets, path)
                print(f"Wrote {path}", file=sys.stderr)
    for translation in translations:
        print(translation)
    return translations


def attention_plot_paths(path, count):
    """`path` for one sentence; path-1.png, path-2.png, ... for several."""
    path = Path(path)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix or '.png'}") for i in range(1, count + 1)]


# Inputs the export is checked on: ordinary sentences and the awkward ones.
EXPORT_CHECK_TEXTS = [
    "¿Dónde está la estación de tren?",
    "Tengo hambre.",
    "",
    "   ",
    "xylophonequux blorft",
    "palabra " * 300,
    "Hola 😀 世界 привет",
    "Me\u0301xico",
    b"invalid utf-8 \xff\xfe bytes",
]


def export_command(args):
    run_dir = Path(args.run_dir)
    model = runs.load_model(run_dir)
    beam_size = args.beam_size or model.config["beam_size"]
    info = {key: model.config[key] for key in ("source", "target", "max_length", "lowercase")}
    info["beam_size"] = beam_size

    def serve(text):
        return {"translation": model.translate(text, beam_size=beam_size)}

    texts = np.array(as_bytes(EXPORT_CHECK_TEXTS), dtype="S")
    expected = model.translate(tf.constant(texts), beam_size=beam_size).numpy()
    check = agreement_check({"text": texts}, {"translation": expected}, files={"seqapps.json": info})
    path = export_savedmodel(
        model, serve, [tf.TensorSpec([None], tf.string, name="text")], args.export_dir, args.version, check=check
    )
    print(f"Exported {path} (beam size {beam_size}; checked in a TensorFlow-only process on {len(texts)} inputs)")
    return path


def main(argv=None):
    parser, commands = app_parser("translation", __doc__, DEFAULTS)
    train = commands["train"]

    def option(flag, help, **kwargs):
        add_option(train, DEFAULTS, flag, help, **kwargs)

    option("--source", "source language, as in the pairs file names (eng, spa, fra, ...)")
    option("--target", "target language")
    option("--attention", "attention over the encoder outputs", choices=list(ATTENTIONS))
    option("--embedding-dim", "embedding size", type=int)
    option("--source-vocab-size", "source words known, padding and [UNK] included", type=int)
    option("--target-vocab-size", "target words known, padding and [UNK] included", type=int)
    option("--max-length", "words kept per sentence; longer ones are truncated", type=int)
    option("--lowercase", "lower-case the text", action=argparse.BooleanOptionalAction)
    option("--beam-size", "beam size that evaluate, predict and export use by default", type=int)
    option("--length-penalty", "beam search length normalisation exponent", type=float)
    for command in ("evaluate", "predict", "export"):
        commands[command].add_argument("--beam-size", type=int, help="beam size; 1 is greedy (default: the run's)")
    commands["predict"].add_argument(
        "--attention-plot", metavar="PNG", help="save the attention weights (source x target words) as a heatmap"
    )
    return run(
        parser,
        {"train": train_command, "evaluate": evaluate_command, "predict": predict_command, "export": export_command},
        argv,
    )


if __name__ == "__main__":
    main()
