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

from seqapps.apps import cli
from seqapps.apps.app import App, Option, choice, deferred, recurrent_options, recurrent_space, training_options
from seqapps.apps.tfds_data import dataset_type

# The names of `seqapps.layers.ATTENTIONS`, without importing Keras (tests/test_cli.py checks them).
ATTENTION_NAMES = ("additive", "dot", "general")

OPTIONS = [
    Option(
        "dataset",
        "anki",
        "anki (manythings.org/anki pairs files in --data-dir; spa-eng.zip is downloaded without it) or "
        "tfds:NAME[/CONFIG], a TensorFlow Datasets translation dataset prepared in --data-dir; its own validation "
        "and test splits, or seeded shares of train where it has none",
        dataset_type("anki"),
    ),
    Option("source", "spa", "source language: as in the pairs file names (eng, spa, fra, ...), or a TFDS text feature"),
    Option("target", "eng", "target language, likewise"),
    *recurrent_options(cell="lstm", units=128, layers=1, bidirectional=True, dropout=0.2, recurrent_dropout=0.0),
    Option("attention", "additive", "attention over the encoder outputs", choices=list(ATTENTION_NAMES)),
    Option("embedding_dim", 256, "embedding size", cli.positive_int),
    Option("source_vocab_size", 15000, "source words known, padding and [UNK] included", cli.positive_int),
    Option("target_vocab_size", 8000, "target words known, padding and [UNK] included", cli.positive_int),
    Option("lowercase", True, "lower-case the text", action=argparse.BooleanOptionalAction),
    Option("max_length", 50, "words kept per sentence; longer ones are truncated", cli.positive_int),
    Option("beam_size", 4, "beam size that evaluate, predict and export use by default", cli.positive_int),
    Option("length_penalty", 0.6, "beam search length normalisation exponent", float),
    Option("validation_fraction", 0.1, "share of the sentences held out for validation", cli.fraction),
    Option("test_fraction", 0.1, "share of the sentences held out for testing (Anki has no test split)", cli.fraction),
    *training_options(epochs=8, batch_size=64, learning_rate=1e-3, patience=2),
]

BEAM_SIZE = (("--beam-size",), {"type": cli.positive_int, "help": "beam size; 1 is greedy (default: the run's)"})
ATTENTION_PLOT = (
    ("--attention-plot",),
    {"metavar": "PNG", "help": "save the attention weights (source x target words) as a heatmap"},
)


def search_space(hp, config):
    return {
        **recurrent_space(hp, config),
        "attention": choice(hp, "attention", config, ATTENTION_NAMES),
        "embedding_dim": choice(hp, "embedding_dim", config),
    }


APP = App(
    name="translation",
    description=__doc__,
    options=OPTIONS,
    monitor="val_token_loss",  # per word over the whole validation split (model.TokenCrossEntropy)
    mode="min",
    load=deferred("seqapps.apps.translation.data:load"),
    build_model=deferred("seqapps.apps.translation.model:build_model"),
    datasets=deferred("seqapps.apps.translation.data:datasets"),
    search_space=search_space,
    evaluate=deferred("seqapps.apps.translation.commands:evaluate"),
    predict=deferred("seqapps.apps.translation.commands:predict"),
    export=deferred("seqapps.apps.translation.commands:export"),
    command_arguments={"evaluate": [BEAM_SIZE], "predict": [BEAM_SIZE, ATTENTION_PLOT], "export": [BEAM_SIZE]},
)
DEFAULTS = APP.defaults
main = APP.main
