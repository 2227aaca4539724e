"""Quality and cost of the sentiment app on IMDB: the full 25k/25k split, no
pretrained embeddings, no unlabeled data.

For each cell, runs `seqapps sentiment train` with the app's defaults (the same
budget for every cell: max epochs and early stopping as configured), then
`evaluate` on all 25,000 test reviews. Reports test accuracy, F1, ROC-AUC, epochs,
wall-clock training time and the training process's peak memory.

    python benchmarks/sentiment.py --data-dir ../shared/data [--cells lstm peephole cifg gru] [-- TRAIN OPTIONS]
"""

import argparse
import json
import subprocess
import sys
import time

from report import RESULTS_DIR, run_measured, save


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="IMDB in its published form (default: download)")
    parser.add_argument("--cells", nargs="+", default=["lstm"], help="cells to compare (default: lstm)")
    parser.add_argument("--name", default="sentiment", help="results file name (default: %(default)s)")
    parser.add_argument("train_options", nargs="*", help="more `train` options, after --")
    args = parser.parse_args()

    rows = []
    for cell in args.cells:
        run_dir = RESULTS_DIR / "runs" / f"{args.name}-{cell}-{time.strftime('%Y%m%d-%H%M%S')}"
        data = ["--data-dir", args.data_dir] if args.data_dir else []
        app = [sys.executable, "-m", "seqapps.apps.sentiment"]
        seconds, peak = run_measured(
            [*app, "train", *data, "--cell", cell, "--run-dir", str(run_dir), "--verbose", "2", *args.train_options]
        )
        subprocess.run([*app, "evaluate", "--run-dir", str(run_dir), *data], check=True)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
        rows.append(
            {
                "cell": cell,
                "test_accuracy": metrics["accuracy"],
                "f1": metrics["f1"],
                "roc_auc": metrics["roc_auc"],
                "epochs": len(history["loss"]),
                "best_epoch": 1 + max(range(len(history["val_accuracy"])), key=history["val_accuracy"].__getitem__),
                "train_minutes": seconds / 60,
                "peak_rss_mib": peak,
                "run_dir": str(run_dir.relative_to(RESULTS_DIR.parent.parent)),
            }
        )
    columns = [
        ("cell", "cell", "{}"),
        ("test_accuracy", "test accuracy", "{:.4f}"),
        ("f1", "F1", "{:.4f}"),
        ("roc_auc", "ROC-AUC", "{:.4f}"),
        ("epochs", "epochs", "{}"),
        ("best_epoch", "best epoch", "{}"),
        ("train_minutes", "training min", "{:.1f}"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ]
    config = json.loads((run_dir / "config.json").read_text())
    settings = {k: v for k, v in config.items() if k not in ("cell", "data_dir", "limit")}
    settings["test_examples"] = metrics["examples"]
    save(args.name, rows, columns, settings)


if __name__ == "__main__":
    main()
