"""Does tuning beat the default configuration, and which cell wins? A small fixed
budget per app:

- `seqapps tune <app> --tuner random --max-trials T --max-epochs E` on a `--limit`
  of the training data;
- the best configuration and the app's default one, each trained with the same
  budget (E epochs, same limit), then evaluated on the app's test split;
- the best validation score each cell reached in the search;
- memory: the peak RSS of a 20-trial tiny search, and the RSS after each trial.

    python benchmarks/tuning.py --data-dir ../shared/data
"""

import argparse
import json
import subprocess
import sys

from report import RESULTS_DIR, run_measured, save

from seqapps.tuning.__main__ import train_arguments

# app: (objective in history.json, direction, test score from metrics.json, search budget)
APPS = {
    "sentiment": ("val_accuracy", max, lambda m: m["accuracy"], {"limit": 5000, "trials": 6, "epochs": 2}),
    "forecasting": ("val_loss", min, lambda m: m["model"]["mse"], {"limit": None, "trials": 6, "epochs": 3}),
}


def train_and_test(app, run_dir, data_dir, budget, options):
    command = [sys.executable, "-m", f"seqapps.apps.{app}"]
    limit = ["--limit", str(budget["limit"])] if budget["limit"] else []
    run_measured(
        [
            *command,
            "train",
            "--data-dir",
            data_dir,
            "--run-dir",
            str(run_dir),
            "--epochs",
            str(budget["epochs"]),
            "--verbose",
            "2",
            *limit,
            *options,
        ]
    )
    subprocess.run([*command, "evaluate", "--run-dir", str(run_dir), "--data-dir", data_dir], check=True)
    return json.loads((run_dir / "history.json").read_text()), json.loads((run_dir / "metrics.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=list(APPS))
    args = parser.parse_args()
    out = RESULTS_DIR / "runs" / "tuning"

    rows, cell_rows = [], []
    for app in args.apps:
        objective, best_of, test_score, budget = APPS[app]
        limit = ["--limit", str(budget["limit"])] if budget["limit"] else []
        seconds, _ = run_measured(
            [
                sys.executable,
                "-m",
                "seqapps.tuning",
                app,
                "--data-dir",
                args.data_dir,
                "--directory",
                str(out),
                "--overwrite",
                "--tuner",
                "random",
                "--max-trials",
                str(budget["trials"]),
                "--max-epochs",
                str(budget["epochs"]),
                "--verbose",
                "2",
                *limit,
            ]
        )
        best = json.loads((out / app / "best_hyperparameters.json").read_text())
        trials = [json.loads(p.read_text()) for p in sorted((out / app).glob("trial_*/trial.json"))]
        for cell in sorted({t["hyperparameters"]["values"]["cell"] for t in trials}):
            scores = [t["score"] for t in trials if t["hyperparameters"]["values"]["cell"] == cell and t["score"]]
            cell_rows.append(
                {
                    "app": app,
                    "cell": cell,
                    "trials": len(scores),
                    "best_validation": best_of(scores) if scores else None,
                }
            )
        for name, options in (("default", []), ("tuned", train_arguments(best["hyperparameters"]))):
            history, metrics = train_and_test(app, out / f"{app}-{name}", args.data_dir, budget, options)
            cell = (
                best["hyperparameters"]["cell"]
                if name == "tuned"
                else json.loads((out / f"{app}-{name}" / "config.json").read_text())["cell"]
            )
            rows.append(
                {
                    "app": app,
                    "configuration": name,
                    "cell": cell,
                    "objective": objective,
                    "validation": best_of(history[objective]),
                    "test": test_score(metrics),
                    "search_minutes": seconds / 60 if name == "tuned" else None,
                    "budget": f"{budget['trials']} trials x {budget['epochs']} epochs, limit {budget['limit']}",
                }
            )

    # Memory across trials: a 20-trial search on 200 reviews with a tiny model.
    _, peak = run_measured(
        [
            sys.executable,
            "-m",
            "seqapps.tuning",
            "sentiment",
            "--data-dir",
            args.data_dir,
            "--directory",
            str(out),
            "--project-name",
            "memory",
            "--overwrite",
            "--tuner",
            "random",
            "--max-trials",
            "20",
            "--max-epochs",
            "1",
            "--limit",
            "200",
            "--verbose",
            "0",
            "--set",
            "units=16",
            "--set",
            "embedding_dim=16",
            "--set",
            "sequence_length=32",
        ]
    )
    records = sorted(
        (json.loads(p.read_text()) for p in (out / "memory").glob("trial_*/seqapps_trial.json")),
        key=lambda r: int(r["trial_id"]),
    )
    rss = [r["rss_mib"] for r in records]
    memory = {"trials": len(records), "peak_rss_mib": peak, "rss_after_trial_mib": rss}

    save(
        "tuning",
        rows,
        [
            ("app", "app", "{}"),
            ("configuration", "configuration", "{}"),
            ("cell", "cell", "{}"),
            ("objective", "objective", "{}"),
            ("validation", "best validation", "{:.4f}"),
            ("test", "test (accuracy / MSE)", "{:.4f}"),
            ("search_minutes", "search min", "{:.1f}"),
            ("budget", "budget", "{}"),
        ],
        {"memory": memory},
    )
    save(
        "tuning-cells",
        cell_rows,
        [
            ("app", "app", "{}"),
            ("cell", "cell", "{}"),
            ("trials", "trials", "{}"),
            ("best_validation", "best validation score", "{:.4f}"),
        ],
        {},
    )
    print(
        f"\n20-trial tiny search: peak RSS {peak:.0f} MiB; RSS after trials 1, 10, 20: "
        f"{rss[0]:.0f}, {rss[min(9, len(rss) - 1)]:.0f}, {rss[-1]:.0f} MiB"
    )


if __name__ == "__main__":
    main()
