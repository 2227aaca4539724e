"""The forecasting app on synthetic series with a known pattern."""

import json
import tracemalloc
from datetime import timedelta
from pathlib import Path

import keras
import numpy as np
import pytest

from seqapps.apps import forecasting, runs
from seqapps.apps.export import run_savedmodel_in_subprocess
from seqapps.apps.forecasting import baselines, commands, data, windows
from seqapps.apps.forecasting.model import SegmentRecurrentForecaster, build_model

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
    args = ["train", "--dataset", str(series_csv), "--run-dir", str(run_dir), "--epochs", "6", *TINY]
    forecasting.main([*args, "--decoder", "parallel", "--lr-decay", "0.9"])
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
    return data.complete_config({**config, **overrides})


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
    # A point model's intervals, from its validation residuals, at the levels a distribution gives.
    assert metrics["quantile_levels"] == list(forecasting.DISTRIBUTION_LEVELS)
    assert set(metrics["quantile_forecasts"]) == {"model", "seasonal_naive"}
    assert set(metrics["quantile_forecasts"]["model"]["intervals"]) == {"90%", "80%", "50%"}


@pytest.mark.slow
def test_evaluate_streams_the_test_windows(tmp_path, write_series, monkeypatch):
    """Memory stays flat in the number of test windows: evaluate cuts, forecasts and
    scores them a chunk at a time, and the chunks give the metrics of one piece."""
    width = 16
    # Long enough that the streamed windows' savings dwarf what plotting's caches add from run to run.
    csv = write_series(tmp_path / "wide.csv", rows=20000, columns=tuple(f"v{k}" for k in range(width)))
    run_dir = tmp_path / "run"
    train = ["train", "--dataset", str(csv), "--run-dir", str(run_dir), "--epochs", "1", "--limit", "64"]
    forecasting.main(train + TINY)
    whole = forecasting.main(["evaluate", "--run-dir", str(run_dir)])
    monkeypatch.setattr(windows, "CHUNK_ROWS", 100 * width)  # 100 windows a chunk

    def evaluate_traced(limit):
        tracemalloc.start()
        metrics = forecasting.main(["evaluate", "--run-dir", str(run_dir), "--limit", str(limit)])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return metrics, peak

    evaluate_traced(100)  # first calls at this chunk size build what later calls reuse
    _, few = evaluate_traced(100)
    chunked, many = evaluate_traced(whole["test_windows"])
    for name in ("model", "linear", "seasonal_naive"):
        assert chunked[name]["mse"] == pytest.approx(whole[name]["mse"], rel=1e-5)
        np.testing.assert_allclose(chunked[name]["per_step"]["mae"], whole[name]["per_step"]["mae"], rtol=1e-5)
    # What the extra windows' histories, futures and four forecasts would take whole:
    extra_bytes = (whole["test_windows"] - 100) * (24 + 5 * 12) * width * 4
    assert whole["test_windows"] > 3000 and many - few < extra_bytes / 4


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


def test_the_segment_left_unset_is_the_longest_that_divides_lookback_and_horizon(series_csv):
    def segment(lookback, horizon):
        return config_for(series_csv, lookback=lookback, horizon=horizon, segment=None)["segment"]

    assert [segment(96, 96), segment(96, 336), segment(30, 96), segment(720, 720), segment(7, 5)] == [24, 24, 6, 24, 1]
    assert config_for(series_csv, lookback=30, horizon=96, segment=10)["segment"] == 10  # given: kept, checked later


def test_splits_are_chronological_and_windows_stay_inside(series_csv):
    config = config_for(series_csv)
    series = data.load_series(config, None)
    assert series.bounds(24) == {"train": (0, 840), "val": (816, 960), "test": (936, 1200)}
    train_starts = windows.window_starts(series, "train", config)
    assert train_starts.max() + 24 + 12 <= 840  # training targets never reach validation rows
    test_starts = windows.window_starts(series, "test", config)
    assert test_starts.min() + 24 == 960  # the first test target is the first test row
    history, future = windows.windows(series, test_starts, config)
    np.testing.assert_array_equal(history[0], series.values[936:960])
    np.testing.assert_array_equal(future[-1], series.values[-12:])
    chunks = list(windows.window_chunks(series, test_starts, config, rows=3 * 100))  # 3 targets: 100 windows a chunk
    assert [len(h) for h, _ in chunks] == [100, 100, len(history) - 200]
    np.testing.assert_array_equal(np.concatenate([h for h, _ in chunks]), history)
    np.testing.assert_array_equal(np.concatenate([f for _, f in chunks]), future)


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
def test_mixed_precision_trains_with_loss_scaling_and_exports_float32(series_csv, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--dataset", str(series_csv), "--run-dir", str(run_dir), "--epochs", "1", *TINY]
    forecasting.main([*args, "--mixed-precision", "float16"])
    assert keras.mixed_precision.global_policy().name == "float32"  # only the model was built in float16
    model = runs.load_model(run_dir)
    assert model.get_layer("forecaster").compute_dtype == "float16"
    assert model.get_layer("forecaster").variable_dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = np.random.default_rng(1).normal(10, 2, size=(3, 24, 3)).astype("float32")
    forecast = model.predict(history, verbose=0)
    assert forecast.dtype == np.float32 and np.all(np.isfinite(forecast))
    path = forecasting.main(["export", "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")])
    served = run_savedmodel_in_subprocess(path, {"history": history})["forecast"]
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, forecast, atol=1e-4)


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
    steps = np.arange(12)[None, :, None]
    series = rng.normal(size=(60, 1, 2)) * steps + rng.normal(size=(60, 1, 2))
    scale = np.array([1.0, 3.0])
    train = [(series[:25, :8], series[:25, 8:]), (series[25:50, :8], series[25:50, 8:])]  # in two chunks
    weights = baselines.fit_linear(train, [(series[50:, :8], series[50:, 8:])], [0, 1], scale)
    np.testing.assert_allclose(baselines.linear(series[:, :8], [0, 1], weights, scale), series[:, 8:], atol=1e-6)


def test_the_linear_baseline_stays_sane_on_few_collinear_windows():
    """Few windows (51) of a noisy random walk, whose 36 lagged inputs are nearly
    collinear: least squares over them fits the noise and forecasts far worse than
    persistence; the ridge fit chosen on validation stays near persistence."""
    ridge, least_squares, persistence = [], [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        values = np.cumsum(rng.normal(size=(260, 1)), axis=0) + 0.3 * rng.normal(size=(260, 1))

        def cut(start, end, values=values):
            starts = np.arange(start, end - 60 + 1)
            return np.stack([values[s : s + 36] for s in starts]), np.stack([values[s + 36 : s + 60] for s in starts])

        train, validation, (history, future) = cut(0, 110), cut(74, 170), cut(134, 260)
        scale = values[:110].std(axis=0)

        def mse(forecast, future=future, scale=scale):
            return np.mean(((forecast - future) / scale) ** 2)

        weights = baselines.fit_linear([train], [validation], [0], scale)
        ridge.append(mse(baselines.linear(history, [0], weights, scale)))
        x, y = baselines.recentred_rows(*train, [0], scale)
        least_squares.append(mse(baselines.linear(history, [0], np.linalg.lstsq(x, y, rcond=None)[0], scale)))
        persistence.append(mse(baselines.persistence(history, [0], 24)))
    assert np.mean(least_squares) > 3 * np.mean(persistence)
    assert np.mean(ridge) < 1.5 * np.mean(persistence) and np.mean(ridge) < np.mean(least_squares) / 2


def test_metrics_table_keeps_large_numbers_apart():
    metrics = {
        "model": {"mse": 0.98802372, "mae": 0.5, "mae_raw": 2.2324},
        "linear": {"mse": 4_900_000.123, "mae": 1234.5, "mae_raw": 98765432.1},
    }
    lines = commands.metrics_table(metrics, ["model", "linear"]).splitlines()
    assert lines[2].split() == ["linear", "4900000.1230", "1234.5000", "98765432.1000"]
    assert lines[1].split() == ["model", "0.9880", "0.5000", "2.2324"]
    assert len({len(line) for line in lines}) == 1  # aligned


def small_forecaster(**options):
    """A SegmentRecurrentForecaster small enough to check by hand."""
    defaults = {"lookback": 24, "horizon": 12, "segment": 6, "target_index": [0, 1], "cell": "gru", "units": 8}
    fixed = {"layers": 1, "dropout": 0.0, "recurrent_dropout": 0.0, "decoder": "parallel", "seed": 0}
    return SegmentRecurrentForecaster(**{**defaults, **fixed, **options})


def test_the_parallel_decoder_is_one_step_of_the_encoder_per_segment():
    layer = small_forecaster(horizon=36, target_index=[0, 2], cell="peephole")
    history = np.random.default_rng(0).normal(size=(5, 24, 3)).astype("float32")
    forecast = layer(history).numpy()
    assert forecast.shape == (5, 36, 2)
    # Position and channel embeddings, half of the units each; no recurrent weights but the encoder's.
    assert tuple(layer.position_embedding.shape) == (6, 4) and tuple(layer.channel_embedding.shape) == (3, 4)
    names = sorted(w.path.split("/", 1)[1] for w in layer.weights)
    assert names == sorted(
        ["position_embedding", "channel_embedding", "segment_embedding/kernel", "segment_embedding/bias"]
        + ["encoder_0/" + w.path.split("encoder_0/")[1] for w in layer.encoder[0].weights]
        + ["head/kernel", "head/bias"]
    )
    # Each output segment is one step of the encoder's layer from its final state,
    # given the segment's position and the variable's channel embedding.
    window, variable = 1, 2
    _, *states = layer.encoder[0](
        layer.embed((history[window, :, variable] - history[window, -1, variable])[None].reshape(1, 4, 6))
    )
    channel = np.repeat(layer.channel_embedding.numpy()[variable : variable + 1], 6, axis=0)
    queries = np.concatenate([layer.position_embedding.numpy(), channel], axis=-1)[:, None, :]
    steps, *_ = layer.encoder[0](queries, initial_state=[np.repeat(state, 6, axis=0) for state in states])
    expected = layer.head(steps).numpy().reshape(-1) + history[window, -1, variable]
    np.testing.assert_allclose(forecast[window, :, 1], expected, atol=1e-5)  # target_index [0, 2]
    # Channel-independent: another variable's history changes nothing, and each
    # window's forecast is its own.
    changed = history.copy()
    changed[:, :, 1] += np.random.default_rng(1).normal(size=(5, 24))
    np.testing.assert_allclose(layer(changed).numpy(), forecast, atol=1e-6)
    np.testing.assert_allclose(layer(history[::-1]).numpy(), forecast[::-1], atol=1e-6)
    # Each output segment comes from its own position embedding.
    embedding = layer.position_embedding.numpy()
    embedding[2] += 1
    layer.position_embedding.assign(embedding)
    moved = layer(history).numpy() != forecast
    assert moved[:, 12:18].all() and not moved[:, :12].any() and not moved[:, 18:].any()
    restored = SegmentRecurrentForecaster.from_config(layer.get_config())
    restored(history)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(restored(history).numpy(), layer(history).numpy(), atol=1e-6)


@pytest.mark.parametrize("normalization", ["last", "revin"])
def test_each_window_is_normalised_on_its_own(normalization):
    layer = small_forecaster(normalization=normalization)
    rng = np.random.default_rng(0)
    history = rng.normal(size=(4, 24, 2)).astype("float32")
    forecast = layer(history).numpy()
    level = rng.normal(size=(4, 1, 2)).astype("float32") * 10
    # Both follow each window's level; only RevIN follows its scale as well.
    np.testing.assert_allclose(layer(history + level).numpy(), forecast + level, atol=1e-4)
    scaled = layer(history * 3).numpy()
    if normalization == "revin":
        np.testing.assert_allclose(scaled, forecast * 3, atol=1e-4)
    else:
        assert np.abs(scaled - forecast * 3).max() > 1e-2
    assert SegmentRecurrentForecaster.from_config(layer.get_config()).normalization == normalization


def test_the_learning_rate_warms_up_holds_then_decays_by_epoch(series_csv):
    from seqapps.apps.forecasting.model import learning_rate

    config = config_for(series_csv, epochs=7, learning_rate=1e-3, lr_decay=0.8, lr_warmup=0.04)
    series = data.load_series(config, None)
    steps = -(-len(windows.window_starts(series, "train", config)) // config["batch_size"])
    schedule = learning_rate(config, series)
    by_epoch = [float(schedule(steps * epoch + 1)) for epoch in range(7)]  # a step inside each epoch
    expected = [4e-5, 1e-3, 1e-3, 1e-3, 8e-4, 6.4e-4, 5.12e-4]  # SegRNN's code, in effect
    np.testing.assert_allclose(by_epoch, expected, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(steps - 1)), 4e-5, rtol=1e-6)  # the first epoch's last step
    assert learning_rate({**config, "lr_decay": 1.0, "lr_warmup": 1.0}, series) == 1e-3  # constant: no schedule


def test_adam_takes_segrnns_beta_1_and_epsilon(series_csv):
    config = config_for(series_csv, adam_beta_1=0.95, adam_epsilon=1e-8, units=8, epochs=1)
    optimizer = build_model(config, data.load_series(config, None)).optimizer
    assert (optimizer.beta_1, optimizer.epsilon) == (0.95, 1e-8)


def test_the_mae_loss_is_standardised_and_the_mse_still_measured(series_csv):
    config = {**config_for(series_csv), "units": 4, "loss": "mae"}
    series = data.load_series(config, None)
    model = build_model(config, series)
    history = series.values[None, :24].astype("float32")
    target = series.values[None, 24:36].astype("float32")
    forecast = model.predict(history, verbose=0)
    scaled = (target - forecast) / series.std
    results = model.evaluate(history, target, verbose=0, return_dict=True)
    np.testing.assert_allclose(results["loss"], np.abs(scaled).mean(), rtol=1e-4)
    np.testing.assert_allclose(results["standardized_mse"], np.square(scaled).mean(), rtol=1e-4)


def test_missing_values_are_refused_or_filled_from_the_past_only(tmp_path, capsys, write_series):
    origin = 1105  # the forecast origin of a test window whose history ends inside a gap

    def blank(lines):
        lines[100][2] = ""
        lines[101][2] = "NaN"
        for line in lines[1100:1110]:
            line[1] = ""

    def blank_and_change_the_future(lines):
        blank(lines)
        for line in lines[origin:]:
            line[1:] = [f"{float(v) + 5:.5f}" if v else v for v in line[1:]]

    csv = write_series(tmp_path / "gaps.csv", edit=blank)
    err = error_of(["train", "--dataset", str(csv), "--run-dir", str(tmp_path / "r")], capsys)
    assert "12 missing value(s), first at line 102 column 'temp'" in err and "--fill ffill" in err
    config = config_for(csv, fill="ffill")
    filled = data.load_series(config, None).values
    assert not np.isnan(filled).any()
    assert filled[100, 1] == filled[101, 1] == filled[99, 1] and (filled[1100:1110, 0] == filled[1099, 0]).all()
    assert origin - config["lookback"] in windows.window_starts(data.load_series(config, None), "test", config)
    changed = write_series(tmp_path / "changed.csv", edit=blank_and_change_the_future)
    refilled = data.load_series(config_for(changed, fill="ffill"), None).values
    np.testing.assert_array_equal(refilled[:origin], filled[:origin])  # nothing before the origin moved
    assert not np.allclose(refilled[origin:], filled[origin:])

    lead = write_series(tmp_path / "lead.csv", edit=lambda lines: lines[0].__setitem__(3, ""))
    with pytest.raises(data.UsageError, match=r"column 'OT' starts with missing values \(first value at line 3\)"):
        data.load_series(config_for(lead, fill="ffill"), None)
    with pytest.raises(data.UsageError, match="--fill interpolate is no longer offered"):  # a saved config of 0.2
        data.load_series(config_for(csv, fill="interpolate"), None)


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
    args = ["train", "--dataset", str(csv), "--lookback", "30", "--segment", "12", "--run-dir", str(tmp_path / "r5")]
    assert "--segment 12 must divide --lookback 30" in error_of(args, capsys) and not (tmp_path / "r5").exists()
    err = error_of(["train", "--dataset", str(tmp_path / "none.csv"), "--run-dir", str(tmp_path / "r3")], capsys)
    assert "no such file" in err
    err = error_of(["train", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "r4")], capsys)
    assert "must hold ETTh1.csv" in err


@pytest.mark.skipif(not SHARED_ETTH1.exists(), reason=f"the real ETTh1 file is not at {SHARED_ETTH1}")
def test_real_etth1_splits():
    config = data.complete_config({**forecasting.DEFAULTS, "limit": None, "seed": 0})
    series = data.load_series(config, SHARED_ETTH1.parent)
    assert series.features == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert len(series.values) == 17420
    assert series.bounds(96) == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    assert len(windows.window_starts(series, "test", config)) == 2785  # the papers' test set size


ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


@pytest.mark.parametrize(
    "dataset,rows,step,ends,season",
    [
        ("etth2", 17420, timedelta(hours=1), (8640, 11520, 14400), 24),
        ("ettm1", 69680, timedelta(minutes=15), (34560, 46080, 57600), 96),
        # The published files' row counts; 5165, 10444 and 1422 test windows, as the papers count them.
        ("weather", 52696, timedelta(minutes=10), (36887, 42157, 52696), 144),
        ("electricity", 26304, timedelta(hours=1), (18412, 21044, 26304), 24),
        ("exchange_rate", 7588, timedelta(days=1), (5311, 6071, 7588), 7),
    ],
)
def test_named_datasets_have_the_standard_splits(tmp_path, write_series, dataset, rows, step, ends, season):
    benchmark = data.DATASETS[dataset]
    write_series(tmp_path / benchmark.filename, rows=rows, columns=ETT_COLUMNS, step=step)
    config = data.complete_config({**forecasting.DEFAULTS, "dataset": dataset, "limit": None, "seed": 0})
    assert (config["lookback"], config["horizon"], config["segment"], config["season"]) == (96, 96, 24, season)
    series = data.load_series(config, tmp_path)
    assert series.split_ends == ends
    # Validation and test windows start a lookback early; every target row of a split is forecast.
    assert series.bounds(96) == {"train": (0, ends[0]), "val": (ends[0] - 96, ends[1]), "test": (ends[1] - 96, ends[2])}
    assert len(windows.window_starts(series, "test", config)) == ends[2] - ends[1] - 96 + 1
    assert len(windows.window_starts(series, "val", config)) == ends[1] - ends[0] - 96 + 1


def test_illness_takes_its_weekly_defaults(tmp_path, write_series, capsys):
    write_series(tmp_path / "national_illness.csv", rows=966, columns=ETT_COLUMNS, step=timedelta(weeks=1))
    run_dir = tmp_path / "run"
    args = ["train", "--dataset", "illness", "--data-dir", str(tmp_path), "--run-dir", str(run_dir)]
    forecasting.main([*args, "--units", "4", "--epochs", "1", "--verbose", "0"])
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["lookback"], config["horizon"], config["segment"], config["season"]) == (36, 24, 12, 52)
    assert config["batch_size"] == 16  # its own: 676 training rows are 3 batches of the ETT files' 256
    assert runs.load_model(run_dir).input_shape == (None, 36, 7)
    assert data.load_series(config, tmp_path).split_ends == (676, 773, 966)
    # The season (52 weeks) is longer than the lookback: the baseline reaches further back.
    metrics = forecasting.main(["evaluate", "--run-dir", str(run_dir)])
    assert np.isfinite(metrics["seasonal_naive"]["mse"]) and metrics["test_windows"] == 966 - 773 - 24 + 1


def test_a_dataset_sets_the_batch_size_unless_it_is_given():
    def batch_size(dataset, given=None):
        return data.complete_config({**forecasting.DEFAULTS, "dataset": dataset, "batch_size": given})["batch_size"]

    assert (batch_size("etth1"), batch_size("illness"), batch_size("my.csv")) == (256, 16, 256)
    assert batch_size("illness", given=8) == 8


def test_named_datasets_say_where_to_get_them(tmp_path, write_series, capsys):
    err = error_of(["train", "--dataset", "traffic", "--run-dir", str(tmp_path / "r")], capsys)
    assert "get traffic.csv from" in err and "github.com/thuml" in err and "--data-dir" in err
    err = error_of(
        ["train", "--dataset", "ettm2", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "r")], capsys
    )
    assert "must hold ETTm2.csv" in err
    write_series(tmp_path / "ETTh2.csv", rows=5000, columns=ETT_COLUMNS)
    err = error_of(
        ["train", "--dataset", "etth2", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "r")], capsys
    )
    assert "5000 rows, fewer than the 20 months (14400 rows) of --dataset etth2" in err


@pytest.mark.parametrize(
    "written_format,first,detected",
    [
        ("%Y/%-m/%-d %-H:%M", "2020/1/1 0:00", "%Y/%m/%d %H:%M"),  # as exchange_rate.csv writes them
        ("%Y-%m-%dT%H:%M", "2020-01-01T00:00", None),  # ISO 8601
        ("%Y-%m-%d", "2020-01-01", None),
        ("%d.%m.%Y %H:%M:%S", "01.01.2020 00:00:00", "%d.%m.%Y %H:%M:%S"),  # Jena climate
        ("%d/%m/%Y %H:%M", "01/01/2020 00:00", "%d/%m/%Y %H:%M"),  # day first: later days pass 12
    ],
)
def test_common_time_formats_are_detected(tmp_path, write_series, written_format, first, detected):
    csv = write_series(tmp_path / "s.csv", step=timedelta(days=1), time_format=written_format)
    assert csv.read_text().splitlines()[1].startswith(first + ",")
    series = data.load_series(config_for(csv), None)
    assert series.time_format == detected and series.summary()["time_step_seconds"] == 86400


def test_ambiguous_or_unreadable_times_are_refused_with_the_fix(tmp_path, write_series, capsys):
    # Twelve days of January: 01/02/2020 reads as 1 February or as 2 January.
    ambiguous = write_series(tmp_path / "a.csv", rows=12, step=timedelta(days=1), time_format="%m/%d/%Y")
    with pytest.raises(data.UsageError, match="read as %d/%m/%Y or as %m/%d/%Y; pass the one meant as --time-format"):
        data.read_table(ambiguous)
    times, *_, time_format = data.read_table(ambiguous, time_format="%m/%d/%Y")
    assert time_format == "%m/%d/%Y" and times[1].day == 2

    def mix(lines):
        lines[5][0] = lines[5][0][:-3]  # 2020-01-01 05:00 among 2020-01-01 05:00:00

    mixed = write_series(tmp_path / "mixed.csv", time_format="%Y/%m/%d %H:%M:%S", edit=mix)
    with pytest.raises(data.UsageError, match="line 7: '2020/01/01 05:00' is not in the time format of line 2"):
        data.read_table(mixed)
    odd = write_series(tmp_path / "odd.csv", time_format="%d-%b-%Y %H:%M")
    err = error_of(["train", "--dataset", str(odd), "--run-dir", str(tmp_path / "r")], capsys)
    assert "line 2: cannot read '01-Jan-2020 00:00' as a time" in err and "--time-format" in err
    series = data.load_series(config_for(odd, time_format="%d-%b-%Y %H:%M"), None)
    assert len(series.values) == 1200
