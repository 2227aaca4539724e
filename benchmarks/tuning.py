r"""Does a search pay? For each app: `seqapps tune` (Hyperband, the app's defaults as its
first trial) within a wall-clock budget; then the defaults and the search's best
configuration, each trained by the app's `train` (its epochs and early stopping) with
three seeds and evaluated once on the test split. The search sees validation only.

    python benchmarks/tuning.py --data-dir ../shared/data --app forecasting --budget-minutes 60
    python benchmarks/tuning.py --data-dir ../shared/data --app sentiment --budget-minutes 60 --max-epochs 3
    python benchmarks/tuning.py --data-dir ../shared/data --app translation --budget-minutes 60 \
        --max-epochs 8 --limit 20000
    python benchmarks/tuning.py --data-dir ../shared/data --memory
    python benchmarks/tuning.py --data-dir ../shared/data --resume-check --budget-minutes 10 --max-epochs 3

Resumable, on this machine or a fresh one: the search's summary and each training's
figures go into the results file as each finishes, and a rerun skips what is there; an
unfinished search resumes from its directory (within the same budget). `--memory`: the
resident memory of a 20-trial tiny search, after each trial (it should stay flat).
`--resume-check`: a forecasting search killed halfway through its budget and run again;
it should redo no finished trial and stop within the budget.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

from report import RESULTS_DIR, machine, run_measured

from seqapps.apps.tables import markdown_table

# app: (the test figure from metrics.json, its name, the options of the search and of every training)
APPS = {
    "forecasting": (lambda m: m["model"]["mse"], "test MSE", {}),  # ETTh1, horizon 96
    # The recurrent model alone; recurrent dropout fixed at its default 0, since it leaves the fused kernel
    # and makes a whole-review epoch several times slower: a 60-minute budget would buy a handful of trials.
    "sentiment": (lambda m: m["accuracy"], "test accuracy", {"ngram_features": 0, "recurrent_dropout": 0.0}),
    "translation": (lambda m: m["greedy"]["bleu"], "test BLEU (greedy)", {}),
}
SEEDS = (1337, 1, 2)
OUT = RESULTS_DIR / "runs" / "tuning"
COLUMNS = [
    ("app", "app", "{}"),
    ("configuration", "configuration", "{}"),
    ("options", "train options", "{}"),
    ("seeds", "seeds", "{}"),
    ("objective", "objective", "{}"),
    ("validation_mean", "validation, mean", "{:.4f}"),
    ("validation_std", "std", "{:.4f}"),
    ("test_name", "test figure", "{}"),
    ("test_mean", "test, mean", "{:.4f}"),
    ("test_std", "std", "{:.4f}"),
    ("search", "search", "{}"),
]


def search(app, args, options):
    """The search (resumed where it stopped); its summary. Its trials' table and plot are
    copied beside the results."""
    sets = [arg for name, value in options.items() for arg in ("--set", f"{name}={value}")]
    limit = ["--limit", str(args.limit)] if args.limit else []
    command = [sys.executable, "-m", "seqapps.tuning", app, "--data-dir", args.data_dir, "--directory", str(OUT)]
    command += ["--tuner", "hyperband", "--max-epochs", str(args.max_epochs), "--verbose", "2"]
    command += ["--budget-minutes", str(args.budget_minutes), *limit, *sets]
    run_measured(command)
    for name in ("trials.md", "trials.png"):
        shutil.copyfile(OUT / app / name, RESULTS_DIR / f"tuning-{app}-{name}")
    return json.loads((OUT / app / "best_hyperparameters.json").read_text())


def train_and_test(app, configuration, seed, train_options, args):
    """One training of a configuration by the app's `train`, evaluated on the test split:
    its history, test metrics and training minutes (None when it was trained before)."""
    command = [sys.executable, "-m", f"seqapps.apps.{app}"]
    run_dir = OUT / f"{app}-{configuration}-{seed}"
    data = ["--data-dir", args.data_dir]
    limit = ["--limit", str(args.limit)] if args.limit else []
    seconds = None
    if not (run_dir / "model.keras").exists():
        resume = ["--resume"] if (run_dir / "config.json").exists() else []
        options = [*data, *limit, *train_options, "--seed", str(seed)] if not resume else []
        seconds, _ = run_measured([*command, "train", "--run-dir", str(run_dir), "--verbose", "2", *resume, *options])
    if not (run_dir / "metrics.json").exists():
        subprocess.run([*command, "evaluate", "--run-dir", str(run_dir), *data], check=True)
    history = json.loads((run_dir / "history.json").read_text())
    minutes = seconds / 60 if seconds is not None else None
    return history, json.loads((run_dir / "metrics.json").read_text()), minutes


def trial_records(project):
    """{trial directory: the record `seqapps tune` wrote of it} of a search's finished trials."""
    return {path.parent.name: json.loads(path.read_text()) for path in project.glob("trial_*/seqapps_trial.json")}


def memory(args):
    """Peak and per-trial resident memory of a 20-trial search on 200 reviews with a tiny model."""
    command = [sys.executable, "-m", "seqapps.tuning", "sentiment", "--data-dir", args.data_dir]
    command += ["--directory", str(OUT), "--project-name", "memory", "--overwrite", "--tuner", "random"]
    command += ["--max-trials", "20", "--max-epochs", "1", "--limit", "200", "--verbose", "0"]
    command += ["--set", "units=16", "--set", "embedding_dim=16", "--set", "sequence_length=32"]
    _, peak = run_measured(command)
    records = sorted(trial_records(OUT / "memory").values(), key=lambda r: int(r["trial_id"]))
    return {"trials": len(records), "peak_rss_mib": peak, "rss_after_trial_mib": [r["rss_mib"] for r in records]}


def resume_check(args):
    """A forecasting search killed (SIGKILL, as a crash would) 20 s into the first trial that
    starts after half its budget, then run again to its end: which trials each sitting
    ran, and the trials' minutes."""
    project = OUT / "resume-check"
    command = [sys.executable, "-m", "seqapps.tuning", "forecasting", "--data-dir", args.data_dir]
    command += ["--directory", str(OUT), "--project-name", project.name, "--tuner", "hyperband", "--verbose", "2"]
    command += ["--max-epochs", str(args.max_epochs), "--budget-minutes", str(args.budget_minutes)]
    shutil.rmtree(project, ignore_errors=True)
    start = time.time()

    def finished():
        return {path.parent.name: path.stat().st_mtime for path in project.glob("trial_*/seqapps_trial.json")}

    with subprocess.Popen(command) as first:
        while time.time() - start < args.budget_minutes * 30:
            time.sleep(1)
        ended = len(finished())
        while len(finished()) == ended and first.poll() is None:
            time.sleep(1)
        if first.poll() is not None:
            sys.exit("the search ended before it could be killed mid-trial")
        time.sleep(20)  # a trial takes minutes: the next one is under way
        first.kill()
    killed_after = time.time() - start
    finished_before_kill = finished()
    resumed_seconds, _ = run_measured(command)
    after = finished()
    records = trial_records(project)
    oracle = json.loads((project / "oracle.json").read_text())
    return {
        "budget_minutes": args.budget_minutes,
        "max_epochs": args.max_epochs,
        "killed_after_minutes": killed_after / 60,
        "finished_before_kill": sorted(finished_before_kill),
        "redone": sorted(t for t, mtime in finished_before_kill.items() if after[t] != mtime),
        "trials": len(records),
        "stopped_by_budget": sorted(t for t, record in records.items() if record.get("stopped_by_budget")),
        "trial_minutes": oracle["spent_seconds"] / 60,
        "resumed_sitting_minutes": resumed_seconds / 60,
    }


def write(results):
    rows = results["results"]
    (RESULTS_DIR / "tuning.json").write_text(json.dumps(results, indent=2) + "\n")
    text = (
        "# tuning\n\nFor each app, a Hyperband search (`seqapps tune`, its defaults as the first trial) within the "
        "budget shown; then the defaults and the search's best configuration, each trained by the app's `train` "
        f"with seeds {', '.join(map(str, SEEDS))} and evaluated once on the test split. Validation: the best "
        "epoch's objective.\n\n"
        f"{markdown_table(rows, COLUMNS)}\n"
    )
    for app in results.get("searches", {}):
        text += f"\n{app}: the search's trials in [tuning-{app}-trials.md](tuning-{app}-trials.md) and its plot "
        text += f"[tuning-{app}-trials.png](tuning-{app}-trials.png).\n"
    if results.get("memory"):
        rss = results["memory"]["rss_after_trial_mib"]
        text += (
            f"\n20-trial tiny search: peak RSS {results['memory']['peak_rss_mib']:.0f} MiB; RSS after trials 1, "
            f"10, 20: {rss[0]:.0f}, {rss[min(9, len(rss) - 1)]:.0f}, {rss[-1]:.0f} MiB.\n"
        )
    if results.get("resume_check"):
        check = results["resume_check"]
        text += (
            f"\nResume check (forecasting, Hyperband, {check['budget_minutes']:g} min budget, at most "
            f"{check['max_epochs']} epochs a trial): killed after {check['killed_after_minutes']:.1f} min with "
            f"{len(check['finished_before_kill'])} trials finished; run again, it redid "
            f"{', '.join(check['redone']) or 'none of them'} and ended after {check['trials']} trials "
            f"({check['resumed_sitting_minutes']:.1f} min), stopped by the budget: "
            f"{', '.join(check['stopped_by_budget']) or 'none'}; {check['trial_minutes']:.2f} min of trials in all "
            "(the killed trial's minutes not counted).\n"
        )
    (RESULTS_DIR / "tuning.md").write_text(text)
    print(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--app", choices=list(APPS))
    parser.add_argument("--budget-minutes", type=float, default=120, help="(default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=10, help="Hyperband's most epochs (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="examples per split, for the search and every training")
    parser.add_argument("--memory", action="store_true", help="measure a tiny search's memory instead")
    parser.add_argument("--resume-check", action="store_true", help="kill a search halfway and resume it instead")
    args = parser.parse_args()
    path = RESULTS_DIR / "tuning.json"
    results = json.loads(path.read_text()) if path.exists() else {"results": []}
    results["machine"] = machine()
    if args.memory:
        results["memory"] = memory(args)
        return write(results)
    if args.resume_check:
        results["resume_check"] = resume_check(args)
        return write(results)
    if not args.app:
        parser.error("--app is needed (or --memory, --resume-check)")

    test_figure, test_name, options = APPS[args.app]
    searches, trainings = results.setdefault("searches", {}), results.setdefault("trainings", {})
    if args.app not in searches:
        settings = {"budget_minutes": args.budget_minutes, "max_epochs": args.max_epochs, "limit": args.limit}
        searches[args.app] = {**search(args.app, args, options), **settings}
        write(results)
    summary = searches[args.app]
    budget = f"Hyperband, {summary['budget_minutes']:g} min budget, {summary['search_minutes']:.0f} min of trials"
    budget += f", at most {summary['max_epochs']} epochs"
    budget += f", limit {summary['limit']}" if summary["limit"] else ""
    defaults_options = [arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", str(value))]
    configurations = {"defaults": defaults_options}
    if not summary["best_is_defaults"]:  # else the search returns the defaults: nothing else to train
        configurations["tuned"] = summary["train_options"]
    best = max if summary["direction"] == "max" else min
    for configuration, train_options in configurations.items():
        keys = [f"{args.app}/{configuration}/{seed}" for seed in SEEDS]
        for seed, key in zip(SEEDS, keys, strict=True):
            if key not in trainings:
                history, metrics, minutes = train_and_test(args.app, configuration, seed, train_options, args)
                validation = best(history[summary["objective"]])
                trainings[key] = {"validation": validation, "test": test_figure(metrics), "train_minutes": minutes}
                write(results)
        validation = [trainings[key]["validation"] for key in keys]
        test = [trainings[key]["test"] for key in keys]
        row = {
            "app": args.app,
            "configuration": configuration,
            "options": " ".join(train_options),
            "seeds": len(SEEDS),
            "objective": summary["objective"],
            "validation_mean": statistics.mean(validation),
            "validation_std": statistics.stdev(validation),
            "test_name": test_name,
            "test_mean": statistics.mean(test),
            "test_std": statistics.stdev(test),
            "validation": validation,
            "test": test,
            "search": f"{budget}; {summary['verdict']}",
        }
        results["results"] = [
            r for r in results["results"] if (r.get("app"), r.get("configuration")) != (args.app, configuration)
        ] + [row]
        write(results)


if __name__ == "__main__":
    main()
