"""`seqapps forecasting evaluate | predict | export`."""

import math
from datetime import timedelta
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from seqapps.apps import runs
from seqapps.apps.cli import UsageError
from seqapps.apps.export import export_savedmodel, is_savedmodel, load_serving_signature
from seqapps.apps.forecasting import DISTRIBUTION_LEVELS, baselines, forecast_levels
from seqapps.apps.forecasting import model as _registers  # noqa: F401  the layers and losses saved models name
from seqapps.apps.forecasting.data import load_series, read_table, select_columns
from seqapps.apps.forecasting.windows import window_chunks, window_starts, windows
from seqapps.apps.plots import plot_calibration, plot_error_by_horizon, plot_fan_chart, plot_forecasts
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


# Validation windows whose residuals give a point forecast its quantiles: at most this
# many (window, step, target) values, so that a wide series does not fill the memory.
RESIDUAL_VALUES = 20_000_000


class IntervalScores:
    """Quantile forecasts scored over the test windows, a chunk of windows at a time:
    the CRPS on the standardised scale (twice the mean pinball loss over the levels, the
    levels standing in for all levels), and for each central interval (levels q and
    1 - q) the share of true values inside it (its coverage) and its mean width in
    standard deviations; overall and per step."""

    def __init__(self, std, levels):
        self.std, self.levels, self.windows, self.sums = std, np.asarray(levels), 0, None
        self.intervals = [(i, list(levels).index(1 - q)) for i, q in enumerate(levels) if q < 0.5 and 1 - q in levels]

    def add(self, quantiles, actual):
        """`quantiles` (windows, horizon, levels, targets) and `actual` (windows, horizon, targets), raw units."""
        error = (actual[:, :, None, :] - quantiles) / self.std
        levels = self.levels[:, None]
        sums = {"pinball": np.sum(np.maximum(levels * error, (levels - 1) * error), axis=0, dtype="float64")}
        for low, high in self.intervals:
            inside = (quantiles[:, :, low] <= actual) & (actual <= quantiles[:, :, high])
            width = (quantiles[:, :, high] - quantiles[:, :, low]) / self.std
            sums[f"inside_{low}"] = np.sum(inside, axis=0, dtype="float64")
            sums[f"width_{low}"] = np.sum(width, axis=0, dtype="float64")
        self.sums = sums if self.sums is None else {k: self.sums[k] + sums[k] for k in sums}
        self.windows += len(actual)

    def metrics(self):
        crps_per_step = 2 * np.mean(self.sums["pinball"], axis=(1, 2)) / self.windows
        intervals = {}
        for low, high in self.intervals:
            nominal = f"{self.levels[high] - self.levels[low]:.0%}"
            coverage = np.mean(self.sums[f"inside_{low}"], axis=1) / self.windows
            intervals[nominal] = {
                "levels": [float(self.levels[low]), float(self.levels[high])],
                "coverage": float(np.mean(coverage)),
                "width": float(np.mean(self.sums[f"width_{low}"]) / self.windows),
                "coverage_per_step": coverage.tolist(),
            }
        return {"crps": float(np.mean(crps_per_step)), "crps_per_step": crps_per_step.tolist(), "intervals": intervals}


def validation_windows(series, config, history_length):
    """Evenly spaced validation windows, in chunks, at most RESIDUAL_VALUES
    (window, step, target) values in all: what intervals are fitted on."""
    starts = window_starts(series, "val", config)
    most = max(1, RESIDUAL_VALUES // (config["horizon"] * len(series.target_index)))
    starts = starts[np.linspace(0, len(starts) - 1, min(most, len(starts))).astype(int)]
    return window_chunks(series, starts, config, history_length)


def residual_quantiles(forecast, series, config, levels, history_length):
    """Each level's quantile of the validation residuals (actual - `forecast`) per
    step and target, (horizon, levels, targets): what a point forecast adds to become
    a quantile forecast (empirical, per horizon step)."""
    residuals = np.concatenate(
        [actual - forecast(history) for history, actual in validation_windows(series, config, history_length)]
    )
    return np.transpose(np.quantile(residuals, levels, axis=0), (1, 0, 2)).astype("float32")


def conformal_offsets(quantile_forecast, series, config, levels, history_length):
    """What conformalized quantile regression (Romano et al. 2019) adds to the
    `quantile_forecast`'s levels, (horizon, levels, targets): for each central interval
    (levels q and 1 - q) and each step and target, the widening (negative: narrowing)
    after which it holds the share 1 - 2q of the validation windows' true values,
    with the finite-sample correction; the median is left as it is."""
    scores = {pair: [] for pair in IntervalScores(np.ones(1), levels).intervals}
    for history, actual in validation_windows(series, config, history_length):
        quantiles = quantile_forecast(history)
        for low, high in scores:  # how far outside the interval each true value lies
            scores[low, high].append(np.maximum(quantiles[:, :, low] - actual, actual - quantiles[:, :, high]))
    offsets = np.zeros((config["horizon"], len(levels), len(series.target_index)), dtype="float32")
    for (low, high), chunks in scores.items():
        values = np.concatenate(chunks)
        share = min(1.0, math.ceil((len(values) + 1) * (levels[high] - levels[low])) / len(values))
        widening = np.quantile(values, share, axis=0)
        offsets[:, low], offsets[:, high] = -widening, widening
    return offsets


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

    def model_outputs(history):
        """(point forecast, quantiles or None) of the model."""
        outputs = model.predict(history, batch_size=256, verbose=0)
        return (outputs["forecast"], outputs["quantiles"]) if isinstance(outputs, dict) else (outputs, None)

    def forecasts(seasonal_history):
        """The point forecasts by name, and the model's quantiles (None for a point model)."""
        history = seasonal_history[:, -lookback:]
        point, quantiles = model_outputs(history)
        return {
            "model": point,
            "persistence": baselines.persistence(history, index, horizon),
            "seasonal_naive": baselines.seasonal_naive(seasonal_history, index, horizon, season),
            "linear": baselines.linear(history, index, linear, std),
        }, quantiles

    # A season may be longer than the lookback (a day of 10-minute rows): the
    # seasonal-naive baseline reaches back a whole season before each window's end.
    history_length = max(lookback, season)
    # A point model's intervals are scored at a distribution's levels: its CRPS is then comparable with theirs.
    levels = forecast_levels(config) or list(DISTRIBUTION_LEVELS)
    # Empirical quantile forecasts: a point forecast plus the quantiles of its validation residuals.
    offsets = {
        "model": residual_quantiles(
            lambda seasonal_history: model_outputs(seasonal_history[:, -lookback:])[0],
            series,
            config,
            levels,
            history_length,
        ),
        "seasonal_naive": residual_quantiles(
            lambda seasonal_history: baselines.seasonal_naive(seasonal_history, index, horizon, season),
            series,
            config,
            levels,
            history_length,
        ),
    }

    if forecast_levels(config):  # the model's own intervals, conformalized on validation
        conformal = conformal_offsets(
            lambda seasonal_history: model_outputs(seasonal_history[:, -lookback:])[1],
            series,
            config,
            levels,
            history_length,
        )

    def quantile_forecasts(point, own):
        empirical = {name: point[name][:, :, None, :] + offsets[name][None] for name in offsets}
        if own is None:
            return empirical
        return {
            "model": own,
            "model_conformal": own + conformal[None],
            "model_median_empirical": empirical["model"],
            "seasonal_naive": empirical["seasonal_naive"],
        }

    own_method = (
        "trained quantiles"
        if config.get("quantiles")
        else f"quantiles of the {config['distribution']} distribution"
        if config.get("distribution")
        else None
    )
    split = getattr(args, "split", "test")
    # Files of the test split keep their names; the validation split's end in _val.
    out = {
        name: run_dir / (name if split == "test" else name.replace(".", "_val."))
        for name in ("metrics.json", "forecasts.png", "fan_chart.png", "calibration.png", "error_by_horizon.png")
    }
    starts = window_starts(series, split, config)[: args.limit]
    errors, intervals = {}, {}
    progress = keras.utils.Progbar(len(starts), unit_name="window")
    for seasonal_history, actual in window_chunks(series, starts, config, history_length):
        point, own = forecasts(seasonal_history)
        for name, predicted in point.items():
            errors.setdefault(name, ForecastErrors(std)).add(predicted, actual)
        for name, quantiles in quantile_forecasts(point, own).items():
            intervals.setdefault(name, IntervalScores(std, levels)).add(quantiles, actual)
        progress.add(len(actual))
    metrics = {
        f"{split}_windows": len(starts),
        "targets": series.targets,
        "horizon": horizon,
        **{name: forecast_errors.metrics() for name, forecast_errors in errors.items()},
        "quantile_levels": levels,
        "quantile_forecasts": {
            name: {
                "method": own_method
                if name == "model" and own_method
                else f"{own_method}, conformalized on the validation windows (CQR)"
                if name == "model_conformal"
                else "point forecast + empirical quantiles of its validation residuals per step",
                **scores.metrics(),
            }
            for name, scores in intervals.items()
        },
    }
    runs.save_json(out["metrics.json"], metrics)
    samples = sorted({0, len(starts) // 2, len(starts) - 1})  # first, middle, last: cut and forecast again
    seasonal_history, actual = windows(series, starts[samples], config, history_length)
    point, own = forecasts(seasonal_history)
    plot_forecasts(
        seasonal_history[:, -lookback:, index],
        actual,
        point,
        series.targets,
        out["forecasts.png"],
        window_numbers=samples,
        split=split,
    )
    plot_fan_chart(
        seasonal_history[:, -lookback:, index],
        actual,
        quantile_forecasts(point, own)["model"],
        levels,
        series.targets,
        out["fan_chart.png"],
        window_numbers=samples,
        split=split,
    )
    plot_calibration(
        {
            name: {
                interval["levels"][1] - interval["levels"][0]: interval["coverage"]
                for interval in scores["intervals"].values()
            }
            for name, scores in metrics["quantile_forecasts"].items()
        },
        out["calibration.png"],
        split=split,
    )
    plot_error_by_horizon({name: metrics[name]["per_step"]["mse"] for name in errors}, out["error_by_horizon.png"])
    print(f"\n{split.capitalize()} windows: {len(starts):,}; horizon {horizon}; targets {', '.join(series.targets)}")
    print("MSE and MAE on the standardised scale:")
    print(metrics_table(metrics, list(errors)))
    print(
        f"Quantile forecasts (levels {', '.join(f'{q:g}' for q in levels)}): CRPS on the standardised scale, "
        "coverage and width (in standard deviations) of the central intervals:"
    )
    print(interval_table(metrics["quantile_forecasts"]))
    print(f"Wrote {', '.join(path.name for path in out.values())} in {run_dir}")
    return metrics


def metrics_table(metrics, names):
    """The metrics of `names` as aligned text columns, readable at any magnitude."""
    columns = [("name", "", "{}"), ("mse", "MSE", "{:.4f}"), ("mae", "MAE", "{:.4f}"), ("mae_raw", "raw MAE", "{:.4f}")]
    return text_table([{"name": name, **metrics[name]} for name in names], columns)


def interval_table(quantile_forecasts):
    rows, columns = [], [("name", "", "{}"), ("crps", "CRPS", "{:.4f}")]
    for name, scores in quantile_forecasts.items():
        row = {"name": name, "crps": scores["crps"]}
        for nominal, interval in scores["intervals"].items():
            row[f"coverage {nominal}"], row[f"width {nominal}"] = interval["coverage"], interval["width"]
        rows.append(row)
    for nominal in next(iter(quantile_forecasts.values()))["intervals"]:
        columns += [
            (f"coverage {nominal}", f"coverage {nominal}", "{:.3f}"),
            (f"width {nominal}", f"width {nominal}", "{:.3f}"),
        ]
    return text_table(rows, columns)


def load_forecaster(model_path):
    """(info, forecast function) of a .keras model, a run directory or a SavedModel;
    info holds the series summary, lookback, horizon and quantile levels (None for a
    point model); the function gives {"forecast": ...[, "quantiles": ...]}."""
    model_path = Path(model_path)
    if is_savedmodel(model_path):
        signature = load_serving_signature(model_path)

        def forecast(history):
            return {name: value.numpy() for name, value in signature(history=tf.constant(history)).items()}

        return runs.load_json(model_path / "seqapps.json"), forecast
    run_dir = model_path if model_path.is_dir() else model_path.parent
    model = runs.load_model(model_path)

    def forecast(history):
        return as_outputs(model.predict(history, verbose=0))

    return {**runs.load_json(run_dir / "config.json"), **runs.load_json(run_dir / "series.json")}, forecast


def as_outputs(outputs):
    """A model's outputs as a dict: a point model's forecast under "forecast"."""
    return outputs if isinstance(outputs, dict) else {"forecast": outputs}


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
    outputs = forecast_fn(history[None].astype("float32"))
    forecast = outputs["forecast"][0]
    header, table = ["date", *info["targets"]], forecast
    if forecast_levels(info):  # each target's quantiles after the point forecasts: OT_q0.1, OT_q0.9, ...
        levels = [(k, q) for k, q in enumerate(forecast_levels(info)) if q != 0.5]
        header += [f"{target}_q{q:g}" for target in info["targets"] for _, q in levels]
        quantiles = outputs["quantiles"][0][:, [k for k, _ in levels]]  # (horizon, levels, targets)
        table = np.concatenate([forecast, np.transpose(quantiles, (0, 2, 1)).reshape(len(forecast), -1)], axis=1)
    step = timedelta(seconds=info["time_step_seconds"])
    lines = [",".join(header)]
    for k, row in enumerate(table, start=1):
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
    info = {
        **runs.load_json(run_dir / "series.json"),
        "lookback": config["lookback"],
        "horizon": config["horizon"],
        "quantiles": forecast_levels(config),
    }
    lookback, n_features = model.input_shape[1:]

    def serve(history):
        history = tf.debugging.assert_all_finite(
            history, "history holds NaN or Inf: send complete windows (fill gaps before forecasting)"
        )
        return as_outputs(model(history, training=False))

    rng = np.random.default_rng(0)
    sample = np.array(info["mean"]) + np.array(info["std"]) * rng.normal(size=(4, lookback, n_features))
    sample = sample.astype("float32")
    expected = as_outputs(model.predict(sample, verbose=0))

    path = export_savedmodel(
        model,
        serve,
        examples={"history": sample},
        expected=expected,
        export_dir=args.export_dir,
        version=args.version,
        atol=1e-4,
        files={"seqapps.json": info},
    )
    print(f"Exported {path} (checked in a TensorFlow-only process)")
    return path
