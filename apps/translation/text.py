"""Text inside the model: normalisation, detokenisation, and the vocabularies."""

import collections
import unicodedata

import tensorflow as tf

START, END = "[START]", "[END]"


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


def adapt_vocabularies(config, sources, targets):
    """Source and target vocabularies of the training pairs."""
    source_words = build_vocabulary(normalize_all(sources, config["lowercase"]), config["source_vocab_size"] - 1)
    target_words = build_vocabulary(normalize_all(targets, config["lowercase"]), config["target_vocab_size"] - 2)
    return source_words + [END], target_words + [START, END]
