"""Text inside the model: normalisation, casing, detokenisation, and the vocabularies."""

import collections
import unicodedata

import tensorflow as tf

from seqapps.apps.cli import string_tensor

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
    """Words joined by spaces -> written text: no space before closing punctuation or
    after opening, quotes around what they quote, hyphens, times and numbers whole
    ("twenty-one", "3:30", "1,000", "$5")."""
    text = tf.strings.regex_replace(text, r"\s+", " ")
    text = tf.strings.regex_replace(text, r" ([.,!?;:%)\]}»])", r"\1")
    text = tf.strings.regex_replace(text, r"([¿¡(\[{«$€£]) ", r"\1")
    text = tf.strings.regex_replace(text, r"(\pL) - (\pL)", r"\1-\2")
    text = tf.strings.regex_replace(text, r"(\pN)([.,:]) (\pN)", r"\1\2\3")
    # Straight quotes come in pairs: the first of each opens, the second closes.
    text = tf.strings.regex_replace(text, r'" ?([^"]*?) ?"', r'"\1"')
    return tf.strings.strip(text)


# A word starts a sentence at the start or after one of these, maybe behind an opening mark.
SENTENCE_ENDS = r"[.!?]"
OPENING_MARKS = r"[¿¡\"(«]"


def sentence_initial(words):
    """Which of the words (batch, steps) start a sentence: the first word with a letter
    or digit, and the first after a full stop, question or exclamation mark."""
    starts_after = tf.strings.regex_full_match(words, SENTENCE_ENDS)
    opening = tf.strings.regex_full_match(words, OPENING_MARKS)
    before = tf.pad(starts_after, [[0, 0], [1, 0]], constant_values=True)  # the start counts as an end
    previous_ends, previous_opens = before[:, :-1], tf.pad(opening, [[0, 0], [1, 0]])[:, :-1]
    two_back_ends = tf.pad(before, [[0, 0], [1, 0]])[:, :-2]
    after_end = previous_ends | (previous_opens & two_back_ends)
    return after_end & tf.strings.regex_full_match(words, r".*[\pL\pN].*")


def capitalize(words):
    """Each word with its first letter upper-cased."""
    length = tf.strings.length(words, unit="UTF8_CHAR")
    split = tf.minimum(length, 1)  # 0 for the empty word
    first = tf.strings.substr(words, tf.zeros_like(length), split, unit="UTF8_CHAR")
    return tf.strings.upper(first, encoding="utf-8") + tf.strings.substr(words, split, length, unit="UTF8_CHAR")


def learn_casing(sentences, batch_size=4096):
    """{lower-cased word: its usual written form} from cased, normalised sentences, for
    the words not usually written in lower case ("tom": "Tom", "i": "I", "tv": "TV").
    A word's form is counted where it does not start a sentence (`sentence_initial`),
    where case says nothing about the word."""
    forms = collections.defaultdict(collections.Counter)
    for i in range(0, len(sentences), batch_size):
        words = tf.strings.split(tf.constant(sentences[i : i + batch_size], tf.string)).to_tensor("")
        counted = tf.boolean_mask(words, (words != "") & ~sentence_initial(words))
        for word, lower in zip(counted.numpy(), tf.strings.lower(counted, encoding="utf-8").numpy(), strict=True):
            forms[lower.decode("utf-8")][word.decode("utf-8")] += 1
    casing = {lower: counts.most_common(1)[0][0] for lower, counts in forms.items()}
    return {lower: form for lower, form in sorted(casing.items()) if form != lower}


def build_vocabulary(normalized, size):
    """The `size - 2` most frequent words (padding and [UNK] take the first two ids)."""
    counts = collections.Counter(word for sentence in normalized for word in sentence.split())
    return [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))][: size - 2]


def normalize_all(texts, lowercase):
    return [s.decode("utf-8") for s in normalize_text(string_tensor(texts), lowercase).numpy()]


def adapt_vocabularies(config, sources, targets):
    """Source and target vocabularies of the training pairs, and the casing of the
    target words (for a lower-cased model)."""
    source_words = build_vocabulary(normalize_all(sources, config["lowercase"]), config["source_vocab_size"] - 1)
    target_words = build_vocabulary(normalize_all(targets, config["lowercase"]), config["target_vocab_size"] - 2)
    casing = learn_casing(normalize_all(targets, lowercase=False)) if config["lowercase"] else {}
    return source_words + [END], target_words + [START, END], casing
