"""IMDB sentiment: raw review text in, probability of a positive review out.

    seqapps sentiment train --data-dir ../shared/data [--cell peephole] [--epochs 10]
    seqapps sentiment evaluate --run-dir runs/sentiment/<time>
    seqapps sentiment predict --model runs/sentiment/<time> "A wonderful film." "Dreadful."
    seqapps sentiment export --run-dir runs/sentiment/<time>

The model reads raw strings: cleaning (<br /> tags, case, punctuation) and the
vocabulary (TextVectorization, adapted on the training split only) live inside it,
and so inside the export.
"""

import argparse

from seqapps.apps import cli
from seqapps.apps.app import App, Option, deferred, recurrent_options, recurrent_space, training_options
from seqapps.apps.tfds_data import dataset_type

OPTIONS = [
    Option(
        "dataset",
        "imdb",
        "imdb (the published files, from --data-dir or downloaded) or tfds:NAME[/CONFIG], a TensorFlow Datasets "
        "dataset of texts with a binary label, prepared in --data-dir; its own validation and test splits, or "
        "seeded shares of train where it has none",
        dataset_type("imdb"),
    ),
    Option("text_feature", None, "the TFDS dataset's text feature (default: the only one, or its supervised input)"),
    Option("label_feature", None, "the TFDS dataset's label feature (default: the only ClassLabel)"),
    *recurrent_options(cell="lstm", units=128, layers=1, bidirectional=True, dropout=0.5, recurrent_dropout=0.0),
    Option("vocab_size", 20000, "vocabulary size", cli.positive_int),
    Option("embedding_dim", 128, "embedding size", cli.positive_int),
    Option(
        "sequence_length",
        None,
        "tokens read of each review, from its start (default: all; batches hold reviews of similar length)",
        cli.positive_int,
    ),
    Option(
        "ngram_features",
        200000,
        "unigrams and bigrams of a linear path beside the recurrent one: the baseline's model (NB-weighted "
        "logistic regression) over the most frequent of the training reviews, weighed against the recurrent "
        "path on the validation reviews after training; 0: none",
        cli.non_negative_int,
    ),
    Option("validation_fraction", 0.1, "share of the training reviews held out for validation", cli.fraction),
    Option(
        "split_by_movie",
        True,
        "IMDB: validation reviews are about other movies than the training reviews, as its test reviews are",
        action=argparse.BooleanOptionalAction,
    ),
    Option(
        "test_fraction", 0.1, "a TFDS dataset without a test split: share of train held out for testing", cli.fraction
    ),
    *training_options(epochs=10, batch_size=64, learning_rate=1e-3, patience=2),
]


def search_space(hp, config):
    return {
        **recurrent_space(hp),
        "vocab_size": hp.Choice("vocab_size", [5000, 10000, 20000]),
        "embedding_dim": hp.Choice("embedding_dim", [64, 128, 256]),
        "sequence_length": hp.Choice("sequence_length", [200, 400, 800]),
    }


def after_fit(config, reviews, best):
    """With --ngram-features: the two paths weighed on the validation reviews."""
    if not config["ngram_features"]:
        return {}
    from seqapps.apps.sentiment.model import blend_paths

    blend = blend_paths(best, reviews.validation)
    print(
        f"Weighed the paths on validation: recurrent {blend['recurrent_weight']:.3f}, n-gram "
        f"{blend['ngram_weight']:.3f}; validation accuracy {blend['recurrent_val_accuracy']:.4f} (recurrent), "
        f"{blend['ngram_val_accuracy']:.4f} (n-gram), {blend['val_accuracy']:.4f} (both)"
    )
    return blend


APP = App(
    name="sentiment",
    description=__doc__,
    options=OPTIONS,
    monitor="val_accuracy",
    mode="max",
    load=deferred("seqapps.apps.sentiment.data:load"),
    build_model=deferred("seqapps.apps.sentiment.model:build_model"),
    datasets=deferred("seqapps.apps.sentiment.data:datasets"),
    search_space=search_space,
    evaluate=deferred("seqapps.apps.sentiment.commands:evaluate"),
    predict=deferred("seqapps.apps.sentiment.commands:predict"),
    export=deferred("seqapps.apps.sentiment.commands:export"),
    after_fit=after_fit,
    # The recurrent model alone, without the n-gram path: 88.0 % on IMDB against the
    # defaults' 91.3 %, in less memory (benchmarks/results/sentiment.md).
    presets={"recurrent-only": {"ngram_features": 0}},
)
DEFAULTS = APP.defaults
main = APP.main
