"""IMDB sentiment: raw review text in, probability of a positive review out.

    seqapps sentiment train --data-dir ../shared/data [--cell peephole] [--epochs 10]
    seqapps sentiment evaluate --run-dir runs/sentiment/<time>
    seqapps sentiment predict --model runs/sentiment/<time> "A wonderful film." "Dreadful."
    seqapps sentiment export --run-dir runs/sentiment/<time>
    seqapps sentiment pretrain --data-dir ../shared/data      (a language model on the unlabeled reviews)
    seqapps sentiment train --pretrained runs/sentiment-pretrain/<time> ...   (the classifier starts from it)

The model reads raw strings: cleaning (<br /> tags, case, punctuation) and the
vocabulary (TextVectorization, adapted on the training split only) live inside it,
and so inside the export.
"""

import argparse
import json
from pathlib import Path

from seqapps.apps import cli
from seqapps.apps.app import App, Option, choice, deferred, recurrent_options, recurrent_space, training_options
from seqapps.apps.cli import UsageError
from seqapps.apps.tfds_data import dataset_type

SPLIT_OPTIONS = [
    Option("validation_fraction", 0.1, "share of the training reviews held out for validation", cli.fraction),
    Option(
        "split_by_movie",
        True,
        "IMDB: validation reviews are about other movies than the training reviews, as its test reviews are",
        action=argparse.BooleanOptionalAction,
    ),
]

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
    *SPLIT_OPTIONS,
    Option(
        "split_seed",
        None,
        "seed of the validation split (default: --seed; with --pretrained, the pretraining run's, so that no "
        "validation review was pretrained on)",
        int,
    ),
    Option(
        "pretrained",
        None,
        "a `sentiment pretrain` run directory: the model starts from its embedding and recurrent layers, and "
        "takes its vocabulary, layer sizes and split",
        cli.absolute_path,
    ),
    Option(
        "layer_lr_decay",
        1.0,
        "discriminative fine-tuning (ULMFiT): the top recurrent layer learns at the learning rate divided by this, "
        "each layer below it this many times more slowly, the embedding slowest; 1: all at the rate (ULMFiT: 2.6)",
        cli.positive_float,
    ),
    Option(
        "gradual_unfreezing",
        False,
        "ULMFiT's gradual unfreezing, with --pretrained: the first epoch trains the new head alone, each later "
        "one a pretrained layer more, from the top recurrent layer down to the embedding",
        action=argparse.BooleanOptionalAction,
    ),
    Option(
        "lr_schedule",
        "constant",
        "slanted-triangular: ULMFiT's, the rate climbing from rate/32 to the learning rate over the first tenth "
        "of the --epochs' steps, then falling back to rate/32 by the last",
        choices=["constant", "slanted-triangular"],
    ),
    Option(
        "test_fraction", 0.1, "a TFDS dataset without a test split: share of train held out for testing", cli.fraction
    ),
    *training_options(epochs=10, batch_size=64, learning_rate=1e-3, patience=2),
]


def search_space(hp, config):
    # KerasTuner's choices hold no None: 0 stands for whole reviews (the default).
    length = config["sequence_length"] or 0
    return {
        **recurrent_space(hp, config),
        "vocab_size": choice(hp, "vocab_size", config),
        "embedding_dim": choice(hp, "embedding_dim", config),
        "sequence_length": hp.Choice("sequence_length", sorted({0, 256, 512, length}), default=length) or None,
    }


def after_fit(config, reviews, best):
    """With --ngram-features: the n-gram path joins the trained model, the two weighed on the validation reviews."""
    if not config["ngram_features"]:
        return best, {}
    from seqapps.apps.sentiment.model import with_ngram_path

    model, blend = with_ngram_path(best, reviews.ngram_classifier, reviews.validation)
    print(
        f"Weighed the paths on validation: recurrent {blend['recurrent_weight']:.3f}, n-gram "
        f"{blend['ngram_weight']:.3f}; validation accuracy {blend['recurrent_val_accuracy']:.4f} (recurrent), "
        f"{blend['ngram_val_accuracy']:.4f} (n-gram), {blend['val_accuracy']:.4f} (both)"
    )
    return model, blend


# What a classifier takes from the pretraining run it starts from (--pretrained).
PRETRAINED_OPTIONS = (
    "vocab_size",
    "embedding_dim",
    "cell",
    "units",
    "layers",
    "bidirectional",
    "validation_fraction",
    "split_by_movie",
    "limit",
)


def complete_config(config):
    """With --pretrained: the options the pretraining run fixed, taken from it; one
    given with another value is an error (options left at their default take its)."""
    if not config.get("pretrained"):
        if config.get("gradual_unfreezing"):
            raise UsageError("--gradual-unfreezing thaws the layers of a language model: it needs --pretrained RUN")
        return config
    run_dir = Path(config["pretrained"])
    try:
        pretrained = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"--pretrained {run_dir} is not a `seqapps sentiment pretrain` run (no config.json)") from None
    if not (run_dir / "model.keras").is_file():
        raise UsageError(
            f"--pretrained {run_dir} has not finished (no model.keras): continue it with "
            f"`seqapps sentiment pretrain --resume --run-dir {run_dir}`"
        )
    if config["dataset"] != "imdb":
        raise UsageError(f"--pretrained pretrains on IMDB's reviews: it needs --dataset imdb, not {config['dataset']}")
    owned = {key: pretrained[key] for key in PRETRAINED_OPTIONS} | {"split_seed": pretrained["seed"]}
    conflicts = [
        f"--{key.replace('_', '-')} {config[key]} (the pretraining run has {value})"
        for key, value in owned.items()
        if config[key] != value and config[key] != DEFAULTS.get(key)
    ]
    if conflicts:
        raise UsageError(f"--pretrained {run_dir} fixes these, and they differ: {'; '.join(conflicts)}. Leave them out")
    return {**config, **owned}


PRETRAIN_OPTIONS = [
    *recurrent_options(cell="lstm", units=128, layers=1, bidirectional=True, dropout=0.1, recurrent_dropout=0.0),
    Option("vocab_size", 20000, "vocabulary size (the classifier's, which takes it from here)", cli.positive_int),
    Option("embedding_dim", 128, "embedding size", cli.positive_int),
    Option("sequence_length", 256, "the reviews are read in segments of this many words", cli.positive_int),
    Option("sampled", 1024, "words of the sampled softmax in training, beside each target", cli.positive_int),
    *SPLIT_OPTIONS,
    Option(
        "heldout_fraction",
        0.02,
        "share of the unlabeled reviews held out: their perplexity is the validation score",
        cli.fraction,
    ),
    *training_options(epochs=10, batch_size=64, learning_rate=1e-3, patience=2),
]


def complete_pretraining_config(config):
    if config["bidirectional"] and config["layers"] > 1:
        raise UsageError(
            "--layers 2 with --bidirectional cannot be pretrained: a classifier's second bidirectional layer reads "
            "both directions of the first, so it would see the words it predicts. Give --layers 1 or --no-bidirectional"
        )
    return config


PRETRAINING = App(
    name="sentiment-pretrain",
    description="pretrain a language model on the unlabeled and the training reviews, for train --pretrained",
    options=PRETRAIN_OPTIONS,
    monitor="val_loss",
    mode="min",
    load=deferred("seqapps.apps.sentiment.pretraining:load"),
    build_model=deferred("seqapps.apps.sentiment.pretraining:build_model"),
    datasets=deferred("seqapps.apps.sentiment.pretraining:datasets"),
    run_files=lambda corpus: {"vocabulary.json": corpus.vocabulary},
    complete_config=complete_pretraining_config,
)

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
    complete_config=complete_config,
    training_commands={"pretrain": PRETRAINING},
    # The recurrent model alone, without the n-gram path: 88.0 % on IMDB against the
    # defaults' 91.3 %, in less memory (benchmarks/results/sentiment.md).
    presets={"recurrent-only": {"ngram_features": 0}},
)
DEFAULTS = APP.defaults
main = APP.main
