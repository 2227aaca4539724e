"""The command line every app shares:

    seqapps <app> train     [--data-dir DIR] [--cell NAME] [--epochs N] [--limit N] [--run-dir DIR] [--seed N] ...
    seqapps <app> evaluate  --run-dir DIR | --model PATH
    seqapps <app> predict   --model PATH INPUT...
    seqapps <app> export    --run-dir DIR [--export-dir DIR] [--version N]

An app builds its parser with `app_parser`, adds its own options, and hands its
command functions to `run`. Problems with the user's input raise `UsageError`,
which `run` prints as one line.
"""

import argparse
import os
import sys

from layers import CELLS


class UsageError(Exception):
    """A problem with what the user gave (a file, a directory, an option), with its fix."""


def app_parser(app, description, defaults):
    """A parser for `seqapps <app>` with the four commands and their shared options.

    `defaults` are the app's training defaults, shown in the help; options left out
    on the command line are None, and the run takes the default. Returns the parser
    and a dict of the command subparsers, for the app to extend.
    """
    parser = argparse.ArgumentParser(
        prog=f"seqapps {app}", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model into a run directory")
    add_data_arguments(train)

    def option(flag, help, **kwargs):
        add_option(train, defaults, flag, help, **kwargs)

    option("--cell", "recurrent cell", choices=list(CELLS))
    option("--units", "units per recurrent layer", type=int)
    option("--layers", "number of stacked recurrent layers", type=int)
    option("--bidirectional", "bidirectional recurrent layers", action=argparse.BooleanOptionalAction)
    option("--dropout", "dropout rate", type=float)
    option("--recurrent-dropout", "recurrent dropout rate", type=float)
    option("--epochs", "maximum number of epochs", type=int)
    option("--batch-size", "batch size", type=int)
    option("--learning-rate", "Adam learning rate", type=float)
    option("--patience", "epochs without improvement before stopping early", type=int)
    train.add_argument("--run-dir", help=f"where to write the run (default: runs/{app}/<time>)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --run-dir")
    train.add_argument("--seed", type=int, default=1337, help="fixes splits, initialisation and shuffling")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output")

    evaluate = commands.add_parser("evaluate", help="evaluate on the test split and write metrics.json")
    add_model_arguments(evaluate)
    add_data_arguments(evaluate)

    predict = commands.add_parser("predict", help="predict with a .keras model or an exported SavedModel")
    predict.add_argument("--model", required=True, help="a .keras file, a run directory or a SavedModel directory")
    predict.add_argument("inputs", nargs="*", metavar="INPUT", help="inputs; none: read --file or stdin")
    predict.add_argument("--file", help="read inputs from this file, one per line")

    export = commands.add_parser("export", help=f"export a TensorFlow SavedModel to saved_models/{app}/<version>")
    export.add_argument("--run-dir", required=True, help="the run to export")
    export.add_argument("--export-dir", default=os.path.join("saved_models", app), help="(default: %(default)s)")
    export.add_argument("--version", type=int, help="version number (default: the next free one)")
    return parser, {"train": train, "evaluate": evaluate, "predict": predict, "export": export}


def add_option(parser, defaults, flag, help, **kwargs):
    """An option whose default is the app's (left out, it is None), shown in the help."""
    key = flag[2:].replace("-", "_")
    default = f" (default: {defaults[key]})" if key in defaults else ""
    parser.add_argument(flag, help=help + default, **kwargs)


def add_data_arguments(parser):
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("SEQAPPS_DATA_DIR"),
        help="directory with the dataset files in their published form "
        "(default: $SEQAPPS_DATA_DIR; without either, download and cache)",
    )
    parser.add_argument("--limit", type=int, help="use at most N examples per split, for a quick run")


def add_model_arguments(parser):
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--run-dir", help="a run directory written by train")
    group.add_argument("--model", help="a .keras model file")


def read_inputs(args):
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


def as_bytes(texts):
    """Texts as UTF-8 bytes for a string tensor. Command-line text may carry
    undecodable bytes as surrogates: they are sent on as the bytes they were."""
    return [t if isinstance(t, bytes) else t.encode("utf-8", "surrogateescape") for t in texts]


def require_positive(parser, args, names):
    """A one-line parser error for any of the integer options `names` given as zero or less."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def run(parser, handlers, argv=None):
    """Parse `argv`, call the handler of the chosen command, print a UsageError as one line."""
    args = parser.parse_args(argv)
    require_positive(
        parser,
        args,
        (
            "limit",
            "epochs",
            "units",
            "layers",
            "batch_size",
            "version",
            "lookback",
            "horizon",
            "stride",
            "segment",
            "season",
            "embedding_dim",
            "vocab_size",
            "source_vocab_size",
            "target_vocab_size",
            "max_length",
            "beam_size",
        ),
    )
    try:
        return handlers[args.command](args)
    except UsageError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
