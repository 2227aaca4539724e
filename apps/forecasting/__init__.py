"""Multivariate time-series forecasting: raw-unit history in, raw-unit forecast out.

    seqapps forecasting train --data-dir ../shared/data [--dataset etth1|...|PATH.csv] [--horizon 96]
    seqapps forecasting evaluate --run-dir runs/forecasting/<time>
    seqapps forecasting predict --model runs/forecasting/<time> series.csv
    seqapps forecasting export --run-dir runs/forecasting/<time>

The model standardises its input with statistics of the training split and returns
raw units, so the statistics travel with it (and with the export). Each variable's
window is one sequence, cut into segments that a recurrent encoder reads (the
channel-independent, segment-wise recurrence of SegRNN, Lin et al. 2023), and
each output segment is decoded from the final state in parallel (SegRNN's PMF), or
a dense head predicts all `horizon` steps at once, or an autoregressive decoder
predicts them a segment at a time. `evaluate` reports the model next to
persistence, seasonal-naive and linear baselines under the same protocol.

Named datasets follow the long-horizon benchmarks' protocol: ETT files split
12/4/4 months, the others (and any CSV) 70/10/20 % in time order; validation and
test windows start `lookback` rows before their split's first target.
"""

import argparse
from dataclasses import replace

from seqapps.apps import cli
from seqapps.apps.app import App, Option, choice, deferred, recurrent_options, recurrent_space, training_options
from seqapps.apps.forecasting import data

NORMALIZATIONS = ("last", "revin")  # of each window (model.SegmentRecurrentForecaster)
# The names of `model.LOSSES` and `model.DISTRIBUTIONS`, without importing Keras (tests/test_cli.py checks them).
LOSSES = ("mse", "mae")
DISTRIBUTIONS = ("normal", "studentt")
# The levels at which a distribution's quantiles are given, and a point model's intervals scored.
DISTRIBUTION_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def quantile_levels(text: str) -> list[float]:
    """An argparse type: comma-separated levels in (0, 1), returned sorted with 0.5 among them."""
    levels = {cli.fraction(item.strip()) for item in text.split(",") if item.strip()}
    if not levels:
        raise argparse.ArgumentTypeError(f"expected levels such as 0.1,0.5,0.9, got {text!r}")
    return sorted(levels | {0.5})


OPTIONS = [
    Option(
        "dataset",
        "etth1",
        f"{', '.join(data.DATASETS)}, or a CSV path (split 70/10/20 %% in time order)",
        data.dataset_name_or_path,
    ),
    Option("date_column", None, "the time column (default: the dataset's, or a CSV's first column)"),
    Option("time_format", None, "strptime format of the times (default: detected, e.g. ISO 8601, Y/M/D H:M)"),
    Option("features", None, "comma-separated input columns (default: all but the time)"),
    Option("targets", None, "comma-separated columns to forecast (default: all features)"),
    Option(
        "fill",
        None,
        "fill missing values (default: refuse them); ffill: each gap takes the last value before it, "
        "never a later one, so no window sees past its forecast origin",
        choices=["ffill"],
    ),
    Option(
        "drop_duplicates", False, "keep the first of rows with the same time (default: refuse)", action="store_true"
    ),
    Option("lookback", None, "steps of history (default: the dataset's, 96; illness 36)", cli.positive_int),
    Option("horizon", None, "steps to forecast (default: the dataset's, 96; illness 24)", cli.positive_int),
    Option("stride", 1, "steps between training windows", cli.positive_int),
    Option(
        "segment",
        None,
        "steps per segment, dividing lookback and horizon (default: the longest up to 24, illness 12, that does)",
        cli.positive_int,
    ),
    Option(
        "season",
        None,
        "season of the seasonal-naive baseline, in rows (default: the dataset's day, week or year; a CSV's 24)",
        cli.positive_int,
    ),
    Option("decoder", "parallel", "how the forecast is made", choices=["parallel", "direct", "autoregressive"]),
    Option(
        "normalization",
        "last",
        "how each window is normalised: subtract its last value (SegRNN), or its mean and divide by its std (RevIN)",
        choices=list(NORMALIZATIONS),
    ),
    # SegRNN's recipe for ETT (Lin et al. 2023), chosen over the earlier defaults on validation loss:
    # benchmarks/results/forecasting-recipe.md.
    *recurrent_options(cell="gru", units=512, layers=1, dropout=0.5, recurrent_dropout=0.0),
    *[
        # The dataset sets the batch size, as it sets the lookback.
        replace(option, help=f"{option.help} (default: the dataset's, 256; illness 16)")
        if option.name == "batch_size"
        else option
        for option in training_options(epochs=30, batch_size=None, learning_rate=1e-3, patience=5)
    ],
    Option(
        "lr_decay", 0.9, "after the fourth epoch, multiply the learning rate by this every epoch", cli.positive_float
    ),
    Option(
        "lr_warmup",
        1.0,
        "train the first epoch at this times the learning rate (SegRNN's code, in effect: 0.04)",
        cli.positive_float,
    ),
    Option("adam_beta_1", 0.9, "Adam's beta_1 (SegRNN's code, in effect: 0.95)", cli.fraction),
    Option("adam_epsilon", 1e-7, "Adam's epsilon (Keras' default; PyTorch's: 1e-8)", cli.positive_float),
    Option(
        "loss",
        # MAE beat MSE on validation MSE at horizons 96, 192 and 720 and lost by 0.4 % at 336:
        # benchmarks/results/forecasting-recipe.md.
        "mae",
        "training loss on the standardised scale (early stopping watches it too)",
        choices=list(LOSSES),
    ),
    Option(
        "quantiles",
        None,
        "forecast these quantiles too, e.g. 0.1,0.5,0.9 (levels in (0, 1); the median, 0.5, is always one, and "
        "the point forecast), trained on the pinball loss instead of --loss",
        quantile_levels,
    ),
    Option(
        "distribution",
        None,
        "forecast a distribution per step and target, trained on its negative log-likelihood instead of --loss: "
        "its mean is the point forecast, and its quantiles at "
        + ", ".join(f"{q:g}" for q in DISTRIBUTION_LEVELS)
        + " come with it",
        choices=list(DISTRIBUTIONS),
    ),
]


def forecast_levels(config):
    """The quantile levels a run's model forecasts: its --quantiles, its distribution's
    DISTRIBUTION_LEVELS, or None for a point model."""
    if config.get("quantiles"):
        return list(config["quantiles"])
    return list(DISTRIBUTION_LEVELS) if config.get("distribution") else None


def complete_config(config):
    config = data.complete_config(config)
    given = [f"--{name}" for name in ("quantiles", "distribution") if config.get(name)]
    if len(given) == 2:
        raise cli.UsageError("give --quantiles or --distribution, not both: each replaces the other's loss")
    if given and config["decoder"] == "autoregressive":
        raise cli.UsageError(f"{given[0]} needs --decoder parallel or direct: the autoregressive one feeds back values")
    return config


def search_space(hp, config):
    # Lookbacks around the configured one, whole numbers of segments.
    base, segment = config["lookback"], config["segment"]
    lookbacks = sorted({max(segment, round(base * f / segment) * segment) for f in (0.5, 1, 2)})
    return {
        **recurrent_space(hp, config, bidirectional=False),
        "lookback": choice(hp, "lookback", config, lookbacks),
        # The optimiser's levers of benchmarks/results/forecasting-recipe.md (SegRNN's values beside ours).
        "lr_decay": choice(hp, "lr_decay", config, [0.8, 0.9]),
        "adam_beta_1": choice(hp, "adam_beta_1", config, [0.9, 0.95]),
    }


APP = App(
    name="forecasting",
    description=__doc__,
    options=OPTIONS,
    monitor="val_loss",
    mode="min",
    load=deferred("seqapps.apps.forecasting.data:load"),
    build_model=deferred("seqapps.apps.forecasting.model:build_model"),
    datasets=deferred("seqapps.apps.forecasting.windows:datasets"),
    search_space=search_space,
    evaluate=deferred("seqapps.apps.forecasting.commands:evaluate"),
    predict=deferred("seqapps.apps.forecasting.commands:predict"),
    export=deferred("seqapps.apps.forecasting.commands:export"),
    command_arguments={
        "predict": [(("--output",), {"help": "write the forecast CSV here instead of printing it"})],
        "evaluate": [
            (
                ("--split",),
                {
                    "choices": ["test", "val"],
                    "default": "test",
                    "help": "the windows scored: test, or val to choose recipes on (written to metrics_val.json "
                    "and *_val.png; the empirical intervals then score the residuals they came from) "
                    "(default: %(default)s)",
                },
            )
        ],
    },
    run_files=lambda series: {"series.json": series.summary()},
    complete_config=complete_config,
    # A longer history: ETTh1's test MSE 0.355 / 0.396 / 0.424 / 0.448 at horizons 96-720
    # against lookback 96's 0.368 / 0.413 / 0.454 / 0.465 (benchmarks/results/forecasting.md).
    presets={"lookback-720": {"lookback": 720, "segment": 48}},
)
DEFAULTS = APP.defaults
main = APP.main
