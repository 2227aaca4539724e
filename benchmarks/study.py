"""Which cell? Greff et al.'s LSTM variants (and GRU) on this project's three tasks,
over several seeds, each run on the same fixed budget per app.

For each seed, app and cell: `seqapps <app> train` with the app's study budget (BUDGETS
below: the same data, epochs, units and learning rate for every cell), then
`evaluate` on the app's test split. Each finished run is appended to
`benchmarks/results/study.json` at once; a rerun skips the runs already there, so the
study can be stopped and resumed. After every run the table (`study.md`) and one
figure per app (`study-<app>.png`) are written again from all runs so far.

The table gives, per app and cell, the mean and standard deviation over seeds, and the
difference to the vanilla LSTM (`peephole`) with a 95 % confidence interval from
Welch's t-test (unequal variances); a difference is significant when the interval
excludes 0.

    python benchmarks/study.py --data-dir ../shared/data [--seeds 0 1 2] [--apps sentiment forecasting]
    python benchmarks/study.py --report      # tables and figures of the runs so far, nothing run
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from report import RESULTS_DIR, machine, run_measured
from scipy import stats

from seqapps.apps import get_app
from seqapps.apps.plots import save_figure, subplots
from seqapps.apps.tables import markdown_table
from seqapps.layers import CELLS

VANILLA = "peephole"
# Greff et al.'s names for this project's cells.
GREFF_NAMES = {
    "peephole": "V",
    "lstm": "NP",
    "cifg": "CIFG",
    "nig": "NIG",
    "nfg": "NFG",
    "nog": "NOG",
    "niaf": "NIAF",
    "noaf": "NOAF",
    "fgr": "FGR",
    "gru": "GRU",
}
CELL_ORDER = ["peephole", "lstm", "cifg", "nig", "nfg", "nog", "niaf", "noaf", "fgr", "gru"]

# Per app: the train options every cell gets, the evaluate options, and the metrics
# read from metrics.json (name -> (path, higher is better)); the first is the headline.
BUDGETS = {
    "sentiment": {
        "train": ["--limit", "10000", "--sequence-length", "200", "--units", "64", "--epochs", "3"]
        + ["--patience", "3", "--learning-rate", "0.001", "--batch-size", "64"],
        "evaluate": [],
        "metrics": {"test_accuracy": (("accuracy",), True), "roc_auc": (("roc_auc",), True)},
    },
    "translation": {
        "train": ["--limit", "40000", "--units", "64", "--embedding-dim", "128", "--attention", "dot"]
        + ["--target-vocab-size", "4000", "--epochs", "4", "--patience", "4", "--learning-rate", "0.003"],
        "evaluate": ["--limit", "2000", "--beam-size", "1"],
        "metrics": {"bleu": (("greedy", "bleu_uncased"), True), "chrf": (("greedy", "chrf"), True)},
    },
    "forecasting": {
        "train": ["--horizon", "96", "--units", "128", "--epochs", "6", "--patience", "6", "--learning-rate", "0.001"]
        # The recipe the study began with, pinned against later changes of the app's defaults.
        + ["--lookback", "96", "--segment", "12", "--decoder", "direct", "--dropout", "0.1", "--batch-size", "64"],
        "evaluate": [],
        "metrics": {"test_mse": (("model", "mse"), False), "test_mae": (("model", "mae"), False)},
    },
}


def lookup(metrics, path):
    for key in path:
        metrics = metrics[key]
    return metrics


def parameters(app, run_dir):
    import keras

    get_app(app)  # imports the app, which registers its layers for loading
    return keras.saving.load_model(run_dir / "model.keras", compile=False).count_params()


def run_one(app, cell, seed, data_dir):
    """Train (or finish training) and evaluate one (app, cell, seed); the result row."""
    run_dir = RESULTS_DIR / "runs" / "study" / f"{app}-{cell}-{seed}"
    command = [sys.executable, "-m", f"seqapps.apps.{app}"]
    data = ["--data-dir", data_dir] if data_dir else []
    budget = BUDGETS[app]
    peak = None
    if (run_dir / "config.json").exists() and not (run_dir / "model.keras").exists():  # interrupted: continue
        _, peak = run_measured([*command, "train", "--resume", "--run-dir", str(run_dir), "--verbose", "2"])
    elif not (run_dir / "config.json").exists():
        train = [*command, "train", *data, "--cell", cell, "--seed", str(seed), "--run-dir", str(run_dir)]
        _, peak = run_measured([*train, "--verbose", "2", *budget["train"]])
    subprocess.run([*command, "evaluate", "--run-dir", str(run_dir), *data, *budget["evaluate"]], check=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    row = {"app": app, "cell": cell, "seed": seed}
    row.update({name: lookup(metrics, path) for name, (path, _) in budget["metrics"].items()})
    row["train_minutes"] = state["train_seconds"] / 60  # time in fit, over any resumes
    row["peak_rss_mib"] = peak
    row["parameters"] = parameters(app, run_dir)
    row["epochs"] = state["epoch"]
    gpus = machine()["gpus"]
    row["device"] = f"GPU ({', '.join(gpus)})" if gpus else "CPU"
    return row


def welch_interval(a, b, confidence=0.95):
    """Mean of `a` minus mean of `b` and its confidence interval (Welch's t)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    difference = a.mean() - b.mean()
    if va + vb == 0:
        return difference, difference, difference
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, dof) * np.sqrt(va + vb)
    return difference, difference - half, difference + half


def summary_rows(rows, app):
    """Per cell of `app`: seeds, mean and std of each metric, and the headline
    metric's difference to vanilla with its 95 % interval."""
    metrics = BUDGETS[app]["metrics"]
    headline = next(iter(metrics))
    by_cell = {cell: [r for r in rows if r["app"] == app and r["cell"] == cell] for cell in CELL_ORDER}
    vanilla = [r[headline] for r in by_cell[VANILLA]]
    summary = []
    for cell, runs in by_cell.items():
        if not runs:
            continue
        row = {"cell": cell, "greff": GREFF_NAMES[cell], "seeds": len(runs)}
        for name in metrics:
            values = [r[name] for r in runs]
            row[name] = f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}"
        row["train_minutes"] = np.mean([r["train_minutes"] for r in runs])
        row["parameters"] = runs[0]["parameters"]
        if cell != VANILLA and len(runs) > 1 and len(vanilla) > 1:
            difference, low, high = welch_interval([r[headline] for r in runs], vanilla)
            row["difference"] = f"{difference:+.4f} [{low:+.4f}, {high:+.4f}]"
            better = difference > 0 if metrics[headline][1] else difference < 0
            row["significant"] = ("better" if better else "worse") if low > 0 or high < 0 else "no"
        summary.append(row)
    return summary, headline


def plot(rows, app, path):
    """Each seed's headline metric per cell (points) and the mean (bar)."""
    headline = next(iter(BUDGETS[app]["metrics"]))
    cells = [cell for cell in CELL_ORDER if any(r["app"] == app and r["cell"] == cell for r in rows)]
    fig, ax = subplots(figsize=(max(6, 0.8 * len(cells)), 4))
    for x, cell in enumerate(cells):
        values = [r[headline] for r in rows if r["app"] == app and r["cell"] == cell]
        ax.scatter([x] * len(values), values, color="tab:blue", s=25, zorder=3)
        ax.hlines(np.mean(values), x - 0.3, x + 0.3, color="black", lw=2, zorder=2)
    vanilla = [r[headline] for r in rows if r["app"] == app and r["cell"] == VANILLA]
    if vanilla:
        ax.axhline(np.mean(vanilla), color="gray", ls="--", lw=1, label="vanilla (peephole) mean")
        ax.legend(fontsize="small")
    ax.set_xticks(range(len(cells)), [f"{c}\n({GREFF_NAMES[c]})" for c in cells])
    ax.set_ylabel(f"{headline} ({'higher' if BUDGETS[app]['metrics'][headline][1] else 'lower'} is better)")
    ax.set_title(f"{app}: every seed (points) and the mean (bar)")
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def headline_table(rows):
    """One row per cell: each app's headline metric, mean over seeds (and how many)."""
    table = []
    for cell in CELL_ORDER:
        row = {"cell": cell, "greff": GREFF_NAMES[cell]}
        for app, budget in BUDGETS.items():
            headline = next(iter(budget["metrics"]))
            values = [r[headline] for r in rows if r["app"] == app and r["cell"] == cell]
            if values:
                row[app] = f"{np.mean(values):.4g} (n={len(values)})"
        table.append(row)
    columns = [("cell", "cell", "{}"), ("greff", "Greff et al.", "{}")]
    columns += [(app, f"{app}: {next(iter(budget['metrics']))}", "{}") for app, budget in BUDGETS.items()]
    return markdown_table(table, columns)


def write_report(rows, settings):
    """study.md (settings, the headline table, then a table per app) and
    study-<app>.png from all rows."""
    lines = ["# Which cell? Greff et al.'s variants on this project's tasks", ""]
    lines += [f"Budgets (the same for every cell; `train` options): {json.dumps(settings['budgets'])}", ""]
    lines += ["Headline: each app's test metric, mean over the seeds run so far (n).", ""]
    lines += [headline_table(rows), ""]
    lines += ["Mean ± standard deviation over seeds; difference of the headline metric to the vanilla LSTM "]
    lines += ["(`peephole`, V) with a 95 % confidence interval (Welch's t); significant when it excludes 0.", ""]
    for app in BUDGETS:
        if not any(r["app"] == app for r in rows):
            continue
        summary, headline = summary_rows(rows, app)
        columns = [("cell", "cell", "{}"), ("greff", "Greff et al.", "{}"), ("seeds", "seeds", "{}")]
        columns += [(name, name, "{}") for name in BUDGETS[app]["metrics"]]
        columns += [
            ("difference", f"{headline} - vanilla [95 % CI]", "{}"),
            ("significant", "significant", "{}"),
            ("train_minutes", "training min", "{:.1f}"),
            ("parameters", "parameters", "{:,}"),
        ]
        lines += [f"## {app}", "", markdown_table(summary, columns), "", f"![{app}](study-{app}.png)", ""]
        plot(rows, app, RESULTS_DIR / f"study-{app}.png")
    (RESULTS_DIR / "study.md").write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="directory with the datasets (default: download)")
    parser.add_argument("--apps", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--cells", nargs="+", default=CELL_ORDER, choices=list(CELLS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report", action="store_true", help="only write the tables and figures of the runs so far")
    args = parser.parse_args()

    path = RESULTS_DIR / "study.json"
    settings = {"budgets": {app: BUDGETS[app]["train"] for app in BUDGETS}, "machine": machine()}
    results = json.loads(path.read_text()) if path.exists() else {"settings": settings, "runs": []}
    if args.report:
        write_report(results["runs"], results["settings"])
        return
    done = {(r["app"], r["cell"], r["seed"]) for r in results["runs"]}
    # Seed first: every cell of every app gets one seed before any gets a second.
    for seed in args.seeds:
        for app in args.apps:
            for cell in args.cells:
                if (app, cell, seed) in done:
                    continue
                started = time.time()
                print(f"\n== {app} {cell} seed {seed} ==", flush=True)
                results["runs"].append(run_one(app, cell, seed, args.data_dir))
                path.write_text(json.dumps(results, indent=2) + "\n")
                write_report(results["runs"], results["settings"])
                print(f"== {app} {cell} seed {seed}: {(time.time() - started) / 60:.1f} min ==", flush=True)
    print(f"Saved {path} and {RESULTS_DIR / 'study.md'}")


if __name__ == "__main__":
    main()
