"""`seqapps tune <app>` (also `python -m seqapps.tuning <app>`): a KerasTuner search over an
app's model, the recurrent cell included.

    seqapps tune sentiment --data-dir ../shared/data --tuner bayesian --max-trials 20 --max-epochs 4 --limit 5000
    seqapps tune forecasting --data-dir ../shared/data --set horizon=192 --set cell=gru --export

A search lives in `--directory/--project-name` and resumes from there when run again
(`--overwrite` starts over). `--set NAME=VALUE` fixes a hyperparameter or an app
option. When it ends, the project directory holds `best_hyperparameters.json`,
`trials.md` (every trial: hyperparameters, score, epochs, time) and `trials.png`;
`--export` retrains the best configuration on the full training split and exports it
through the app's own `train` and `export`.

Distributed search uses KerasTuner's chief/worker mode: start one chief and any number
of workers with the same command and a shared --directory, each with
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (the chief's address) and
KERASTUNER_TUNER_ID (`chief` for the chief, `tuner0`, `tuner1`, ... for the workers).
The chief hands out trials and writes the results when all are done.
"""

import argparse
import json
import os
import time
from pathlib import Path

import keras_tuner

from seqapps.apps import APPS, get_app, runs
from seqapps.apps.cli import UsageError, add_data_arguments, positive_int
from seqapps.apps.plots import plot_trial_scores
from seqapps.apps.tables import markdown_table
from seqapps.tuning.hypermodel import AppHyperModel

TUNERS = {
    "hyperband": keras_tuner.Hyperband,
    "bayesian": keras_tuner.BayesianOptimization,
    "random": keras_tuner.RandomSearch,
}


def resident_memory_mib():
    """This process's resident memory now (VmRSS), to show it stays flat across trials."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    return int(status.read_text().split("VmRSS:")[1].split()[0]) / 1024


class TrialRecords:
    """Tuner mixin: writes each trial's time, epochs, status and tuner to
    `trial_<id>/seqapps_trial.json`, which KerasTuner does not record itself."""

    def on_trial_begin(self, trial):
        self._started, self._epochs = time.time(), 0
        super().on_trial_begin(trial)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        self._epochs += 1
        super().on_epoch_end(trial, model, epoch, logs=logs)

    def on_trial_end(self, trial):
        seconds = time.time() - self._started
        super().on_trial_end(trial)
        # The oracle decides the final status (an error is FAILED once retries are spent).
        status = self.oracle.get_trial(trial.trial_id).status
        record = {
            "trial_id": trial.trial_id,
            "status": status,
            "seconds": seconds,
            "epochs": self._epochs,
            "tuner_id": self.tuner_id,
            "rss_mib": resident_memory_mib(),
        }
        if trial.message:
            record["error"] = trial.message.strip().splitlines()[-1]
        runs.save_json(Path(self.get_trial_dir(trial.trial_id)) / "seqapps_trial.json", record)


def parse_sets(pairs):
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--set {pair!r}: expected NAME=VALUE")
        try:
            values[name.replace("-", "_")] = json.loads(text)
        except json.JSONDecodeError:
            values[name.replace("-", "_")] = text
    return values


def make_tuner(args, hypermodel, fixed):
    hyperparameters = keras_tuner.HyperParameters()
    for name, value in fixed.items():
        hyperparameters.Fixed(name, value)
    common = dict(
        hypermodel=hypermodel,
        objective=hypermodel.objective,
        hyperparameters=hyperparameters,
        tune_new_entries=True,
        executions_per_trial=args.executions_per_trial,
        directory=args.directory,
        project_name=args.project_name or hypermodel.name,
        overwrite=args.overwrite,
        seed=args.seed,
        max_consecutive_failed_trials=args.max_consecutive_failed_trials,
    )
    base = TUNERS[args.tuner]
    tuner_class = type(base.__name__, (TrialRecords, base), {})
    if args.tuner == "hyperband":
        return tuner_class(max_epochs=args.max_epochs, **common)
    return tuner_class(max_trials=args.max_trials, **common)


def trial_rows(tuner):
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items(), key=lambda item: int(item[0])):
        record_path = Path(tuner.get_trial_dir(trial_id)) / "seqapps_trial.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        rows.append(
            {
                "trial": trial_id,
                "status": str(trial.status),
                "score": trial.score,
                "epochs": record.get("epochs"),
                "seconds": record.get("seconds"),
                "rss_mib": record.get("rss_mib"),
                "tuner_id": record.get("tuner_id"),
                "hyperparameters": values,
            }
        )
    return rows


def write_results(tuner, out_dir):
    """best_hyperparameters.json, trials.md and trials.png in `out_dir`; returns the best trial."""
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise UsageError(f"no trial of {out_dir} completed; see the errors above")
    best = best[0]
    objective = tuner.oracle.objective
    rows = trial_rows(tuner)
    summary = {
        "trial": best.trial_id,
        "objective": objective.name,
        "direction": objective.direction,
        "score": best.score,
        "hyperparameters": {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")},
    }
    runs.save_json(out_dir / "best_hyperparameters.json", summary)
    names = sorted({name for row in rows for name in row["hyperparameters"]})
    table_rows = [
        {**row, **{k: f"{v:.4g}" if isinstance(v, float) else v for k, v in row["hyperparameters"].items()}}
        for row in rows
    ]
    columns = [
        ("trial", "trial", "{}"),
        ("status", "status", "{}"),
        ("score", objective.name, "{:.4f}"),
        ("epochs", "epochs", "{}"),
        ("seconds", "seconds", "{:.0f}"),
        ("rss_mib", "RSS MiB after", "{:.0f}"),
    ]
    columns += [(n, n, "{}") for n in names]
    (out_dir / "trials.md").write_text(
        f"# Trials, objective {objective.name} ({objective.direction})\n\n" + markdown_table(table_rows, columns) + "\n"
    )
    plot_trial_scores(rows, objective.name, out_dir / "trials.png")
    return summary


def train_arguments(values):
    """A config as `train` command-line options."""
    arguments = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            arguments.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            arguments += [flag, str(value)]
    return arguments


def export_best(args, hypermodel, summary, out_dir):
    """Retrain the best configuration on the full training split with the app's
    `train` (resuming it if it was interrupted), and export it with its `export`."""
    app = hypermodel.app
    run_dir = out_dir / "best_run"
    options = {k: v for k, v in hypermodel.fixed.items() if k in app.defaults and v != app.defaults[k]}
    values = {**options, **summary["hyperparameters"], "epochs": args.max_epochs, "seed": args.seed}
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    if (run_dir / "config.json").exists():
        app.main(["train", "--resume", "--run-dir", str(run_dir)])
    else:
        app.main(["train", *data, "--run-dir", str(run_dir), *train_arguments(values)])
    export_dir = args.export_dir or os.path.join("saved_models", app.name)
    return app.main(["export", "--run-dir", str(run_dir), "--export-dir", export_dir])


def is_worker():
    """Whether this process is a worker of a distributed search: KerasTuner's
    documented variables name the chief's address and this tuner, not the chief."""
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "chief")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="seqapps tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("app", choices=APPS)
    parser.add_argument("--tuner", default="hyperband", choices=list(TUNERS), help="(default: %(default)s)")
    parser.add_argument(
        "--max-trials", type=positive_int, default=20, help="trials of bayesian and random (default: 20)"
    )
    parser.add_argument("--max-epochs", type=positive_int, default=10, help="epochs per trial at most (default: 10)")
    parser.add_argument("--executions-per-trial", type=positive_int, default=1, help="(default: 1)")
    parser.add_argument("--max-consecutive-failed-trials", type=positive_int, default=3, help="(default: 3)")
    parser.add_argument("--directory", default=os.path.join("runs", "tuning"), help="(default: %(default)s)")
    parser.add_argument("--project-name", help="(default: the app's name)")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a hyperparameter, or set an app option (repeatable)",
    )
    parser.add_argument(
        "--objective",
        metavar="METRIC[:max]",
        help="the validation metric trials are scored on, lowest best unless :max follows (default: the app's, "
        "val_loss or val_accuracy); e.g. val_quantiles_crps for forecasting with --set quantiles=...",
    )
    parser.add_argument("--export", action="store_true", help="retrain the best configuration and export it")
    parser.add_argument("--export-dir", help="(default: saved_models/<app>)")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    args = parser.parse_args(argv)
    try:
        return tune(args)
    except UsageError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")


def tune(args):
    app = get_app(args.app)
    sets = parse_sets(args.set)
    types = {option.name: option.type for option in app.options if option.type}
    # An option's own type reads its text, as on the train command line (--set quantiles=0.1,0.9).
    options = {k: types[k](v) if k in types and isinstance(v, str) else v for k, v in sets.items() if k in app.defaults}
    config = {**app.defaults, **options, "seed": args.seed, "limit": args.limit, "data_dir": args.data_dir}
    config = app.complete_config(config)
    space = keras_tuner.HyperParameters()
    app.search_space(space, config)
    names = list(space.values)
    unknown = [k for k in sets if k not in names and k not in options]
    if unknown:
        raise UsageError(
            f"--set {', '.join(unknown)}: not a hyperparameter ({', '.join(names)}) "
            f"nor a {args.app} option ({', '.join(app.defaults)})"
        )
    fixed = {k: v for k, v in sets.items() if k in names}
    if set(names) <= set(fixed):
        raise UsageError("empty search space: --set fixes every hyperparameter; leave at least one free")
    objective = None
    if args.objective:
        name, _, direction = args.objective.partition(":")
        objective = keras_tuner.Objective(name, "max" if direction == "max" else "min")
    hypermodel = AppHyperModel(app, config, objective)
    tuner = make_tuner(args, hypermodel, fixed)
    tuner.search(epochs=args.max_epochs, verbose=args.verbose)
    if is_worker():
        return None  # the chief writes the results
    out_dir = Path(tuner.project_dir)
    summary = write_results(tuner, out_dir)
    print(f"\nBest trial {summary['trial']}: {summary['objective']} = {summary['score']:.4f}")
    print(json.dumps(summary["hyperparameters"], indent=2))
    print(f"Wrote {out_dir / 'best_hyperparameters.json'}, trials.md and trials.png")
    if args.export:
        summary["export"] = str(export_best(args, hypermodel, summary, out_dir))
    return summary


if __name__ == "__main__":
    main()
