"""Reading a series from a CSV file, with its checks (missing values, times out of
order, constant columns, unknown columns), and its chronological splits."""

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from seqapps.apps.cli import UsageError

ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/"
BUNDLE = (
    "the long-horizon benchmark bundle linked from https://github.com/thuml/Autoformer "
    "(or https://github.com/thuml/Time-Series-Library)"
)


@dataclass(frozen=True)
class Benchmark:
    """A named dataset of the long-horizon benchmarks and its standard protocol, as the
    Informer / Autoformer / Time-Series-Library code defines it.

    The ETT files (`rows_per_hour` set) split 12/4/4 months of 30 days; the others
    70/10/20 % in time order. `url` is None where no server hands out the file
    directly; `source` then says where to get it.
    """

    filename: str
    season: int  # of the seasonal-naive baseline, in rows
    url: str | None = None
    source: str = BUNDLE
    date_column: str = "date"
    rows_per_hour: int | None = None
    lookback: int = 96
    horizon: int = 96
    segment: int = 24  # SegRNN's; the longest segment that divides lookback and horizon, up to this
    batch_size: int = 256  # SegRNN's for ETT; a short series needs smaller batches to take enough steps


DATASETS = {
    "etth1": Benchmark("ETTh1.csv", 24, ETT_URL + "ETTh1.csv", rows_per_hour=1),
    "etth2": Benchmark("ETTh2.csv", 24, ETT_URL + "ETTh2.csv", rows_per_hour=1),
    "ettm1": Benchmark("ETTm1.csv", 96, ETT_URL + "ETTm1.csv", rows_per_hour=4),
    "ettm2": Benchmark("ETTm2.csv", 96, ETT_URL + "ETTm2.csv", rows_per_hour=4),
    "weather": Benchmark("weather.csv", 144),  # a day of 10-minute rows
    "electricity": Benchmark("electricity.csv", 24),
    "traffic": Benchmark("traffic.csv", 24),
    "exchange_rate": Benchmark("exchange_rate.csv", 7),
    # Weekly, 676 training rows: at batch 256 an epoch is 3 steps, and 30 epochs underfit (mean
    # validation MSE at horizons 24-60: 0.365 at 256, 0.252 at 32, 0.214 at 16; forecasting-datasets.md).
    "illness": Benchmark("national_illness.csv", 52, lookback=36, horizon=24, segment=12, batch_size=16),
    "jena": Benchmark(
        "jena_climate_2009_2016.csv",
        144,
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/jena_climate_2009_2016.csv.zip",
        date_column="Date Time",
    ),
}
# A CSV given by path takes these where the options are left unset.
CSV_DEFAULTS = Benchmark("", 24)
MISSING = {"", "nan", "na", "n/a", "null", "none"}
# The time formats read without --time-format (None: ISO 8601, with or without `T`
# and seconds, or a date alone). Day-first and month-first slashes both occur: a
# column that reads both ways is refused as ambiguous.
TIME_FORMATS = [
    None,
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y",
    "%m/%d/%Y",
]


def complete_config(config):
    """`config` with the dataset's lookback, horizon, season and batch size where they are
    unset, and the longest segment up to the dataset's that divides both lookback and horizon."""
    benchmark = DATASETS.get(config["dataset"], CSV_DEFAULTS)
    defaults = {name: getattr(benchmark, name) for name in ("lookback", "horizon", "season", "batch_size")}
    config = {**config, **{name: value for name, value in defaults.items() if config.get(name) is None}}
    if config.get("segment") is None:
        whole = math.gcd(config["lookback"], config["horizon"])
        config["segment"] = max(d for d in range(1, benchmark.segment + 1) if whole % d == 0)
    return config


def find_csv(dataset, data_dir):
    """The CSV file of `dataset` (a name in DATASETS or a path), downloading it if need be."""
    if dataset not in DATASETS:
        path = Path(dataset)
        if not path.is_file():
            raise UsageError(f"--dataset {dataset}: no such file; give a CSV path or one of: {', '.join(DATASETS)}")
        return path
    benchmark = DATASETS[dataset]
    if data_dir is not None:
        path = Path(data_dir) / benchmark.filename
        if not path.is_file():
            where = "" if benchmark.url else f" (get it from {benchmark.source})"
            raise UsageError(
                f"{path} not found: --data-dir must hold {benchmark.filename} for --dataset {dataset}{where}"
            )
        return path
    if benchmark.url is None:
        raise UsageError(
            f"--dataset {dataset} is not served for direct download: get {benchmark.filename} from "
            f"{benchmark.source} and pass the directory holding it as --data-dir"
        )
    import keras  # here: the option table reads this module, and the command line loads no Keras

    downloaded = Path(keras.utils.get_file(origin=benchmark.url, extract=benchmark.url.endswith(".zip")))
    return next(downloaded.rglob(benchmark.filename)) if downloaded.is_dir() else downloaded


def read_times(texts, time_format):
    """Datetimes of `texts` in `time_format` (None: ISO 8601), or None if one does not read."""
    try:
        if time_format is None:
            return [datetime.fromisoformat(text) for text in texts]
        return [datetime.strptime(text, time_format) for text in texts]
    except ValueError:
        return None


def parse_times(texts, time_format, path):
    """(datetimes, format) of a time column: in `time_format` (a strptime format) if
    given, else in the one format of TIME_FORMATS that reads the whole column."""
    formats = [time_format] if time_format else TIME_FORMATS
    readings = {f: times for f in formats if (times := read_times(texts, f)) is not None}
    if not readings:
        unread = next((i for i, text in enumerate(texts) if all(read_times([text], f) is None for f in formats)), None)
        if unread is None:
            first = next(f for f in formats if read_times(texts[:1], f) is not None)
            mixed = next(i for i, text in enumerate(texts) if read_times([text], first) is None)
            raise UsageError(
                f"{path}, line {mixed + 2}: {texts[mixed]!r} is not in the time format of line 2 ({texts[0]!r}); "
                "write every time in one format"
            )
        where = f"{path}, line {unread + 2}: cannot read {texts[unread]!r} as a time"
        if time_format:
            raise UsageError(f"{where} in the format {time_format}")
        raise UsageError(
            f"{where} (read: ISO 8601, Y/M/D H:M, D.M.Y H:M:S, D/M/Y, dates alone, one format per column); "
            "pass its strptime format, e.g. --time-format '%d-%b-%Y %H:%M'"
        )
    if len({tuple(times) for times in readings.values()}) > 1:
        raise UsageError(
            f"{path}: times such as {texts[0]!r} read as {' or as '.join(map(str, readings))}; "
            "pass the one meant as --time-format"
        )
    time_format = next(iter(readings))
    return np.array(readings[time_format]), time_format


def read_header(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def read_table(path, date_column=None, time_format=None):
    """(times, column names, values, time format) of a CSV with a time column and
    numeric columns; the time format is `time_format` or the one detected.

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
    values = np.empty((len(rows), len(columns)))
    for r, row in enumerate(rows):
        line = r + 2
        if len(row) != len(header):
            raise UsageError(f"{path}, line {line}: {len(row)} fields where the header has {len(header)}")
        for c, cell in enumerate(cell for i, cell in enumerate(row) if i != date_index):
            try:
                values[r, c] = np.nan if cell.strip().lower() in MISSING else float(cell)
            except ValueError:
                raise UsageError(f"{path}, line {line}, column {columns[c]!r}: {cell!r} is not a number") from None
    times, time_format = parse_times([row[date_index] for row in rows], time_format, path)
    return times, columns, values, time_format


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
    """Refuse missing values, or forward-fill them: each gap takes the last value
    before it, so that no value depends on anything after its own time (a test
    window's history never sees past its forecast origin)."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    rows, cols = np.nonzero(missing)
    where = ", ".join(f"line {r + 2} column {columns[c]!r}" for r, c in list(zip(rows, cols, strict=True))[:3])
    if fill is None:
        raise UsageError(f"{path}: {missing.sum()} missing value(s), first at {where}; pass --fill ffill")
    if fill != "ffill":  # a saved config of 0.2, whose interpolation read values after the gap
        raise UsageError(f"--fill {fill} is no longer offered (it read values after each gap); use --fill ffill")
    filled = values.copy()
    for c in range(values.shape[1]):
        if missing[0, c]:
            first = np.flatnonzero(~missing[:, c])
            line = f"line {first[0] + 2}" if first.size else "nowhere"
            raise UsageError(
                f"{path}: column {columns[c]!r} starts with missing values (first value at {line}): "
                "there is nothing earlier to fill them from; start the file where every column has a value"
            )
        index = np.maximum.accumulate(np.where(missing[:, c], 0, np.arange(len(values))))
        filled[:, c] = values[index, c]
    return filled


def dataset_name_or_path(text):
    """An argparse type for --dataset: a known name as it is, a file path made absolute."""
    return text if text in DATASETS else str(Path(text).expanduser().resolve())


def split_ends(n_rows, dataset, path):
    """The rows where the training, validation and test splits end: 12/4/4 months of
    30 days for the ETT files, else 70/10/20 % (validation takes what the training
    and test splits leave), as the Informer/Autoformer/Time-Series-Library code splits."""
    rows_per_hour = DATASETS[dataset].rows_per_hour if dataset in DATASETS else None
    if rows_per_hour is None:
        return int(n_rows * 0.7), n_rows - int(n_rows * 0.2), n_rows
    month = 30 * 24 * rows_per_hour
    ends = 12 * month, 16 * month, 20 * month
    if n_rows < ends[-1]:
        raise UsageError(f"{path}: {n_rows} rows, fewer than the 20 months ({ends[-1]} rows) of --dataset {dataset}")
    return ends


def split_bounds(ends, lookback):
    """Row ranges of the splits; validation and test start `lookback` rows early so
    their first window's history is the previous split's tail."""
    train_end, val_end, test_end = ends
    return {"train": (0, train_end), "val": (train_end - lookback, val_end), "test": (val_end - lookback, test_end)}


@dataclass
class Series:
    """A checked multivariate series: `values` (rows, features) in raw units, float32,
    the targets among the features, the chronological splits, and the training
    split's mean and standard deviation of each feature."""

    path: Path
    date_column: str
    time_format: str | None
    times: np.ndarray
    values: np.ndarray
    features: list[str]
    targets: list[str]
    split_ends: tuple[int, int, int]
    mean: np.ndarray
    std: np.ndarray

    @property
    def target_index(self):
        return [self.features.index(name) for name in self.targets]

    def bounds(self, lookback):
        return split_bounds(self.split_ends, lookback)

    def summary(self):
        """What predict and export need to know about the series, without the data."""
        steps = [(b - a).total_seconds() for a, b in zip(self.times[:-1], self.times[1:], strict=True)]
        return {
            "path": str(self.path),
            "date_column": self.date_column,
            "time_format": self.time_format,
            "features": self.features,
            "targets": self.targets,
            "time_step_seconds": float(np.median(steps)),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }


def load_series(config, data_dir) -> Series:
    """The series `config` names (dataset, columns, fill, drop_duplicates), checked."""
    dataset = config["dataset"]
    path = find_csv(dataset, data_dir)
    date_column = config["date_column"] or (DATASETS[dataset].date_column if dataset in DATASETS else None)
    # Runs from before --time-format have none in their config.
    times, columns, values, time_format = read_table(path, date_column, config.get("time_format"))
    features = select_columns(columns, config["features"], "--features", path)
    targets = select_columns(features, config["targets"], "--targets (which must be among the features)", path)
    values = values[:, [columns.index(name) for name in features]]
    keep = check_times(times, config["drop_duplicates"], path)
    times, values = times[keep], fill_missing(values[keep], features, config["fill"], path)
    ends = split_ends(len(values), dataset, path)
    if config["lookback"] % config["segment"] or config["horizon"] % config["segment"]:
        raise UsageError(
            f"--segment {config['segment']} must divide --lookback {config['lookback']} and "
            f"--horizon {config['horizon']}; choose a segment that divides both"
        )
    needed = config["lookback"] + config["horizon"]
    for split, (start, end) in split_bounds(ends, config["lookback"]).items():
        if end - start < needed:
            raise UsageError(
                f"{path}: the {split} split has {end - start} rows, fewer than lookback + horizon "
                f"= {needed}; use a longer series or a shorter --lookback/--horizon"
            )
    train = values[: ends[0]]
    constant = [name for name, std in zip(features, train.std(axis=0), strict=True) if std == 0]
    if constant:
        raise UsageError(
            f"{path}: column(s) {', '.join(map(repr, constant))} are constant in the training split; "
            "leave them out of --features"
        )
    return Series(
        path=path,
        date_column=date_column or read_header(path)[0],
        time_format=time_format,
        times=times,
        values=values.astype("float32"),
        features=features,
        targets=targets,
        split_ends=ends,
        mean=train.mean(axis=0),
        std=train.std(axis=0),
    )


def load(config) -> Series:
    """The series of a `config` completed by `complete_config`."""
    series = load_series(config, config["data_dir"])
    print(
        f"{len(series.values):,} rows of {len(series.features)} variables from {series.path}; "
        f"forecasting {', '.join(series.targets)}"
    )
    return series
