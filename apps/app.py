"""What an app is: the contract that `train`, the command line and `seqapps tune` share.

Each app (`apps/<app>/__init__.py`) fills in one `App`: its option table (defaults and
help in one place), how to load its data, build its model and make its datasets, the
validation metric it monitors, its search space, and its evaluate/predict/export
commands. `App.train` is the one training flow:

    config -> load(config) -> build_model(config, data) -> datasets(config, data, model) -> fit

and `seqapps.tuning.AppHyperModel` runs the same steps for each trial, so the tuned model is
the app's model.

An app's package, this module and `cli` import neither TensorFlow nor Keras: an app names
its functions with `deferred`, imported when first called, so that the command line
parses its arguments, and answers `--help`, at once.
"""

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from seqapps.apps import cli
from seqapps.apps.cli import UsageError

# The names of `seqapps.layers.CELLS`, here so that the option tables need not import
# Keras (tests/test_cli.py checks that they agree).
CELL_NAMES = ("lstm", "peephole", "cifg", "gru", "nig", "nfg", "nog", "niaf", "noaf", "fgr")


def deferred(path: str) -> Callable:
    """The function at `path` ("package.module:function"), imported at its first call."""
    module, name = path.split(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


@dataclass(frozen=True)
class Option:
    """A training option: `name` in the config, `--name-with-dashes` on the command
    line, its default, its help, and argparse's `type`, `choices` or `action`."""

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = None
    choices: Sequence[Any] | None = None
    action: Any = None


def recurrent_options(*, cell, units, layers, dropout, recurrent_dropout, bidirectional=None) -> list[Option]:
    """The options of the recurrent layers every app has, with the app's defaults;
    `bidirectional=None` for an app whose layers only read forward (no such option)."""
    return [
        Option("cell", cell, "recurrent cell", choices=list(CELL_NAMES)),
        Option("units", units, "units per recurrent layer", cli.positive_int),
        Option("layers", layers, "number of stacked recurrent layers", cli.positive_int),
        *(
            []
            if bidirectional is None
            else [Option("bidirectional", bidirectional, "bidirectional layers", action=argparse.BooleanOptionalAction)]
        ),
        Option("dropout", dropout, "dropout rate", cli.dropout_rate),
        Option("recurrent_dropout", recurrent_dropout, "recurrent dropout rate", cli.dropout_rate),
    ]


def training_options(*, epochs, batch_size, learning_rate, patience) -> list[Option]:
    """The options of `fit` every app has, with the app's defaults."""
    return [
        Option("epochs", epochs, "maximum number of epochs", cli.positive_int),
        Option("batch_size", batch_size, "global batch size (split across replicas)", cli.positive_int),
        Option("learning_rate", learning_rate, "Adam learning rate", cli.positive_float),
        Option("patience", patience, "epochs without improvement before stopping early", cli.positive_int),
        Option(
            "mixed_precision",
            None,
            "compute in float16 (Keras' mixed_float16, with loss scaling) or bfloat16 (mixed_bfloat16, on "
            "devices that have it); weights, inputs and outputs stay float32",
            choices=["float16", "bfloat16"],
        ),
    ]


def choice(hp, name, config, values=None):
    """The hyperparameter `name`: a choice among `values` (default: half, once and twice
    its value in `config`) and its value in `config`, which is its default."""
    value = config[name]
    values = [type(value)(value * factor) for factor in (0.5, 1, 2)] if values is None else values
    return hp.Choice(name, sorted({*values, value}), default=value)


def recurrent_space(hp, config, bidirectional=True) -> dict:
    """The hyperparameters every app tunes, the cell first of all (`hp` is a KerasTuner
    `HyperParameters`), each centred on, and defaulting to, its value in `config` (the
    app's defaults and the options set): a search's first trial is that configuration."""
    dropout, recurrent_dropout, rate = config["dropout"], config["recurrent_dropout"], config["learning_rate"]
    return {
        "cell": choice(hp, "cell", config, CELL_NAMES),
        "units": choice(hp, "units", config),
        "layers": hp.Int("layers", 1, max(2, config["layers"]), default=config["layers"]),
        **({"bidirectional": hp.Boolean("bidirectional", default=config["bidirectional"])} if bidirectional else {}),
        "dropout": hp.Float("dropout", 0.0, max(0.5, dropout), step=0.05, default=dropout),
        "recurrent_dropout": hp.Float(
            "recurrent_dropout", 0.0, max(0.3, recurrent_dropout), step=0.05, default=recurrent_dropout
        ),
        "learning_rate": hp.Float("learning_rate", rate / 3, rate * 3, sampling="log", default=rate),
        "batch_size": choice(hp, "batch_size", config),
    }


@dataclass(frozen=True)
class App:
    """One application. A config is a dict: the option defaults, overridden by what
    the user gave, plus `data_dir`, `limit` and `seed`.

    Attributes:
        name: The app's name on the command line and in run and export paths.
        description: Shown by `seqapps <app> --help`.
        options: The training options, defaults and help.
        monitor, mode: The validation metric that early stopping, the best
            checkpoint and tuning follow, and whether higher ("max") or lower
            ("min") is better.
        load: `load(config) -> data`: everything every model of a run (or every
            trial of a search) trains on: the training and validation splits and
            what is computed from them once (vocabularies, statistics).
        build_model: `build_model(config, data) -> keras.Model`, compiled.
        datasets: `datasets(config, data, model) -> (train, validation)` tf.data pipelines.
        search_space: `search_space(hp, config) -> dict` of the tuned hyperparameters.
        evaluate, predict, export: The other commands, each given the parsed arguments
            (None, with `search_space`, for an App that only trains).
        command_arguments: The commands' own arguments: command -> [(flags, argparse kwargs)].
        after_fit: `after_fit(config, data, model) -> (model, dict)`: the final model,
            made from the best one with what the app learns on the validation split
            once that is known (sentiment: its n-gram path joins, weighed); it is saved
            as model.keras, and the dict, what it measured, in state.json under "after_fit".
        run_files: `run_files(data) -> {file name: JSON-able data}` written into the
            run directory before training, for the other commands.
        complete_config: `complete_config(config) -> config` with the options left
            unset (None) whose defaults depend on other options filled in
            (forecasting: the named dataset's lookback, horizon, segment and season).
        presets: Named recipes, `train --preset NAME`: option -> value, applied over
            the defaults and under the options given.
        training_commands: More commands that train, each an `App` of its own (options,
            data, model, run directories under runs/<its name>) with only the training
            flow filled in (sentiment: `pretrain`, a language model).
    """

    name: str
    description: str
    options: Sequence[Option]
    monitor: str
    mode: str
    load: Callable[[dict], Any]
    build_model: Callable[[dict, Any], Any]
    datasets: Callable[[dict, Any, Any], tuple]
    search_space: Callable[[Any, dict], dict] | None = None
    evaluate: Callable[[argparse.Namespace], Any] | None = None
    predict: Callable[[argparse.Namespace], Any] | None = None
    export: Callable[[argparse.Namespace], Any] | None = None
    command_arguments: dict[str, list[tuple[tuple[str, ...], dict]]] = field(default_factory=dict)
    after_fit: Callable[[dict, Any, Any], dict] | None = None
    run_files: Callable[[Any], dict] = lambda data: {}
    complete_config: Callable[[dict], dict] = lambda config: config
    presets: dict[str, dict] = field(default_factory=dict)
    training_commands: dict[str, "App"] = field(default_factory=dict)

    @property
    def defaults(self) -> dict:
        return {option.name: option.default for option in self.options}

    def main(self, argv: Sequence[str] | None = None):
        """`seqapps <app> ...`: parse `argv` (default: sys.argv) and run the command."""
        return cli.run(self, argv)

    def train(self, args: argparse.Namespace):
        """The `train` command: a new run directory (or the one to --resume), then
        load -> build -> fit, on the tf.distribute strategy of --distribute. Returns
        the best model (a `keras.Model`)."""
        import keras

        from seqapps.apps import distribute, runs

        if args.distribute == "multi-worker" and not args.run_dir:
            raise UsageError("--distribute multi-worker needs --run-dir: the chief writes it, and --resume reads it")
        run_dir, config = runs.run_config(self.name, args, self.defaults, self.presets)
        config = self.complete_config(config)
        strategy = distribute.strategy(args.distribute, args.peer_timeout)  # first: it sets up TensorFlow
        distribute.check_batch_size(strategy, config["batch_size"])
        keras.utils.set_random_seed(config["seed"])
        data = self.load(config)  # before the run directory: bad data leaves none behind
        chief = distribute.is_chief(strategy)
        with distribute.run_directory(run_dir, strategy) as own_dir, strategy.scope():
            own_dir = runs.start_run(own_dir, self.name, config, self.run_files(data), resume=args.resume)
            run_dir = run_dir or own_dir
            print(f"Run directory {run_dir}" if chief else f"Training beside the chief, which writes {run_dir}")
            with runs.dtype_policy(config.get("mixed_precision")):  # runs written before the option have none
                model = self.build_model(config, data)
            train_data, validation_data = self.datasets(config, data, model)
            best = runs.fit(
                model,
                train_data,
                validation_data,
                own_dir,
                config,
                monitor=self.monitor,
                mode=self.mode,
                verbose=args.verbose if chief else 0,
                after_fit=self.after_fit and (lambda model: self.after_fit(config, data, model)),
            )
        if chief:
            print(f"Model saved to {run_dir / 'model.keras'}")
        return best
