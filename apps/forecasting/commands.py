"""`seqapps forecasting evaluate | predict | export`."""

from datetime import timedelta
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from seqapps.apps import runs
from seqapps.apps.cli import UsageError
from seqapps.apps.export import export_savedmodel, is_savedmodel, load_serving_signature
from seqapps.apps.forecasting import baselines
from seqapps.apps.forecasting import model as _registers  # noqa: F401  the layers and losses saved models name
from seqapps.apps.forecasting.data import load_series, read_table, select_columns
from seqapps.apps.forecasting.windows import window_chunks, window_starts, windows
from seqapps.apps.plots import plot_error_by_horizon, plot_forecasts
from seqapps.apps.tables import text_table


class ForecastErrors:
    """A forecast's errors over the test windows, summed a chunk of windows at a time
    (so that evaluate's memory stays flat in their number): MSE and MAE on the
    standardised scale and MAE in raw units, overall, per target and per step."""

    def __init__(self, std):
        self.std, self.windows, self.sums = std, 0, None

    def add(self, predicted, actual):
        error = predicted - actual
        scaled = error / self.std
        sums = {  # over windows, per (step, target)
            "mse": np.sum(scaled**2, axis=0, dtype="float64"),
            "mae": np.sum(np.abs(scaled), axis=0, dtype="float64"),
            "mae_raw": np.sum(np.abs(error), axis=0, dtype="float64"),
        }
        self.sums = sums if self.sums is None else {k: self.sums[k] + sums[k] for k in sums}
        self.windows += len(actual)

    def metrics(self):
        mean = {k: total / self.windows for k, total in self.sums.items()}
        return {
            **{k: float(np.mean(m)) for k, m in mean.items()},
            "per_target": {k: np.mean(m, axis=0).tolist() for k, m in mean.items()},
            "per_step": {k: np.mean(mean[k], axis=1).tolist() for k in ("mse", "mae")},
        }


def evaluate(args):
    model, run_dir = runs.load_model_to_evaluate(args.run_dir or args.model)
    config = runs.load_json(run_dir / "config.json")
    series = load_series(config, args.data_dir or config["data_dir"])
    lookback, horizon, season = config["lookback"], config["horizon"], config["season"]
    index, std = series.target_index, series.std[series.target_index]
    linear = baselines.fit_linear(
        window_chunks(series, window_starts(series, "train", config), config),
        window_chunks(series, window_starts(series, "val", config), config),
        index,
        std,
    )

    def forecasts(seasonal_history):
        history = seasonal_history[:, -lookback:]
        return {
            "model": model.predict(history, batch_size=256, verbose=0),
            "persistence": baselines.persistence(history, index, horizon),
            "seasonal_naive": baselines.seasonal_naive(seasonal_history, index, horizon, season),
            "linear": baselines.linear(history, index, linear, std),
        }

    # A season may be longer than the lookback (a day of 10-minute rows): the
    # seasonal-naive baseline reaches back a whole season before each window's end.
    history_length = max(lookback, season)
    starts = window_starts(series, "test", config)[: args.limit]
    errors = {}
    progress = keras.utils.Progbar(len(starts), unit_name="window")
    for seasonal_history, actual in window_chunks(series, starts, config, history_length):
        for name, predicted in forecasts(seasonal_history).items():
            errors.setdefault(name, ForecastErrors(std)).add(predicted, actual)
        progress.add(len(actual))
    metrics = {
        "test_windows": len(starts),
        "targets": series.targets,
        "horizon": horizon,
        **{name: forecast_errors.metrics() for name, forecast_errors in errors.items()},
    }
    runs.save_json(run_dir / "metrics.json", metrics)
    samples = sorted({0, len(starts) // 2, len(starts) - 1})  # first, middle, last: cut and forecast again
    seasonal_history, actual = windows(series, starts[samples], config, history_length)
    plot_forecasts(
        seasonal_history[:, -lookback:, index],
        actual,
        forecasts(seasonal_history),
        series.targets,
        run_dir / "forecasts.png",
        window_numbers=samples,
    )
    plot_error_by_horizon({name: metrics[name]["per_step"]["mse"] for name in errors}, run_dir / "error_by_horizon.png")
    print(f"\nTest windows: {len(starts):,}; horizon {horizon}; targets {', '.join(series.targets)}")
    print("MSE and MAE on the standardised scale:")
    print(metrics_table(metrics, list(errors)))
    print(f"Wrote {run_dir / 'metrics.json'}, forecasts.png and error_by_horizon.png")
    return metrics


def metrics_table(metrics, names):
    """The metrics of `names` as aligned text columns, readable at any magnitude."""
    columns = [("name", "", "{}"), ("mse", "MSE", "{:.4f}"), ("mae", "MAE", "{:.4f}"), ("mae_raw", "raw MAE", "{:.4f}")]
    return text_table([{"name": name, **metrics[name]} for name in names], columns)


def load_forecaster(model_path):
    """(info, forecast function) of a .keras model, a run directory or a SavedModel;
    info holds the series summary, lookback and horizon."""
    model_path = Path(model_path)
    if is_savedmodel(model_path):
        signature = load_serving_signature(model_path)

        def forecast(history):
            return signature(history=tf.constant(history))["forecast"].numpy()

        return runs.load_json(model_path / "seqapps.json"), forecast
    run_dir = model_path if model_path.is_dir() else model_path.parent
    model = runs.load_model(model_path)

    def forecast(history):
        return model.predict(history, verbose=0)

    return {**runs.load_json(run_dir / "config.json"), **runs.load_json(run_dir / "series.json")}, forecast


def predict(args):
    if len(args.inputs) != 1:
        raise UsageError("give one CSV file: the forecast starts after its last --lookback rows")
    info, forecast_fn = load_forecaster(args.model)
    times, columns, values, _ = read_table(args.inputs[0], info["date_column"], info["time_format"])
    features = select_columns(columns, info["features"], "the model's features", args.inputs[0])
    values = values[:, [columns.index(name) for name in features]]
    if len(values) < info["lookback"]:
        raise UsageError(f"{args.inputs[0]}: {len(values)} rows, the model needs the last {info['lookback']}")
    history = values[-info["lookback"] :]
    if np.isnan(history).any():
        raise UsageError(f"{args.inputs[0]}: missing values in the last {info['lookback']} rows; fill them first")
    forecast = forecast_fn(history[None].astype("float32"))[0]
    step = timedelta(seconds=info["time_step_seconds"])
    lines = [",".join(["date", *info["targets"]])]
    for k, row in enumerate(forecast, start=1):
        lines.append(",".join([(times[-1] + k * step).isoformat(sep=" "), *(f"{v:.6g}" for v in row)]))
    text = "\n".join(lines) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"Wrote {len(forecast)} forecast steps to {args.output}")
    else:
        print(text, end="")
    return forecast


def export(args):
    run_dir = Path(args.run_dir)
    model = runs.load_model(run_dir)
    config = runs.load_json(run_dir / "config.json")
    info = {**runs.load_json(run_dir / "series.json"), "lookback": config["lookback"], "horizon": config["horizon"]}
    lookback, n_features = model.input_shape[1:]

    def serve(history):
        history = tf.debugging.assert_all_finite(
            history, "history holds NaN or Inf: send complete windows (fill gaps before forecasting)"
        )
        return {"forecast": model(history, training=False)}

    rng = np.random.default_rng(0)
    sample = np.array(info["mean"]) + np.array(info["std"]) * rng.normal(size=(4, lookback, n_features))
    sample = sample.astype("float32")
    expected = model.predict(sample, verbose=0)

    path = export_savedmodel(
        model,
        serve,
        examples={"history": sample},
        expected={"forecast": expected},
        export_dir=args.export_dir,
        version=args.version,
        atol=1e-4,
        files={"seqapps.json": info},
    )
    print(f"Exported {path} (checked in a TensorFlow-only process)")
    return path
