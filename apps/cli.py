"""The command line every app shares:

    seqapps <app> train     [--data-dir DIR] [--cell NAME] [--epochs N] [--limit N] [--run-dir DIR] [--seed N] ...
    seqapps <app> evaluate  --run-dir DIR | --model PATH
    seqapps <app> predict   --model PATH INPUT...
    seqapps <app> export    --run-dir DIR [--export-dir DIR] [--version N]

`run(app, argv)` builds the parser from an app's option table (`seqapps.apps.app.App`), adds
the app's own command arguments, and calls the chosen command. Problems with the
user's input raise `UsageError`, which `run` prints as one line.
"""

import argparse
import os
import sys
from pathlib import Path

DEFAULT_SEED = 1337


class UsageError(Exception):
    """A problem with what the user gave (a file, a directory, an option), with its fix."""


def checked_number(text: str, convert, kind: str, in_range, requirement: str):
    """`text` read by `convert` (int or float) and kept if `in_range`; otherwise
    argparse's one-line error: "expected <kind>" or "must be <requirement>"."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not in_range(value):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer above zero."""
    return checked_number(text, int, "a positive integer", lambda value: value > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer, zero or above."""
    return checked_number(text, int, "an integer", lambda value: value >= 0, "zero or more")


def positive_float(text: str) -> float:
    """An argparse type: a number above zero."""
    return checked_number(text, float, "a positive number", lambda value: value > 0, "a positive number")


def fraction(text: str) -> float:
    """An argparse type: a share strictly between 0 and 1."""
    return checked_number(text, float, "a fraction", lambda value: 0 < value < 1, "between 0 and 1")


def dropout_rate(text: str) -> float:
    """An argparse type: a rate of dropout, 0 (none) up to but not including 1."""
    return checked_number(text, float, "a dropout rate", lambda value: 0 <= value < 1, "in [0, 1)")


def absolute_path(text: str) -> str:
    """An argparse type: a path made absolute, so a run's config.json works from any directory."""
    return str(Path(text).expanduser().resolve())


def add_option(parser: argparse.ArgumentParser, option) -> None:
    """An `seqapps.apps.app.Option` as `--name`; left out, it is None and the run takes the default."""
    shown = option.default is not None and option.action != "store_true"
    help = option.help + (f" (default: {option.default})" if shown else "")
    kwargs = {"action": option.action} if option.action else {"type": option.type, "choices": option.choices}
    parser.add_argument("--" + option.name.replace("_", "-"), default=None, help=help, **kwargs)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=absolute_path,
        default=os.environ.get("SEQAPPS_DATA_DIR"),
        help="directory with the dataset files in their published form "
        "(default: $SEQAPPS_DATA_DIR; without either, download and cache)",
    )
    parser.add_argument("--limit", type=positive_int, help="use at most N examples per split, for a quick run")


def add_training_arguments(parser: argparse.ArgumentParser, app) -> None:
    """The arguments of a command that trains `app`'s model into a run directory."""
    add_data_arguments(parser)
    for option in app.options:
        add_option(parser, option)
    if app.presets:
        recipes = "; ".join(
            f"{name}: " + " ".join(f"--{key.replace('_', '-')} {value}" for key, value in preset.items())
            for name, preset in app.presets.items()
        )
        parser.add_argument(
            "--preset", choices=list(app.presets), help=f"a named recipe; options given beside it win ({recipes})"
        )
    parser.add_argument("--run-dir", help=f"where to write the run (default: runs/{app.name}/<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --run-dir")
    parser.add_argument(
        "--seed", type=int, help=f"fixes splits, initialisation and shuffling (default: {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--distribute",
        choices=["none", "mirrored", "multi-worker"],
        default="none",
        help="none: one device; mirrored: this machine's GPUs (tf.distribute.MirroredStrategy); multi-worker: "
        "the machines of $TF_CONFIG (MultiWorkerMirroredStrategy), running the same command (default: %(default)s)",
    )
    parser.add_argument(
        "--peer-timeout",
        type=positive_float,
        default=300,
        help="multi-worker: seconds to wait for the other workers to start (default: %(default)s)",
    )
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output")


def build_parser(app) -> argparse.ArgumentParser:
    """The parser of `seqapps <app>`: the four commands, their shared arguments, the
    app's training options and its commands' own arguments."""
    parser = argparse.ArgumentParser(
        prog=f"seqapps {app.name}", description=app.description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model into a run directory")
    add_training_arguments(train, app)
    for name, trainer in app.training_commands.items():
        add_training_arguments(commands.add_parser(name, help=trainer.description.splitlines()[0]), trainer)

    evaluate = commands.add_parser("evaluate", help="evaluate on the test split and write metrics.json")
    model = evaluate.add_mutually_exclusive_group(required=True)
    model.add_argument("--run-dir", help="a run directory written by train")
    model.add_argument("--model", help="a .keras model file")
    add_data_arguments(evaluate)

    predict = commands.add_parser("predict", help="predict with a .keras model or an exported SavedModel")
    predict.add_argument("--model", required=True, help="a .keras file, a run directory or a SavedModel directory")
    predict.add_argument("inputs", nargs="*", metavar="INPUT", help="inputs; none: read --file or stdin")
    predict.add_argument("--file", help="read inputs from this file, one per line")

    export = commands.add_parser("export", help=f"export a TensorFlow SavedModel to saved_models/{app.name}/<version>")
    export.add_argument("--run-dir", required=True, help="the run to export")
    export.add_argument("--export-dir", default=os.path.join("saved_models", app.name), help="(default: %(default)s)")
    export.add_argument("--version", type=positive_int, help="version number (default: the next free one)")

    subparsers = {"train": train, "evaluate": evaluate, "predict": predict, "export": export}
    for command, arguments in app.command_arguments.items():
        for flags, kwargs in arguments:
            subparsers[command].add_argument(*flags, **kwargs)
    return parser


def run(app, argv=None):
    """Parse `argv`, call the app's handler of the chosen command, print a UsageError as one line."""
    parser = build_parser(app)
    args = parser.parse_args(argv)
    handlers = {"train": app.train, "evaluate": app.evaluate, "predict": app.predict, "export": app.export}
    handlers.update({name: trainer.train for name, trainer in app.training_commands.items()})
    try:
        return handlers[args.command](args)
    except UsageError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")


def read_inputs(args: argparse.Namespace) -> list[str]:
    """Inputs from the command line, else from --file, else from stdin; one per line."""
    if args.inputs:
        return list(args.inputs)
    if args.file:
        try:
            with open(args.file, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except OSError as e:
            raise UsageError(f"cannot read --file {args.file}: {e.strerror}") from None
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("nothing to predict: give inputs as arguments, with --file, or on stdin")
    return sys.stdin.read().splitlines()


def as_bytes(texts: list[str | bytes]) -> list[bytes]:
    """Texts as UTF-8 bytes for a string tensor. Command-line text may carry
    undecodable bytes as surrogates: they are sent on as the bytes they were."""
    return [t if isinstance(t, bytes) else t.encode("utf-8", "surrogateescape") for t in texts]


def string_tensor(texts):
    """`texts` (str or bytes) as a tf.string tensor, without numpy's fixed-width copy:
    `.astype(str)` takes 4 bytes per character of the longest text for every text,
    1.2 GB for IMDB's training reviews."""
    import tensorflow as tf  # here: importing this module does not load TensorFlow

    return tf.constant(as_bytes(list(texts)), dtype=tf.string)
