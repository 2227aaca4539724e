"""Quality and cost of the forecasting app on ETTh1 (or another of its datasets, with
--dataset) under the long-horizon protocol (Informer / DLinear / PatchTST / SegRNN):
ETTh1's 12/4/4-month splits (the others' 70/10/20 %), variables standardised with the
training split's statistics, multivariate (all in, all out), test MSE and MAE on the
standardised values over all test windows, next to persistence, seasonal-naive and
linear baselines evaluated on the same windows, and the published anchors (ETTh1,
exchange_rate).

For every cell, horizon and seed given, runs `seqapps forecasting train` (the app's
defaults for that horizon, unless options follow `--`) and `evaluate`. Each finished
row is saved at once and a rerun skips the rows already in the results file, so a
long table can be stopped and resumed.

    python benchmarks/forecasting.py --data-dir ../shared/data --horizons 96 192 336 720
    python benchmarks/forecasting.py --data-dir ../shared/data --horizons 96 192 336 720 --lookback 720 -- --segment 48
    python benchmarks/forecasting.py --data-dir ../shared/data --cells lstm peephole cifg gru --horizons 96
    python benchmarks/forecasting.py --data-dir ../shared/data --seeds 1 2 3 --horizons 96
    python benchmarks/forecasting.py --name forecasting-probe --horizons 96 -- --decoder direct
    python benchmarks/forecasting.py --data-dir ../shared/data --dataset exchange_rate --horizons 96
"""

import argparse
import json
import subprocess
import sys
import time

from report import RESULTS_DIR, machine, run_measured, seed_spread

from seqapps.apps.forecasting.data import CSV_DEFAULTS, DATASETS
from seqapps.apps.tables import markdown_table

BASELINES = ("persistence", "seasonal_naive", "linear")
# Published test MSE (multivariate, lookback -> the long-horizon protocol's horizons), by dataset.
HORIZONS = (96, 192, 336, 720)
ANCHORS = {
    "etth1": [
        (
            "SegRNN (Lin et al. 2023; MSE loss, test loader without drop_last, authors' re-run)",
            96,
            (0.368, 0.408, 0.444, 0.446),
        ),
        ("SegRNN, same fixed protocol", 720, (0.351, 0.392, 0.423, 0.466)),
        ("TimeMixer", 96, (0.375, 0.429, 0.484, 0.498)),
        ("CycleNet/Linear (5 seeds)", 96, (0.378, 0.427, 0.464, 0.462)),
        ("iTransformer", 96, (0.386, 0.441, 0.487, 0.503)),
        ("DLinear", 96, (0.386, 0.437, 0.481, 0.519)),
        ("DLinear", 336, (0.375, 0.405, 0.439, 0.472)),
        ("PatchTST/64", 512, (0.370, 0.413, 0.422, 0.447)),
    ],
    "exchange_rate": [
        ("iTransformer", 96, (0.086, 0.177, 0.331, 0.847)),
        ("DLinear (iTransformer's table)", 96, (0.088, 0.176, 0.313, 0.839)),
    ],
}
COLUMNS = [
    ("dataset", "dataset", "{}"),
    ("cell", "cell", "{}"),
    ("lookback", "lookback", "{}"),
    ("horizon", "horizon", "{}"),
    ("seed", "seed", "{}"),
    ("options", "options", "{}"),
    ("val_mse", "val MSE", "{:.4f}"),
    ("mse", "test MSE", "{:.4f}"),
    ("mae", "test MAE", "{:.4f}"),
    ("segrnn_mse", "SegRNN MSE", "{}"),
    ("persistence_mse", "persistence MSE", "{:.4f}"),
    ("seasonal_naive_mse", "seasonal-naive MSE", "{:.4f}"),
    ("linear_mse", "linear MSE", "{:.4f}"),
    ("beats_baselines", "below all baselines", "{}"),
    ("epochs", "epochs", "{}"),
    ("train_minutes", "training min", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("device", "ran on", "{}"),
    ("note", "note", "{}"),
]


# Every row's intervals, on the validation and test windows: a quantile or distribution
# model's own (and conformalized), a point model's from its validation residuals, next
# to the empirical intervals of evaluate.
INTERVAL_COLUMNS = [
    ("dataset", "dataset", "{}"),
    ("cell", "cell", "{}"),
    ("horizon", "horizon", "{}"),
    ("seed", "seed", "{}"),
    ("options", "options", "{}"),
    ("val_crps", "val CRPS", "{:.4f}"),
    ("val_coverage_80", "val coverage 80%", "{:.3f}"),
    ("crps", "test CRPS", "{:.4f}"),
    ("coverage_80", "test coverage 80%", "{:.3f}"),
    ("width_80", "test width 80%", "{:.3f}"),
    ("conformal_crps", "conformalized (CQR), test CRPS", "{:.4f}"),
    ("conformal_coverage_80", "conformalized, test coverage 80%", "{:.3f}"),
    ("median_empirical_crps", "median + residual quantiles, test CRPS", "{:.4f}"),
    ("seasonal_naive_crps", "seasonal-naive + residual quantiles, test CRPS", "{:.4f}"),
    ("mse", "test MSE (point)", "{:.4f}"),
    ("train_minutes", "training min", "{:.1f}"),
]


def interval_scores(metrics, prefix="", name="model"):
    """A forecaster's CRPS and 80 % interval (coverage, width) from evaluate's metrics."""
    model = metrics["quantile_forecasts"][name]
    interval = model["intervals"].get("80%", {})
    return {
        f"{prefix}crps": model["crps"],
        f"{prefix}coverage_80": interval.get("coverage"),
        f"{prefix}width_80": interval.get("width"),
    }


def segrnn_mse(dataset, lookback, horizon):
    """SegRNN's published MSE on ETTh1 at this lookback and horizon, where there is one."""
    if dataset != "etth1":
        return None
    for _, anchor_lookback, mses in ANCHORS["etth1"][:2]:
        if anchor_lookback == lookback and horizon in HORIZONS:
            return mses[HORIZONS.index(horizon)]
    return None


def run(dataset, cell, lookback, horizon, seed, options, data):
    app = [sys.executable, "-m", "seqapps.apps.forecasting"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = RESULTS_DIR / "runs" / f"forecasting-{dataset}-{cell}-{lookback}-{horizon}-{seed}-{stamp}"
    train = [*app, "train", *data, "--dataset", dataset, "--cell", cell]
    train += ["--lookback", str(lookback), "--horizon", str(horizon)]
    seconds, peak = run_measured(train + ["--seed", str(seed), "--run-dir", str(run_dir), "--verbose", "2", *options])
    subprocess.run([*app, "evaluate", "--run-dir", str(run_dir), *data], check=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    best = history["val_loss"].index(min(history["val_loss"]))  # the epoch whose weights were kept
    # A model with quantiles or a distribution has two outputs, and its metrics the forecast's prefix.
    val_mse = history.get("val_standardized_mse") or history["val_forecast_standardized_mse"]
    row = {
        "dataset": dataset,
        "cell": cell,
        "lookback": lookback,
        "horizon": horizon,
        "seed": seed,
        "options": " ".join(options),
        # The best epoch's validation MSE (standardised): recipes are chosen on it.
        "val_mse": val_mse[best],
        "mse": metrics["model"]["mse"],
        "mae": metrics["model"]["mae"],
        "segrnn_mse": segrnn_mse(dataset, lookback, horizon),
        **{f"{name}_mse": metrics[name]["mse"] for name in BASELINES},
        "epochs": len(history["loss"]),
        "train_minutes": seconds / 60,
        "peak_rss_mib": peak,
        "device": "GPU" if machine()["gpus"] else "CPU",
        "config": json.loads((run_dir / "config.json").read_text()),
    }
    row["beats_baselines"] = all(row["mse"] < row[f"{name}_mse"] for name in BASELINES)
    # The intervals (a point model's: its forecast + its validation residuals' quantiles).
    subprocess.run([*app, "evaluate", "--run-dir", str(run_dir), "--split", "val", *data], check=True)
    validation = json.loads((run_dir / "metrics_val.json").read_text())
    intervals = metrics["quantile_forecasts"]
    row.update(interval_scores(metrics))
    row.update({key: value for key, value in interval_scores(validation, "val_").items() if key != "val_width_80"})
    row["seasonal_naive_crps"] = intervals["seasonal_naive"]["crps"]
    if row["config"].get("quantiles") or row["config"].get("distribution"):
        row.update(
            {k: v for k, v in interval_scores(metrics, "conformal_", "model_conformal").items() if "width" not in k}
        )
        row["median_empirical_crps"] = intervals["model_median_empirical"]["crps"]
    return row


def write(name, rows):
    """`<name>.json` (every row, with its config) and `<name>.md` (the table, the anchors)."""
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps({"machine": machine(), "results": rows}, indent=2) + "\n")
    anchor_columns = [("model", "model", "{}"), ("lookback", "lookback", "{}")] + [
        (f"h{h}", f"H{h}", "{:.3f}") for h in HORIZONS
    ]
    text = (
        f"# {name}\n\nMultivariate (all variables in, all out), test MSE/MAE on the standardised scale over all "
        "test windows; the app's defaults for each horizon, with the options shown. "
        "Each row's full config is in the JSON.\n\n"
        f"{markdown_table(rows, COLUMNS)}\n\n"
    )
    keys = ["dataset", "cell", "lookback", "horizon", "options"]  # a row's recipe, all but its seed
    spread = seed_spread(rows, keys, "mse")
    if spread:
        spread_columns = [column for column in COLUMNS if column[0] in keys] + [("seeds", "seeds", "{}")]
        spread_columns += [(k, f"test MSE {k}", "{:.4f}") for k in ("mean", "std", "min", "max")]
        text += f"## Spread over seeds\n\n{markdown_table(spread, spread_columns)}\n\n"
    with_intervals = [row for row in rows if "val_crps" in row]
    if with_intervals:
        text += (
            "## Quantile and distribution forecasts\n\nCRPS on the standardised scale (twice the mean pinball "
            "loss over the model's quantile levels, for every forecaster alike; a point model's at 0.05, 0.1, "
            "0.25, 0.5, 0.75, 0.9, 0.95, its forecast plus its validation residuals' quantiles); coverage: the "
            "share of true values inside the central 80 % interval.\n\n"
            f"{markdown_table(with_intervals, INTERVAL_COLUMNS)}\n\n"
        )
    for dataset in sorted({row["dataset"] for row in rows} & ANCHORS.keys()):
        anchors = [
            {"model": model, "lookback": lookback} | {f"h{h}": mse for h, mse in zip(HORIZONS, mses, strict=True)}
            for model, lookback, mses in ANCHORS[dataset]
        ]
        text += f"## Anchors (published test MSE on {dataset})\n\n{markdown_table(anchors, anchor_columns)}\n\n"
    (RESULTS_DIR / f"{name}.md").write_text(text.rstrip("\n") + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="directory holding the dataset's file (default: download)")
    parser.add_argument("--dataset", default="etth1", help="one of train's --dataset names (default: %(default)s)")
    parser.add_argument("--cells", nargs="+", default=["gru"])
    parser.add_argument("--horizons", nargs="+", type=int, default=list(HORIZONS))
    parser.add_argument("--lookback", type=int, help="(default: the dataset's: 96, illness 36)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337], help="(default: train's, 1337)")
    parser.add_argument("--name", default="forecasting", help="results file name (default: %(default)s)")
    parser.add_argument("--note", help="said in each new row, e.g. that other work ran beside it (its minutes)")
    parser.add_argument("train_options", nargs="*", help="more `train` options, after --")
    args = parser.parse_args()

    path = RESULTS_DIR / f"{args.name}.json"

    def saved_rows():  # read again before each write: another run may have added rows meanwhile
        return json.loads(path.read_text())["results"] if path.exists() else []

    data = ["--data-dir", args.data_dir] if args.data_dir else []
    options = " ".join(args.train_options)
    lookback = args.lookback or DATASETS.get(args.dataset, CSV_DEFAULTS).lookback
    for cell in args.cells:
        for horizon in args.horizons:
            for seed in args.seeds:
                key = (args.dataset, cell, lookback, horizon, seed, options)
                fields = ("dataset", "cell", "lookback", "horizon", "seed", "options")
                if any(tuple(r[field] for field in fields) == key for r in saved_rows()):
                    print(f"done already: {key}")
                    continue
                row = run(args.dataset, cell, lookback, horizon, seed, args.train_options, data)
                row["note"] = args.note
                write(args.name, saved_rows() + [row])
    print(markdown_table(saved_rows(), COLUMNS))
    print(f"\nSaved {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
