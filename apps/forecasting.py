"""Multivariate time-series forecasting: raw-unit history in, raw-unit forecast out.

    seqapps forecasting train --data-dir ../shared/data [--dataset etth1|jena|PATH.csv] [--horizon 96]
    seqapps forecasting evaluate --run-dir runs/forecasting/<time>
    seqapps forecasting predict --model runs/forecasting/<time> series.csv
    seqapps forecasting export --run-dir runs/forecasting/<time>

The model standardises its input with statistics of the training split and returns
raw units, so the statistics travel with it (and with the export). Each variable's
window is one sequence, cut into segments that a recurrent encoder reads (the
channel-independent, segment-wise recurrence of SegRNN, Lin et al. 2023); a dense
head predicts all `horizon` steps at once, or an autoregressive decoder predicts
them a segment at a time. `evaluate` reports the model next to persistence,
seasonal-naive and linear baselines under the same protocol.
"""

import csv
from datetime import datetime, timedelta
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from apps import runs
from apps.cli import UsageError, app_parser, run
from apps.export import agreement_check, export_savedmodel, is_savedmodel, load_serving_signature
from apps.plots import plot_error_by_horizon, plot_forecasts
from layers import make_rnn

DEFAULTS = {
    "dataset": "etth1",
    "date_column": None,
    "features": None,
    "targets": None,
    "fill": None,
    "drop_duplicates": False,
    "lookback": 96,
    "horizon": 96,
    "stride": 1,
    "segment": 12,
    "season": 24,
    "decoder": "direct",
    "cell": "gru",
    "units": 256,
    "layers": 1,
    "bidirectional": False,
    "dropout": 0.1,
    "recurrent_dropout": 0.0,
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "patience": 5,
}

# -- data -------------------------------------------------------------------------

DATASETS = {
    # name: (file in --data-dir, download URL, date column, time format or None for ISO 8601)
    "etth1": (
        "ETTh1.csv",
        "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv",
        "date",
        None,
    ),
    "jena": (
        "jena_climate_2009_2016.csv",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/jena_climate_2009_2016.csv.zip",
        "Date Time",
        "%d.%m.%Y %H:%M:%S",
    ),
}
MISSING = {"", "nan", "na", "n/a", "null", "none"}


def find_csv(dataset, data_dir):
    """The CSV file of `dataset` (a name in DATASETS or a path), downloading it if need be."""
    if dataset not in DATASETS:
        path = Path(dataset)
        if not path.is_file():
            raise UsageError(f"--dataset {dataset}: no such file; give a CSV path or one of: {', '.join(DATASETS)}")
        return path
    filename, url, _, _ = DATASETS[dataset]
    if data_dir is not None:
        path = Path(data_dir) / filename
        if not path.is_file():
            raise UsageError(f"{path} not found: --data-dir must hold {filename} for --dataset {dataset}")
        return path
    downloaded = Path(keras.utils.get_file(origin=url, extract=url.endswith(".zip")))
    return next(downloaded.rglob(filename)) if downloaded.is_dir() else downloaded


def parse_time(text, time_format, where):
    try:
        return datetime.strptime(text, time_format) if time_format else datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{where}: cannot read {text!r} as a time"
            + (f" in the format {time_format}" if time_format else " (expected ISO 8601)")
        ) from None


def read_header(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def read_table(path, date_column=None, time_format=None):
    """(times, column names, values) of a CSV with a time column and numeric columns.

    Missing cells (empty, NaN, NA, null) are NaN in `values`; anything else that is
    not a number is an error naming its row and column.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path} as a UTF-8 CSV file: {e}") from None
    if len(rows) < 2:
        raise UsageError(f"{path}: expected a header line and data rows")
    header, rows = rows[0], rows[1:]
    date_column = date_column or header[0]
    if date_column not in header:
        raise UsageError(f"{path}: no time column {date_column!r}; columns are: {', '.join(header)}")
    date_index = header.index(date_column)
    columns = [name for name in header if name != date_column]
    times, values = [], np.empty((len(rows), len(columns)))
    for r, row in enumerate(rows):
        line = r + 2
        if len(row) != len(header):
            raise UsageError(f"{path}, line {line}: {len(row)} fields where the header has {len(header)}")
        times.append(parse_time(row[date_index], time_format, f"{path}, line {line}"))
        for c, cell in enumerate(cell for i, cell in enumerate(row) if i != date_index):
            try:
                values[r, c] = np.nan if cell.strip().lower() in MISSING else float(cell)
            except ValueError:
                raise UsageError(f"{path}, line {line}, column {columns[c]!r}: {cell!r} is not a number") from None
    return np.array(times), columns, values


def select_columns(columns, wanted, what, path):
    if wanted is None:
        return list(columns)
    names = [name.strip() for name in wanted.split(",")] if isinstance(wanted, str) else list(wanted)
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise UsageError(
            f"{path}: no column {', '.join(map(repr, unknown))} for {what}; columns are: {', '.join(columns)}"
        )
    return names


def check_times(times, drop_duplicates, path):
    """Keep rows in time order; refuse (or with drop_duplicates, drop) repeated times."""
    steps = np.array([(b - a).total_seconds() for a, b in zip(times[:-1], times[1:], strict=True)])
    backwards = np.flatnonzero(steps < 0)
    if backwards.size:
        i = backwards[0] + 1
        raise UsageError(
            f"{path}: times go backwards at line {i + 2} ({times[i]} after {times[i - 1]}); sort the file by time"
        )
    repeated = np.flatnonzero(steps == 0) + 1
    if repeated.size and not drop_duplicates:
        raise UsageError(
            f"{path}: {repeated.size} repeated time(s), first at line {repeated[0] + 2} "
            f"({times[repeated[0]]}); pass --drop-duplicates to keep the first row of each"
        )
    return np.setdiff1d(np.arange(len(times)), repeated)


def fill_missing(values, columns, fill, path):
    missing = np.isnan(values)
    if not missing.any():
        return values
    rows, cols = np.nonzero(missing)
    where = ", ".join(f"line {r + 2} column {columns[c]!r}" for r, c in list(zip(rows, cols, strict=True))[:3])
    if fill is None:
        raise UsageError(
            f"{path}: {missing.sum()} missing value(s), first at {where}; pass --fill interpolate or --fill ffill"
        )
    filled = values.copy()
    for c in range(values.shape[1]):
        known = np.flatnonzero(~missing[:, c])
        if known.size == 0:
            raise UsageError(f"{path}: column {columns[c]!r} has no values at all")
        if fill == "interpolate":
            filled[:, c] = np.interp(np.arange(len(values)), known, values[known, c])
        else:  # ffill; leading gaps take the first known value
            index = np.maximum.accumulate(np.where(missing[:, c], 0, np.arange(len(values))))
            index[: known[0]] = known[0]
            filled[:, c] = values[index, c]
    return filled


def split_bounds(n_rows, dataset, lookback):
    """Row ranges of the chronological splits; validation and test start `lookback`
    rows early so their first window's history is the previous split's tail."""
    if dataset == "etth1":  # 12/4/4 months of 30 days, as in Informer, DLinear, PatchTST
        train_end, val_end, test_end = 8640, 11520, 14400
    else:  # 70/10/20, as the same papers split other datasets
        train_end, val_end, test_end = int(n_rows * 0.7), n_rows - int(n_rows * 0.2), n_rows
    return {"train": (0, train_end), "val": (train_end - lookback, val_end), "test": (val_end - lookback, test_end)}


def load_series(config, data_dir):
    """The series and everything the app needs about it, checked; see DEFAULTS for the options."""
    dataset = config["dataset"]
    path = find_csv(dataset, data_dir)
    _, _, date_column, time_format = DATASETS.get(dataset, (None, None, None, None))
    date_column = config["date_column"] or date_column
    times, columns, values = read_table(path, date_column, time_format)
    features = select_columns(columns, config["features"], "--features", path)
    targets = select_columns(features, config["targets"], "--targets (which must be among the features)", path)
    values = values[:, [columns.index(name) for name in features]]
    keep = check_times(times, config["drop_duplicates"], path)
    times, values = times[keep], fill_missing(values[keep], features, config["fill"], path)
    needed = config["lookback"] + config["horizon"]
    bounds = split_bounds(len(values), dataset, config["lookback"])
    for split, (start, end) in bounds.items():
        if end - start < needed:
            raise UsageError(
                f"{path}: the {split} split has {end - start} rows, fewer than lookback + horizon "
                f"= {needed}; use a longer series or a shorter --lookback/--horizon"
            )
    train = values[slice(*bounds["train"])]
    constant = [name for name, std in zip(features, train.std(axis=0), strict=True) if std == 0]
    if constant:
        raise UsageError(
            f"{path}: column(s) {', '.join(map(repr, constant))} are constant in the training split; "
            "leave them out of --features"
        )
    return {
        "path": path,
        "date_column": date_column or read_header(path)[0],
        "time_format": time_format,
        "times": times,
        "values": values.astype("float32"),
        "features": features,
        "targets": targets,
        "target_index": [features.index(name) for name in targets],
        "bounds": bounds,
        "mean": train.mean(axis=0),
        "std": train.std(axis=0),
    }


def window_starts(series, split, config):
    """First rows of the split's windows; --limit keeps a seeded sample of the training ones."""
    start, end = series["bounds"][split]
    last = end - config["lookback"] - config["horizon"]
    starts = np.arange(start, last + 1, config["stride"] if split == "train" else 1)
    if split == "train" and config["limit"] and config["limit"] < len(starts):
        starts = np.sort(np.random.default_rng(config["seed"]).choice(starts, config["limit"], replace=False))
    return starts


def windows(series, split, config):
    """All (history, future) windows of a split as arrays, in raw units."""
    lookback, horizon = config["lookback"], config["horizon"]
    starts = window_starts(series, split, config)
    values = series["values"]
    history = np.stack([values[s : s + lookback] for s in starts])
    future = np.stack([values[s + lookback : s + lookback + horizon][:, series["target_index"]] for s in starts])
    return history, future


def dataset(series, split, config, shuffle_seed=None):
    """Windows of a split as a batched tf.data pipeline, cut on the fly from the series."""
    values = tf.constant(series["values"])
    targets = tf.constant(series["target_index"])
    lookback, horizon = config["lookback"], config["horizon"]
    starts = window_starts(series, split, config)

    def cut(start):
        history = values[start : start + lookback]
        future = tf.gather(values[start + lookback : start + lookback + horizon], targets, axis=1)
        return history, future

    ds = tf.data.Dataset.from_tensor_slices(starts)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(starts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE).batch(config["batch_size"]).prefetch(tf.data.AUTOTUNE)


# -- model ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="seqapps")
class SegmentRecurrentForecaster(keras.layers.Layer):
    """Standardised history (batch, lookback, features) -> standardised forecast
    (batch, horizon, targets), one variable at a time with shared weights.

    Each window is re-centred on its last value (and the forecast shifted back),
    cut into segments of `segment` steps, embedded, and read by recurrent layers
    from `make_rnn`. `decoder="direct"` maps the final state to all `horizon` steps;
    `"autoregressive"` decodes a segment at a time, feeding each back in.
    """

    def __init__(
        self,
        lookback,
        horizon,
        segment,
        target_index,
        cell,
        units,
        layers,
        dropout,
        recurrent_dropout,
        decoder="direct",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if lookback % segment or horizon % segment:
            raise ValueError(f"--segment {segment} must divide --lookback {lookback} and --horizon {horizon}")
        self.lookback, self.horizon, self.segment = lookback, horizon, segment
        self.target_index = list(target_index)
        self.cell, self.units, self.layers = cell, units, layers
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        self.decoder, self.seed = decoder, seed
        self.embed = keras.layers.Dense(units, activation="relu", name="segment_embedding")
        self.encoder = [
            make_rnn(
                cell,
                units,
                return_sequences=i < layers - 1,
                return_state=i == layers - 1,
                dropout=dropout if i else 0.0,
                recurrent_dropout=recurrent_dropout,
                seed=None if seed is None else seed + i,
                name=f"encoder_{i}",
            )
            for i in range(layers)
        ]
        self.head_dropout = keras.layers.Dropout(dropout, seed=seed)
        if decoder == "direct":
            self.head = keras.layers.Dense(horizon, name="head")
        elif decoder == "autoregressive":
            self.decoder_rnn = make_rnn(
                cell, units, return_state=True, recurrent_dropout=recurrent_dropout, seed=seed, name="decoder"
            )
            self.head = keras.layers.Dense(segment, name="head")
        else:
            raise ValueError(f"Unknown decoder {decoder!r}; valid: direct, autoregressive.")

    def build(self, input_shape):
        n_segments = self.lookback // self.segment
        self.embed.build((None, n_segments, self.segment))
        shape = (None, n_segments, self.units)
        for rnn in self.encoder:
            rnn.build(shape)
        if self.decoder == "autoregressive":
            self.decoder_rnn.build((None, 1, self.units))
            self.head.build((None, self.units))
        else:
            self.head.build((None, self.units))

    def call(self, history, training=False):
        last = history[:, -1:, :]
        x = ops.transpose(history - last, (0, 2, 1))  # (batch, features, lookback)
        features = history.shape[-1]
        segments = ops.reshape(x, (-1, self.lookback // self.segment, self.segment))
        h = self.embed(segments)
        for rnn in self.encoder[:-1]:
            h = rnn(h, training=training)
        h, *states = self.encoder[-1](h, training=training)
        if self.decoder == "direct":
            y = self.head(self.head_dropout(h, training=training))
        else:
            pieces, segment = [], segments[:, -1, :]
            for _ in range(self.horizon // self.segment):
                h, *states = self.decoder_rnn(self.embed(segment)[:, None, :], initial_state=states, training=training)
                segment = self.head(self.head_dropout(h, training=training))
                pieces.append(segment)
            y = ops.concatenate(pieces, axis=-1)
        y = ops.transpose(ops.reshape(y, (-1, features, self.horizon)), (0, 2, 1)) + last
        return ops.take(y, self.target_index, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.horizon, len(self.target_index))

    def get_config(self):
        return {
            **super().get_config(),
            "lookback": self.lookback,
            "horizon": self.horizon,
            "segment": self.segment,
            "target_index": self.target_index,
            "cell": self.cell,
            "units": self.units,
            "layers": self.layers,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "decoder": self.decoder,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="seqapps")
class StandardizedMeanSquaredError(keras.losses.Loss):
    """MSE of raw-unit forecasts measured in standard deviations of each target: the
    benchmark's loss, with every variable weighing the same whatever its unit."""

    def __init__(self, scale, name="standardized_mse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = [float(s) for s in scale]

    def call(self, y_true, y_pred):
        return ops.mean(ops.square((y_true - y_pred) / ops.convert_to_tensor(self.scale)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def build_model(config, series):
    """Raw history -> standardise -> forecaster -> raw forecast."""
    mean, var = series["mean"], series["std"] ** 2
    index = series["target_index"]
    history = keras.Input((config["lookback"], len(series["features"])), name="history")
    x = keras.layers.Normalization(mean=mean, variance=var, name="standardize")(history)
    x = SegmentRecurrentForecaster(
        config["lookback"],
        config["horizon"],
        config["segment"],
        index,
        config["cell"],
        config["units"],
        config["layers"],
        config["dropout"],
        config["recurrent_dropout"],
        config["decoder"],
        config["seed"],
        name="forecaster",
    )(x)
    forecast = keras.layers.Normalization(mean=mean[index], variance=var[index], invert=True, name="forecast")(x)
    model = keras.Model(history, forecast, name=f"forecasting_{config['cell']}")
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        loss=StandardizedMeanSquaredError(series["std"][index]),
        metrics=["mae"],
    )
    return model


# -- baselines --------------------------------------------------------------------


def persistence(history, target_index, horizon):
    return np.repeat(history[:, -1:, target_index], horizon, axis=1)


def seasonal_naive(history, target_index, horizon, season):
    """Each step repeats the value one season earlier (from the last season seen)."""
    lookback = history.shape[1]
    if season > lookback:
        raise UsageError(f"--season {season} is longer than --lookback {lookback}")
    steps = lookback - season + np.arange(horizon) % season
    return history[:, steps][:, :, target_index]


def fit_linear(history, future, target_index):
    """Least-squares linear map from a variable's re-centred window to its future,
    shared by all target variables (the NLinear baseline of Zeng et al. 2023)."""
    x = history[:, :, target_index] - history[:, -1:, target_index]
    y = future - history[:, -1:, target_index]
    x = np.transpose(x, (0, 2, 1)).reshape(-1, x.shape[1])
    y = np.transpose(y, (0, 2, 1)).reshape(-1, y.shape[1])
    x = np.hstack([x, np.ones((len(x), 1))])
    weights, *_ = np.linalg.lstsq(x.astype("float64"), y.astype("float64"), rcond=None)
    return weights


def linear(history, target_index, weights):
    last = history[:, -1:, target_index]
    x = np.transpose(history[:, :, target_index] - last, (0, 2, 1))
    y = np.concatenate([x, np.ones(x.shape[:2] + (1,))], axis=-1) @ weights
    return np.transpose(y, (0, 2, 1)) + last


# -- commands ---------------------------------------------------------------------


def train_command(args):
    run_dir, config = runs.prepare_run_dir("forecasting", args, DEFAULTS)
    keras.utils.set_random_seed(config["seed"])
    series = load_series(config, config["data_dir"])
    runs.save_json(run_dir / "series.json", series_summary(series))
    train_data = dataset(series, "train", config, shuffle_seed=config["seed"])
    print(
        f"{len(series['values']):,} rows of {len(series['features'])} variables from {series['path']}; "
        f"forecasting {', '.join(series['targets'])}; run directory {run_dir}"
    )
    runs.train(
        build_model(config, series),
        train_data,
        dataset(series, "val", config),
        run_dir,
        config,
        monitor="val_loss",
        mode="min",
        verbose=args.verbose,
    )


def series_summary(series):
    """What predict and export need to know about the series, without the data."""
    times = series["times"]
    return {
        "path": str(series["path"]),
        "date_column": series["date_column"],
        "time_format": series["time_format"],
        "features": series["features"],
        "targets": series["targets"],
        "time_step_seconds": float(
            np.median([(b - a).total_seconds() for a, b in zip(times[:-1], times[1:], strict=True)])
        ),
        "mean": series["mean"].tolist(),
        "std": series["std"].tolist(),
    }


def forecast_errors(predicted, actual, std):
    """MSE and MAE on the standardised scale, and MAE in raw units: overall, per target, per step."""
    error = predicted - actual
    scaled = error / std
    return {
        "mse": float(np.mean(scaled**2)),
        "mae": float(np.mean(np.abs(scaled))),
        "mae_raw": float(np.mean(np.abs(error))),
        "per_target": {
            "mse": np.mean(scaled**2, axis=(0, 1)).tolist(),
            "mae": np.mean(np.abs(scaled), axis=(0, 1)).tolist(),
            "mae_raw": np.mean(np.abs(error), axis=(0, 1)).tolist(),
        },
        "per_step": {
            "mse": np.mean(scaled**2, axis=(0, 2)).tolist(),
            "mae": np.mean(np.abs(scaled), axis=(0, 2)).tolist(),
        },
    }


def evaluate_command(args):
    run_dir = Path(args.run_dir or Path(args.model).parent)
    model = runs.load_model(args.run_dir or args.model)
    config = runs.load_json(run_dir / "config.json")
    series = load_series(config, args.data_dir or config["data_dir"])
    history, actual = windows(series, "test", config)
    if args.limit:
        history, actual = history[: args.limit], actual[: args.limit]
    index, horizon = series["target_index"], config["horizon"]
    train_history, train_future = windows(series, "train", config)
    forecasts = {
        "model": model.predict(history, batch_size=256, verbose=1),
        "persistence": persistence(history, index, horizon),
        "seasonal_naive": seasonal_naive(history, index, horizon, config["season"]),
        "linear": linear(history, index, fit_linear(train_history, train_future, index)),
    }
    std = series["std"][index]
    metrics = {
        "test_windows": len(history),
        "targets": series["targets"],
        "horizon": horizon,
        **{name: forecast_errors(predicted, actual, std) for name, predicted in forecasts.items()},
    }
    runs.save_json(run_dir / "metrics.json", metrics)
    plot_forecasts(history[:, :, index], actual, forecasts, series["targets"], run_dir / "forecasts.png")
    plot_error_by_horizon(
        {name: metrics[name]["per_step"]["mse"] for name in forecasts}, run_dir / "error_by_horizon.png"
    )
    print(f"\nTest windows: {len(history):,}; horizon {horizon}; targets {', '.join(series['targets'])}")
    print(f"{'':16}{'MSE':>8}{'MAE':>8}{'raw MAE':>10}   (MSE and MAE on the standardised scale)")
    for name in forecasts:
        m = metrics[name]
        print(f"{name:16}{m['mse']:8.4f}{m['mae']:8.4f}{m['mae_raw']:10.4f}")
    print(f"Wrote {run_dir / 'metrics.json'}, forecasts.png and error_by_horizon.png")
    return metrics


def predict_command(args):
    if len(args.inputs) != 1:
        raise UsageError("give one CSV file: the forecast starts after its last --lookback rows")
    model_path = Path(args.model)
    if is_savedmodel(model_path):
        info = runs.load_json(model_path / "seqapps.json")
        signature = load_serving_signature(model_path)
        forecast_fn = lambda history: signature(history=tf.constant(history))["forecast"].numpy()  # noqa: E731
    else:
        run_dir = model_path if model_path.is_dir() else model_path.parent
        info = {**runs.load_json(run_dir / "config.json"), **runs.load_json(run_dir / "series.json")}
        model = runs.load_model(model_path)
        forecast_fn = lambda history: model.predict(history, verbose=0)  # noqa: E731
    times, columns, values = read_table(args.inputs[0], info["date_column"], info["time_format"])
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


def export_command(args):
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

    check = agreement_check({"history": sample}, {"forecast": expected}, atol=1e-4, files={"seqapps.json": info})

    path = export_savedmodel(
        model,
        serve,
        [tf.TensorSpec([None, lookback, n_features], tf.float32, name="history")],
        args.export_dir,
        args.version,
        check=check,
    )
    print(f"Exported {path} (checked in a TensorFlow-only process)")
    return path


def main(argv=None):
    parser, commands = app_parser("forecasting", __doc__, DEFAULTS)
    train = commands["train"]
    train.add_argument("--dataset", help="etth1, jena, or a CSV path (default: etth1)")
    train.add_argument("--date-column", help="the time column (default: the dataset's, or a CSV's first column)")
    train.add_argument("--features", help="comma-separated input columns (default: all but the time)")
    train.add_argument("--targets", help="comma-separated columns to forecast (default: all features)")
    train.add_argument("--fill", choices=["interpolate", "ffill"], help="fill missing values (default: refuse)")
    train.add_argument(
        "--drop-duplicates",
        action="store_true",
        default=None,
        help="keep the first of rows with the same time (default: refuse)",
    )
    for flag, what in (
        ("--lookback", "steps of history"),
        ("--horizon", "steps to forecast"),
        ("--stride", "steps between training windows"),
        ("--segment", "steps per segment the recurrent encoder reads"),
        ("--season", "season length of the seasonal-naive baseline"),
    ):
        train.add_argument(flag, type=int, help=f"{what} (default: {DEFAULTS[flag[2:]]})")
    train.add_argument("--decoder", choices=["direct", "autoregressive"], help="(default: direct)")
    commands["predict"].add_argument("--output", help="write the forecast CSV here instead of printing it")
    return run(
        parser,
        {"train": train_command, "evaluate": evaluate_command, "predict": predict_command, "export": export_command},
        argv,
    )


if __name__ == "__main__":
    main()
