"""Quality and cost of the forecasting app on ETTh1 under the long-horizon protocol
(Informer / DLinear / PatchTST): 12/4/4-month splits, variables standardised with the
training split's statistics, multivariate (7 in, 7 out), lookback 96, test MSE and
MAE on the standardised values, next to persistence, seasonal-naive (24 h) and linear
baselines evaluated on the same windows.

For every cell and horizon given, runs `seqapps forecasting train` (the app's defaults
otherwise) and `evaluate`.

    python benchmarks/forecasting.py --data-dir ../shared/data --cells gru --horizons 96 192 336 720
    python benchmarks/forecasting.py --data-dir ../shared/data --cells lstm peephole cifg --horizons 96 \
        --name forecasting-cells
"""

import argparse
import json
import subprocess
import sys
import time

from report import RESULTS_DIR, run_measured, save

BASELINES = ("persistence", "seasonal_naive", "linear")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="directory holding ETTh1.csv (default: download)")
    parser.add_argument("--cells", nargs="+", default=["gru"])
    parser.add_argument("--horizons", nargs="+", type=int, default=[96, 192, 336, 720])
    parser.add_argument("--name", default="forecasting", help="results file name (default: %(default)s)")
    parser.add_argument("train_options", nargs="*", help="more `train` options, after --")
    args = parser.parse_args()

    rows = []
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    app = [sys.executable, "-m", "seqapps.apps.forecasting"]
    for cell in args.cells:
        for horizon in args.horizons:
            run_dir = RESULTS_DIR / "runs" / f"{args.name}-{cell}-{horizon}-{time.strftime('%Y%m%d-%H%M%S')}"
            seconds, peak = run_measured(
                [
                    *app,
                    "train",
                    *data,
                    "--cell",
                    cell,
                    "--horizon",
                    str(horizon),
                    "--run-dir",
                    str(run_dir),
                    "--verbose",
                    "2",
                    *args.train_options,
                ]
            )
            subprocess.run([*app, "evaluate", "--run-dir", str(run_dir), *data], check=True)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            epochs = len(json.loads((run_dir / "history.json").read_text())["loss"])
            row = {
                "cell": cell,
                "horizon": horizon,
                "mse": metrics["model"]["mse"],
                "mae": metrics["model"]["mae"],
                "epochs": epochs,
                "train_minutes": seconds / 60,
                "peak_rss_mib": peak,
            }
            for name in BASELINES:
                row[f"{name}_mse"] = metrics[name]["mse"]
            row["beats_baselines"] = all(row["mse"] < row[f"{name}_mse"] for name in BASELINES)
            rows.append(row)
    columns = [
        ("cell", "cell", "{}"),
        ("horizon", "horizon", "{}"),
        ("mse", "test MSE", "{:.4f}"),
        ("mae", "test MAE", "{:.4f}"),
        ("persistence_mse", "persistence MSE", "{:.4f}"),
        ("seasonal_naive_mse", "seasonal-naive MSE", "{:.4f}"),
        ("linear_mse", "linear MSE", "{:.4f}"),
        ("beats_baselines", "below all baselines", "{}"),
        ("epochs", "epochs", "{}"),
        ("train_minutes", "training min", "{:.1f}"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ]
    config = json.loads((run_dir / "config.json").read_text())
    settings = {k: v for k, v in config.items() if k not in ("cell", "horizon", "data_dir", "limit")}
    save(args.name, rows, columns, settings)


if __name__ == "__main__":
    main()
