"""Run directories: what `train` writes, and how an interrupted run resumes.

A run directory holds

    config.json     the training options (what --resume rebuilds the run from)
    last.keras      the model after the latest epoch, optimizer state included
    best.keras      the model at its best validation score so far
    model.keras     the final model (the best one), written when training ends
    state.json      epochs done, best score, history so far
    history.json    per-epoch metrics; history.csv the same as CSV
    learning_curves.png
    logs/           TensorBoard
    metrics.json    what `evaluate` measured

Every file is written to a temporary name and renamed into place, so a run killed
mid-write leaves the previous version intact.
"""

import argparse
import contextlib
import itertools
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras

from seqapps.apps import distribute
from seqapps.apps.cli import DEFAULT_SEED, UsageError
from seqapps.apps.plots import plot_history


def atomic_write(path: str | Path, write: Callable[[Path], object], *, exclusive: bool = False) -> None:
    """Call `write(tmp_path)`, then rename the result onto `path`. The temporary name is
    hidden and unique, so two writers of one file never share it. `exclusive`: publish
    only if `path` does not exist yet (FileExistsError otherwise)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if exclusive:
            os.link(tmp, path)  # unlike a rename, fails where `path` exists
        else:
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_json(path: str | Path, data, *, exclusive: bool = False) -> None:
    text = json.dumps(data, indent=2, default=float) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text), exclusive=exclusive)


def load_json(path: str | Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} not found: is this a run directory written by `train`?") from None


def save_model(model: keras.Model, path: str | Path) -> None:
    atomic_write(path, model.save)


@contextlib.contextmanager
def dtype_policy(mixed_precision: str | None):
    """The global Keras dtype policy for what is built inside: ``mixed_<mixed_precision>``
    or unchanged (None). The layers keep it in their config, so a saved model reloads with it."""
    if mixed_precision is None:
        yield
        return
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def saved_mixed_precision(path: str | Path) -> str | None:
    """The mixed precision ("float16", "bfloat16") the .keras file at `path` was built with, or None."""
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    return next((name for name in ("float16", "bfloat16") if f'"mixed_{name}"' in config), None)


def load_model(path: str | Path) -> keras.Model:
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise UsageError(f"no model at {path}: give a .keras file or a run directory with model.keras")
    # Loaded under the policy it was built with, the model compiles as it did then: with
    # mixed_float16, its optimizer is wrapped in loss scaling again, and the saved state loads.
    with dtype_policy(saved_mixed_precision(path)):
        return keras.saving.load_model(path)


def load_model_to_evaluate(path: str | Path) -> tuple[keras.Model, Path]:
    """The model at `path` (a .keras file or a run directory) and the directory
    where `evaluate` writes beside it."""
    path = Path(path)
    return load_model(path), (path if path.is_dir() else path.parent)


# The arguments of `train` that say how to run it, not what to train: not in the config.
RUN_ARGUMENTS = ("command", "resume", "run_dir", "verbose", "distribute", "peer_timeout")
# What a resumed run may change (and saves): how long it trains, and where its data lie.
RESUME_OVERRIDES = ("epochs", "data_dir")


def run_config(
    app: str, args: argparse.Namespace, defaults: dict, presets: dict | None = None
) -> tuple[Path | None, dict]:
    """The run directory and config of `train`, checked but not yet written.

    New run: the app's `defaults`, overridden by the `presets` entry that --preset
    names, overridden by the options given, in a directory
    that holds no run yet (None: a new one under runs/<app>/, made by `start_run`).
    On --resume: the saved config (with the defaults of options added since), so the
    run continues as it started. Options given with --resume must agree with it, but
    `--epochs` (to train longer or shorter) and `--data-dir` (the files may have
    moved), which are taken and saved.
    """
    arguments = {key: value for key, value in vars(args).items() if key not in RUN_ARGUMENTS}
    given = {key: value for key, value in arguments.items() if value is not None}
    if args.resume:
        if not args.run_dir:
            raise UsageError("--resume needs the --run-dir of the run to continue")
        run_dir = Path(args.run_dir)
        config = {**defaults, **load_json(run_dir / "config.json")}
        conflicts = [
            f"--{key.replace('_', '-')} {value} (the run has {config.get(key)})"
            for key, value in given.items()
            if key not in RESUME_OVERRIDES and config.get(key) != value
        ]
        if conflicts:
            raise UsageError(
                f"--resume continues {run_dir} with its own options, and these differ: {'; '.join(conflicts)}. "
                "Leave them out, or start a new run"
            )
        return run_dir, {**config, **{key: given[key] for key in RESUME_OVERRIDES if key in given}}
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir and (run_dir / "config.json").exists():
        raise UsageError(already_a_run(run_dir))
    preset = presets[args.preset] if getattr(args, "preset", None) else {}
    # The arguments left out that have no default (--data-dir, --limit) are kept as None.
    return run_dir, {**arguments, **defaults, "seed": DEFAULT_SEED, **preset, **given}


def already_a_run(run_dir: Path) -> str:
    return f"{run_dir} already holds a run: continue it with --resume, or choose another --run-dir"


def start_run(run_dir: Path | None, app: str, config: dict, files: dict, *, resume: bool = False) -> Path:
    """Write config.json and `files` (name -> JSON-able data) into the run directory, and
    return it. A new run never shares its directory with another: `run_dir` None makes
    runs/<app>/<time> by an exclusive mkdir (with a suffix -2, -3, ... when a run started
    in the same second took it), and config.json is created only where there is none."""
    if run_dir is None:
        run_dir = new_directory(Path("runs") / app / time.strftime("%Y%m%d-%H%M%S"))
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        save_json(run_dir / "config.json", config, exclusive=not resume)
    except FileExistsError:
        raise UsageError(already_a_run(run_dir)) from None
    for name, data in files.items():
        save_json(run_dir / name, data)
    return run_dir


def new_directory(path: Path) -> Path:
    """Create `path`, or `path`-2, -3, ... where it exists, and return the one created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        candidate = path if number == 1 else path.with_name(f"{path.name}-{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: last.keras and state.json; best.keras when `monitor` improves."""

    def __init__(self, run_dir, monitor, mode, state):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key, value in logs.items():
            self.state["history"].setdefault(key, []).append(float(value))
        score = logs.get(self.monitor)
        if score is not None and (self.state["best"] is None or self.better(score, self.state["best"])):
            self.state["best"] = float(score)
            save_model(self.model, self.run_dir / "best.keras")
        save_model(self.model, self.run_dir / "last.keras")
        self.state["epoch"] = epoch + 1
        save_json(self.run_dir / "state.json", self.state)


class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` that starts from the epochs already trained (`history`: the
    run's metrics so far, by name): their best score, and the epochs since it."""

    def __init__(self, history, **kwargs):
        super().__init__(**kwargs)
        self.history = history

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        scores = self.history.get(self.monitor)
        if scores:
            best = (min if self.mode == "min" else max)(range(len(scores)), key=scores.__getitem__)
            self.best, self.best_epoch, self.wait = scores[best], best, len(scores) - 1 - best


def fit(
    model: keras.Model,
    train_data,
    validation_data,
    run_dir: str | Path,
    config: dict,
    *,
    monitor: str,
    mode: str,
    verbose: int = 1,
    after_fit: Callable[[keras.Model], tuple[keras.Model, dict]] | None = None,
) -> keras.Model:
    """Fit `model` (or, if the run was interrupted, its last checkpoint) for
    `config["epochs"]`, stopping after `config["patience"]` epochs without improvement
    of `monitor`, and finish the run.

    Returns the best model, or the model `after_fit(best)` makes of it if given (the
    dict it returns is saved in state.json), also saved as model.keras. A resumed run continues early
    stopping's count from the checkpoint's history.
    """
    epochs, patience = config["epochs"], config["patience"]
    run_dir = Path(run_dir)
    state_path = run_dir / "state.json"
    if state_path.exists():
        state = load_json(state_path)
        model = load_model(run_dir / "last.keras")
        print(f"Resuming {run_dir} after epoch {state['epoch']} of {epochs}.")
    else:
        state = {"epoch": 0, "best": None, "monitor": monitor, "history": {}}
    callbacks = [
        RunCheckpoint(run_dir, monitor, mode, state),
        ResumedEarlyStopping(state["history"], monitor=monitor, mode=mode, patience=patience),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs")),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    started = time.time()
    distribute.fit(
        model,
        train_data,
        validation_data,
        epochs=epochs,
        initial_epoch=state["epoch"],
        callbacks=callbacks,
        verbose=verbose,
    )
    state["train_seconds"] = state.get("train_seconds", 0.0) + time.time() - started
    best = load_model(run_dir / "best.keras")
    if after_fit:
        best, state["after_fit"] = after_fit(best)
    save_json(state_path, state)
    save_model(best, run_dir / "model.keras")
    save_json(run_dir / "history.json", state["history"])
    plot_history(state["history"], run_dir / "learning_curves.png")
    return best
