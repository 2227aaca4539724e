"""`seqapps tune <app>` (also `python -m seqapps.tuning <app>`): a KerasTuner search over an
app's model, the recurrent cell included.

    seqapps tune sentiment --data-dir ../shared/data --tuner bayesian --max-trials 20 --max-epochs 4 --limit 5000
    seqapps tune forecasting --data-dir ../shared/data --set horizon=192 --set cell=gru --export

Every search starts from what is known to be good: its first trial is the app's
defaults (with the options and hyperparameters given by `--set NAME=VALUE`), trained
for `--max-epochs` like any full trial, and the search space is centred on them, so the
best trial is never worse on validation than the defaults. Each trial stops early as
`train` does (`patience`); each of its `--executions-per-trial` runs has its own seed,
and its score is their mean. `--budget-minutes` is the time the search's trials may run,
counted across resumes: no trial starts once it is spent (or with less of it left than
the shortest trial took), and the trial running when it runs out stops there (after its
current batch and a validation pass, as early stopping would stop it) and is scored on
what it trained. With Hyperband the budget is what ends the search, which otherwise
ends after one Hyperband iteration.

A search lives in `--directory/--project-name` and resumes from there when run again
(`--overwrite` starts over). When it ends, the project directory holds
`best_hyperparameters.json` (the best configuration and the defaults, with their
scores), `trials.md` (every trial: hyperparameters, score and its spread over
executions, epochs, time) and `trials.png` (the objective per trial, and against the
hyperparameters that mattered most); `--export` retrains the best configuration on the
full training split and exports it through the app's own `train` and `export`.
`--distribute mirrored` trains each trial on every GPU of the machine (KerasTuner's
`distribution_strategy`).

Distributed search uses KerasTuner's chief/worker mode: start one chief and any number
of workers with the same command and a shared --directory, each with
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (the chief's address) and
KERASTUNER_TUNER_ID (`chief` for the chief, `tuner0`, `tuner1`, ... for the workers).
The chief hands out trials and writes the results when all are done.
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import keras
import keras_tuner
import numpy as np

from seqapps.apps import APPS, distribute, get_app, runs
from seqapps.apps.cli import UsageError, add_data_arguments, positive_float, positive_int
from seqapps.apps.plots import plot_trial_scores
from seqapps.apps.tables import markdown_table
from seqapps.tuning.hypermodel import AppHyperModel

ORACLES = {
    "hyperband": keras_tuner.oracles.HyperbandOracle,
    "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
    "random": keras_tuner.oracles.RandomSearchOracle,
}


class DefaultsFirst:
    """Oracle mixin: the search's first trial is every hyperparameter's default (the
    app's search space makes it the configured value), with the most epochs any trial
    gets; and no trial starts once `budget_minutes` of trials have run, nor with less of
    the budget left than the shortest completed trial took (it would be stopped before it
    had trained as long as any trial so far). The time spent is part of the oracle's
    saved state, so the budget holds across resumes (a trial killed before it ended does
    not count)."""

    def __init__(self, *args, budget_minutes=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget_seconds = budget_minutes * 60 if budget_minutes else None
        self.spent_seconds = 0.0
        self.shortest_trial_seconds = 0.0  # none completed yet
        self._trial_starts = {}

    def seconds_left(self):
        """The budget not yet spent by finished trials, in seconds (None: no budget)."""
        return None if self.budget_seconds is None else self.budget_seconds - self.spent_seconds

    def populate_space(self, trial_id):
        if self.budget_seconds is not None and self.seconds_left() <= self.shortest_trial_seconds:
            return {"status": "STOPPED"}
        if self.trials:
            return super().populate_space(trial_id)
        values = {hp.name: hp.default for hp in self.hyperparameters.space}
        if isinstance(self, keras_tuner.oracles.HyperbandOracle):
            # Outside the brackets, whose first rounds train for a few epochs only.
            values |= {"tuner/epochs": self.max_epochs, "tuner/initial_epoch": 0, "tuner/bracket": 0, "tuner/round": 0}
        return {"status": "RUNNING", "values": values}

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if trial.status == "RUNNING":
            self._trial_starts.setdefault(trial.trial_id, time.time())
        return trial

    @keras_tuner.synchronized
    def end_trial(self, trial):
        seconds = time.time() - self._trial_starts.pop(trial.trial_id, time.time())
        self.spent_seconds += seconds
        if trial.status == "COMPLETED":
            self.shortest_trial_seconds = min(self.shortest_trial_seconds or seconds, seconds)
        super().end_trial(trial)

    def get_state(self):
        return {
            **super().get_state(),
            "spent_seconds": self.spent_seconds,
            "shortest_trial_seconds": self.shortest_trial_seconds,
        }

    def set_state(self, state):
        iterations = getattr(self, "hyperband_iterations", None)
        super().set_state(state)
        self.spent_seconds = state.get("spent_seconds", 0.0)
        self.shortest_trial_seconds = state.get("shortest_trial_seconds", 0.0)
        if iterations is not None:  # like the budget, this command's, not the saved search's
            self.hyperband_iterations = iterations


class Hyperband(keras_tuner.Hyperband):
    """KerasTuner's Hyperband tuner (it trains a trial on from the one it continues) on
    an oracle of our making: its own `__init__` makes a plain HyperbandOracle."""

    def __init__(self, oracle, hypermodel, **kwargs):
        keras_tuner.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def resident_memory_mib():
    """This process's resident memory now (VmRSS), to show it stays flat across trials."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    return int(status.read_text().split("VmRSS:")[1].split()[0]) / 1024


class StopAt(keras.callbacks.Callback):
    """Stops training after the batch during which the clock passes `deadline` (seconds
    since the epoch); Keras still validates the epoch it cut short."""

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline
        self.stopped = False

    def on_train_batch_end(self, batch, logs=None):
        if time.time() >= self.deadline:
            self.model.stop_training = self.stopped = True


class TrialRecords:
    """Tuner mixin: gives each execution of a trial its own seed, stops the trial when the
    search's budget runs out, and writes each trial's time, epochs, executions' seeds and
    scores, status and tuner to `trial_<id>/seqapps_trial.json`, which KerasTuner does not
    record itself."""

    def on_trial_begin(self, trial):
        self._started, self._epochs, self._seeds, self._scores = time.time(), 0, [], []
        # A distributed search's workers see the chief's oracle through a client without the budget:
        # the chief still starts no trial once it is spent.
        left = self.oracle.seconds_left() if isinstance(self.oracle, DefaultsFirst) else None
        self._deadline = math.inf if left is None else self._started + left
        self._stopped_by_budget = False
        super().on_trial_begin(trial)

    def _build_and_fit_model(self, trial, *args, **kwargs):
        if self._scores and time.time() >= self._deadline:
            # No execution starts once the budget is spent. KerasTuner averages what the executions return,
            # so the mean of those that ran keeps the trial's score theirs.
            return float(np.mean(self._scores))
        stop = StopAt(self._deadline)
        kwargs["callbacks"] = [*kwargs["callbacks"], stop]
        # KerasTuner runs this once per execution: its seed (initialisation, shuffle) is the search's plus its number.
        hypermodel, objective = self.hypermodel, self.hypermodel.objective
        hypermodel.seed = hypermodel.fixed["seed"] + len(self._seeds)
        self._seeds.append(hypermodel.seed)
        history = super()._build_and_fit_model(trial, *args, **kwargs)
        self._stopped_by_budget |= stop.stopped
        values = history.history.get(objective.name)
        if values:
            self._scores.append(float(max(values) if objective.direction == "max" else min(values)))
        return history

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
            "seeds": self._seeds,
            "execution_scores": self._scores,
            "stopped_by_budget": self._stopped_by_budget,
            "replicas": self.distribution_strategy.num_replicas_in_sync if self.distribution_strategy else 1,
            "tuner_id": self.tuner_id,
            "rss_mib": resident_memory_mib(),
        }
        if trial.message:
            record["error"] = trial.message.strip().splitlines()[-1]
        runs.save_json(Path(self.get_trial_dir(trial.trial_id)) / "seqapps_trial.json", record)


def parse_sets(app, pairs):
    """--set NAME=VALUE pairs -> {name: value}: the value of an option of `app` read as
    `train` reads it (the option's type and choices, so a bad one is a one-line error),
    any other as JSON, or as the text itself."""
    options = {option.name: option for option in app.options}
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--set {pair!r}: expected NAME=VALUE")
        name = name.replace("-", "_")
        option = options.get(name)
        try:
            value = option.type(text) if option and option.type else json.loads(text)
        except json.JSONDecodeError:
            value = text
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--set {pair}: {e}") from None
        if option and option.choices and value not in option.choices:
            raise UsageError(f"--set {pair}: choose from {', '.join(map(str, option.choices))}")
        values[name] = value
    return values


def hyperband_or_trials(args):
    """What ends a search besides the budget: Hyperband's iterations (with a budget, as many
    as it allows, as KerasTuner advises; without, one) or the other tuners' --max-trials."""
    if args.tuner != "hyperband":
        return {"max_trials": args.max_trials}
    return {"max_epochs": args.max_epochs, "hyperband_iterations": float("inf") if args.budget_minutes else 1}


def make_tuner(args, hypermodel, fixed, strategy=None):
    hyperparameters = keras_tuner.HyperParameters()
    for name, value in fixed.items():
        hyperparameters.Fixed(name, value)
    base = ORACLES[args.tuner]
    oracle = type(base.__name__, (DefaultsFirst, base), {})(
        objective=hypermodel.objective,
        hyperparameters=hyperparameters,
        tune_new_entries=True,
        seed=args.seed,
        max_consecutive_failed_trials=args.max_consecutive_failed_trials,
        budget_minutes=args.budget_minutes,
        **hyperband_or_trials(args),
    )
    tuner = Hyperband if args.tuner == "hyperband" else keras_tuner.Tuner
    return type(tuner.__name__, (TrialRecords, tuner), {})(
        oracle=oracle,
        hypermodel=hypermodel,
        executions_per_trial=args.executions_per_trial,
        distribution_strategy=strategy,
        directory=args.directory,
        project_name=args.project_name or hypermodel.name,
        overwrite=args.overwrite,
    )


def trial_rows(tuner):
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items(), key=lambda item: int(item[0])):
        record_path = Path(tuner.get_trial_dir(trial_id)) / "seqapps_trial.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        scores = record.get("execution_scores") or []
        rows.append(
            {
                "trial": trial_id,
                "status": str(trial.status),
                # A trial the budget cut short completes with the score of what it trained.
                "stopped_by_budget": bool(record.get("stopped_by_budget")),
                "score": trial.score,
                "execution_scores": scores,
                "spread": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,
                "epochs": record.get("epochs"),
                "seconds": record.get("seconds"),
                "rss_mib": record.get("rss_mib"),
                "tuner_id": record.get("tuner_id"),
                "hyperparameters": values,
            }
        )
    return rows


def importances(rows):
    """[(hyperparameter, importance)], most important first: the share of the variance
    of the completed trials' scores that the hyperparameter's value explains (eta
    squared of the scores grouped by value; a number with more than four values tried,
    by its quartiles). Descriptive: with few trials, every share is overstated."""
    done = [row for row in rows if row["score"] is not None]
    scores = np.array([row["score"] for row in done], dtype=float)
    total = float(((scores - scores.mean()) ** 2).sum()) if len(done) > 2 else 0.0
    if total == 0:
        return []
    shares = []
    for name in sorted({name for row in done for name in row["hyperparameters"]}):
        values = [row["hyperparameters"].get(name) for row in done]
        if len(set(map(str, values))) < 2:
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and len(set(values)) > 4:
            groups = np.digitize(values, np.quantile(values, [0.25, 0.5, 0.75]))
        else:
            groups = np.array([str(v) for v in values])
        between = sum(
            (groups == g).sum() * (scores[groups == g].mean() - scores.mean()) ** 2 for g in np.unique(groups)
        )
        shares.append((name, float(between / total)))
    return sorted(shares, key=lambda share: -share[1])


def described(row):
    """A trial's score as `0.6723 ± 0.0021 (3 executions)`."""
    if row["score"] is None:
        return f"none ({row['status'].lower()})"
    spread = f" ± {row['spread']:.4f} ({len(row['execution_scores'])} executions)" if row["spread"] else ""
    return f"{row['score']:.4f}{spread}"


def write_results(tuner, hypermodel, out_dir):
    """best_hyperparameters.json, trials.md and trials.png in `out_dir`; returns the
    summary: the best trial's configuration, `train` options and score, and the
    defaults' (trial 0)."""
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise UsageError(f"no trial of {out_dir} completed; see the errors above")
    objective = tuner.oracle.objective
    rows = trial_rows(tuner)
    best, defaults = next(row for row in rows if row["trial"] == best[0].trial_id), rows[0]
    fields = ("trial", "score", "execution_scores", "spread", "hyperparameters")
    summary = {
        "objective": objective.name,
        "direction": objective.direction,
        **{key: best[key] for key in fields},
        "train_options": train_options(hypermodel, best["hyperparameters"]),
        "defaults": {key: defaults[key] for key in fields},
        "best_is_defaults": best is defaults,
        "importances": dict(importances(rows)),
        "search_minutes": tuner.oracle.spent_seconds / 60,  # the trials' time, all sittings
    }
    if best is defaults:
        verdict = f"The defaults (trial {defaults['trial']}) are the best configuration found: {described(defaults)}."
    else:
        verdict = f"Best: trial {best['trial']}, {described(best)}; the defaults (trial {defaults['trial']}): "
        verdict += f"{described(defaults)}."
    summary["verdict"] = verdict
    runs.save_json(out_dir / "best_hyperparameters.json", summary)
    names = sorted({name for row in rows for name in row["hyperparameters"]})
    table_rows = [
        {
            **row,
            "status": row["status"] + (" (budget)" if row["stopped_by_budget"] else ""),
            **{k: f"{v:.4g}" if isinstance(v, float) else v for k, v in row["hyperparameters"].items()},
        }
        for row in rows
    ]
    columns = [
        ("trial", "trial", "{}"),
        ("status", "status", "{}"),
        ("score", objective.name, "{:.4f}"),
        ("spread", "std over executions", "{:.4f}"),
        ("epochs", "epochs", "{}"),
        ("seconds", "seconds", "{:.0f}"),
        ("rss_mib", "RSS MiB after", "{:.0f}"),
    ]
    columns += [(n, n, "{}") for n in names]
    shares = ", ".join(f"{name} {share:.2f}" for name, share in summary["importances"].items())
    (out_dir / "trials.md").write_text(
        f"# Trials, objective {objective.name} ({objective.direction})\n\n{verdict}\n\n"
        + markdown_table(table_rows, columns)
        + (f"\n\nShare of the scores' variance each hyperparameter explains: {shares}.\n" if shares else "\n")
    )
    plot_trial_scores(rows, objective.name, list(summary["importances"].items())[:3], out_dir / "trials.png")
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


def train_options(hypermodel, values):
    """The `train` options of the configuration of a trial's hyperparameter `values`
    (with the options set for the search) where it differs from the app's defaults."""
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    config = hypermodel.config(hp)  # through the search space, which maps some values (sequence_length 0: None)
    defaults = hypermodel.app.defaults
    return train_arguments({k: v for k, v in config.items() if k in defaults and v != defaults[k]})


def export_best(args, hypermodel, summary, out_dir):
    """Retrain the best configuration on the full training split with the app's
    `train` (resuming it if it was interrupted), and export it with its `export`."""
    app = hypermodel.app
    run_dir = out_dir / "best_run"
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    if (run_dir / "config.json").exists():
        app.main(["train", "--resume", "--run-dir", str(run_dir)])
    else:
        options = [*summary["train_options"], "--epochs", str(args.max_epochs), "--seed", str(args.seed)]
        app.main(["train", *data, "--run-dir", str(run_dir), *options])
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
    parser.add_argument("--tuner", default="hyperband", choices=list(ORACLES), help="(default: %(default)s)")
    parser.add_argument(
        "--max-trials", type=positive_int, default=20, help="trials of bayesian and random (default: 20)"
    )
    parser.add_argument("--max-epochs", type=positive_int, default=10, help="epochs per trial at most (default: 10)")
    parser.add_argument(
        "--executions-per-trial",
        type=positive_int,
        default=1,
        help="runs of each trial, each with its own seed (--seed, --seed + 1, ...), scored by their mean (default: 1)",
    )
    parser.add_argument(
        "--budget-minutes",
        type=positive_float,
        help="the minutes the search's trials may run, counted across resumes: no trial starts after (or with less "
        "left than the shortest trial took), and the one running stops; the --export retraining is not counted; "
        "Hyperband iterates until then (default: no limit, one Hyperband iteration)",
    )
    parser.add_argument(
        "--distribute",
        choices=["none", "mirrored"],
        default="none",
        help="mirrored: train each trial on every GPU of this machine (its CPU when it has none) (default: none)",
    )
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
    sets = parse_sets(app, args.set)
    options = {k: v for k, v in sets.items() if k in app.defaults}
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
    strategy = distribute.strategy("mirrored", peer_timeout=0) if args.distribute == "mirrored" else None
    tuner = make_tuner(args, hypermodel, fixed, strategy)
    # Each trial stops early as `train` does, on the objective.
    objective = hypermodel.objective
    stop = keras.callbacks.EarlyStopping(objective.name, mode=objective.direction, patience=config["patience"])
    tuner.search(epochs=args.max_epochs, callbacks=[stop], verbose=args.verbose)
    if is_worker():
        return None  # the chief writes the results
    out_dir = Path(tuner.project_dir)
    summary = write_results(tuner, hypermodel, out_dir)
    print(f"\n{summary['verdict']}")
    print(json.dumps(summary["hyperparameters"], indent=2))
    print(f"Wrote {out_dir / 'best_hyperparameters.json'}, trials.md and trials.png")
    if args.export:
        summary["export"] = str(export_best(args, hypermodel, summary, out_dir))
    return summary


if __name__ == "__main__":
    main()
