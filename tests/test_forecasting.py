"""The forecasting app on synthetic series with a known pattern."""

import json
from pathlib import Path

import numpy as np
import pytest

from seqapps.apps import forecasting, runs
from seqapps.apps.export import run_savedmodel_in_subprocess
from seqapps.apps.forecasting import baselines, data, windows
from seqapps.apps.forecasting.model import build_model

SHARED_ETTH1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETTh1.csv"
TINY = [
    "--lookback",
    "24",
    "--horizon",
    "12",
    "--segment",
    "6",
    "--units",
    "16",
    "--batch-size",
    "32",
    "--verbose",
    "0",
]


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory, write_series):
    return write_series(tmp_path_factory.mktemp("series") / "sines.csv")


@pytest.fixture(scope="module")
def run_dir(series_csv, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "sines"
    forecasting.main(["train", "--dataset", str(series_csv), "--run-dir", str(run_dir), "--epochs", "6", *TINY])
    return run_dir


def config_for(csv, **overrides):
    config = {
        **forecasting.DEFAULTS,
        "dataset": str(csv),
        "lookback": 24,
        "horizon": 12,
        "segment": 6,
        "limit": None,
        "seed": 0,
        "batch_size": 32,
    }
    return {**config, **overrides}


def error_of(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        forecasting.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.slow
def test_model_beats_persistence_on_a_known_pattern(run_dir, capsys):
    metrics = forecasting.main(["evaluate", "--run-dir", str(run_dir)])
    assert metrics["model"]["mse"] < metrics["persistence"]["mse"]
    assert metrics["test_windows"] == (1200 - 936) - (24 + 12) + 1  # test rows from 936 (lookback early)
    for name in ("model", "persistence", "seasonal_naive", "linear"):
        assert len(metrics[name]["per_step"]["mse"]) == 12
        assert len(metrics[name]["per_target"]["mae_raw"]) == 3
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["model"]["mse"] == pytest.approx(metrics["model"]["mse"])
    assert (run_dir / "forecasts.png").is_file() and (run_dir / "error_by_horizon.png").is_file()
    assert "seasonal_naive" in capsys.readouterr().out


def test_statistics_come_from_the_training_split_only(tmp_path, write_series):
    def shift_the_test_part(lines):
        for line in lines[1000:]:
            line[1:] = [str(float(v) + 1000) for v in line[1:]]

    csv = write_series(tmp_path / "shifted.csv", edit=shift_the_test_part)
    series = data.load_series(config_for(csv), None)
    train = series.values[: int(1200 * 0.7)]
    np.testing.assert_allclose(series.mean, train.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(series.std, train.std(axis=0), rtol=1e-5)
    assert series.mean.max() < 20  # the shifted rows did not leak in
    model = build_model({**config_for(csv), "units": 4}, series)
    np.testing.assert_allclose(np.ravel(model.get_layer("standardize").mean), series.mean, rtol=1e-6)


def test_splits_are_chronological_and_windows_stay_inside(series_csv):
    config = config_for(series_csv)
    series = data.load_series(config, None)
    assert series.bounds(24) == {"train": (0, 840), "val": (816, 960), "test": (936, 1200)}
    train_starts = windows.window_starts(series, "train", config)
    assert train_starts.max() + 24 + 12 <= 840  # training targets never reach validation rows
    test_starts = windows.window_starts(series, "test", config)
    assert test_starts.min() + 24 == 960  # the first test target is the first test row
    history, future = windows.windows(series, "test", config)
    np.testing.assert_array_equal(history[0], series.values[936:960])
    np.testing.assert_array_equal(future[-1], series.values[-12:])


@pytest.mark.slow
def test_export_takes_and_returns_raw_units(run_dir, tmp_path):
    path = forecasting.main(["export", "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")])
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    model = runs.load_model(run_dir)
    history = np.random.default_rng(1).normal(10, 2, size=(3, 24, 3)).astype("float32")
    served = run_savedmodel_in_subprocess(path, {"history": history})
    assert served["forecast"].shape == (3, 12, 3)
    np.testing.assert_allclose(served["forecast"], model.predict(history, verbose=0), atol=1e-4)
    # Raw units: shifting the history by 100 shifts the forecast by about 100.
    shifted = run_savedmodel_in_subprocess(path, {"history": history + 100})
    assert np.mean(shifted["forecast"] - served["forecast"]) == pytest.approx(100, rel=0.05)

    history[1, 5, 2] = np.nan
    with pytest.raises(RuntimeError, match="history holds NaN or Inf"):
        run_savedmodel_in_subprocess(path, {"history": history})


@pytest.mark.slow
def test_predict_continues_the_timestamps(run_dir, series_csv, tmp_path, capsys):
    forecast = forecasting.main(["predict", "--model", str(run_dir), str(series_csv)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "date,load,temp,OT"
    assert lines[1].startswith("2020-02-20 00:00:00") and len(lines) == 13  # the row after the last
    assert forecast.shape == (12, 3)
    out = tmp_path / "forecast.csv"
    forecasting.main(["predict", "--model", str(run_dir / "model.keras"), str(series_csv), "--output", str(out)])
    assert out.read_text().splitlines() == lines


@pytest.mark.slow
def test_autoregressive_decoder_with_one_target(series_csv, tmp_path):
    run_dir = tmp_path / "ar"
    args = [
        "train",
        "--dataset",
        str(series_csv),
        "--run-dir",
        str(run_dir),
        "--epochs",
        "1",
        "--decoder",
        "autoregressive",
        "--cell",
        "peephole",
        "--targets",
        "OT",
        "--limit",
        "64",
        *TINY,
    ]
    forecasting.main(args)
    model = runs.load_model(run_dir)
    assert model.output_shape == (None, 12, 1)
    assert json.loads((run_dir / "config.json").read_text())["decoder"] == "autoregressive"


def test_baselines():
    history = np.arange(2 * 8 * 1, dtype=float).reshape(2, 8, 1)
    np.testing.assert_array_equal(baselines.persistence(history, [0], 3)[:, :, 0], [[7, 7, 7], [15, 15, 15]])
    np.testing.assert_array_equal(baselines.seasonal_naive(history, [0], 5, season=4)[0, :, 0], [4, 5, 6, 7, 4])
    # An exactly linear continuation is what the linear baseline learns.
    rng = np.random.default_rng(0)
    slopes = rng.normal(size=(50, 1, 2))
    steps = np.arange(12)[None, :, None]
    series = slopes * steps + rng.normal(size=(50, 1, 2))
    weights = baselines.fit_linear(series[:, :8], series[:, 8:], [0, 1])
    np.testing.assert_allclose(baselines.linear(series[:, :8], [0, 1], weights), series[:, 8:], atol=1e-8)


def test_missing_values_are_refused_or_filled(tmp_path, capsys, write_series):
    def blank(lines):
        lines[100][2] = ""
        lines[101][2] = "NaN"

    csv = write_series(tmp_path / "gaps.csv", edit=blank)
    err = error_of(["train", "--dataset", str(csv), "--run-dir", str(tmp_path / "r")], capsys)
    assert "2 missing value(s), first at line 102 column 'temp'" in err and "--fill interpolate" in err
    for fill in ("interpolate", "ffill"):
        series = data.load_series(config_for(csv, fill=fill), None)
        assert not np.isnan(series.values).any()
    filled = data.load_series(config_for(csv, fill="ffill"), None).values
    assert filled[100, 1] == filled[99, 1] and filled[101, 1] == filled[99, 1]


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda lines: lines.__setitem__(50, [lines[49][0], *lines[50][1:]]), "repeated time(s), first at line 52"),
        (lambda lines: lines.insert(10, list(lines.pop(30))), "times go backwards at line 13"),
        (lambda lines: [line.__setitem__(3, "7") for line in lines], "'OT' are constant in the training split"),
        (lambda lines: lines[7].__setitem__(1, "abc"), "line 9, column 'load': 'abc' is not a number"),
        (lambda lines: lines.__setitem__(7, lines[7][:2]), "line 9: 2 fields where the header has 4"),
    ],
    ids=["duplicate", "backwards", "constant", "not-a-number", "short-line"],
)
def test_bad_series_get_one_line_errors(tmp_path, capsys, edit, message, write_series):
    csv = write_series(tmp_path / "bad.csv", edit=edit)
    assert message in error_of(["train", "--dataset", str(csv), "--run-dir", str(tmp_path / "r")], capsys)


def test_duplicates_can_be_dropped(tmp_path, write_series):
    csv = write_series(tmp_path / "dup.csv", edit=lambda lines: lines.insert(51, list(lines[50])))
    series = data.load_series(config_for(csv, drop_duplicates=True), None)
    assert len(series.values) == 1200


def test_wrong_columns_and_short_series(tmp_path, capsys, write_series):
    csv = write_series(tmp_path / "s.csv")
    err = error_of(["train", "--dataset", str(csv), "--targets", "oil", "--run-dir", str(tmp_path / "r")], capsys)
    assert "no column 'oil'" in err and "columns are: load, temp, OT" in err
    short = write_series(tmp_path / "short.csv", rows=60)
    err = error_of(["train", "--dataset", str(short), "--run-dir", str(tmp_path / "r2"), *TINY], capsys)
    assert "fewer than lookback + horizon = 36" in err
    err = error_of(["train", "--dataset", str(tmp_path / "none.csv"), "--run-dir", str(tmp_path / "r3")], capsys)
    assert "no such file" in err
    err = error_of(["train", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "r4")], capsys)
    assert "must hold ETTh1.csv" in err


@pytest.mark.skipif(not SHARED_ETTH1.exists(), reason=f"the real ETTh1 file is not at {SHARED_ETTH1}")
def test_real_etth1_splits():
    config = {**forecasting.DEFAULTS, "limit": None, "seed": 0}
    series = data.load_series(config, SHARED_ETTH1.parent)
    assert series.features == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert len(series.values) == 17420
    assert series.bounds(96) == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    assert len(windows.window_starts(series, "test", config)) == 2785  # the papers' test set size
