"""Quantile and distribution forecasts (`forecasting train --quantiles`,
`--distribution normal`): the losses, the scores, the model, and the run through
evaluate, predict and export."""

import json

import numpy as np
import pytest
from scipy.stats import norm, t

from seqapps.apps import forecasting, runs
from seqapps.apps.export import run_savedmodel_in_subprocess
from seqapps.apps.forecasting import data
from seqapps.apps.forecasting.commands import IntervalScores
from seqapps.apps.forecasting.model import (
    StandardizedNLL,
    StandardizedPinballLoss,
    build_model,
    distribution_quantiles,
)

TINY = ["--lookback", "24", "--horizon", "12", "--segment", "6", "--units", "16", "--batch-size", "32"]


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory, write_series):
    return write_series(tmp_path_factory.mktemp("series") / "sines.csv")


@pytest.fixture(scope="module")
def run_dir(series_csv, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "quantiles"
    args = ["train", "--dataset", str(series_csv), "--run-dir", str(run_dir), "--epochs", "4", "--verbose", "0"]
    forecasting.main([*args, *TINY, "--quantiles", "0.9,0.1"])
    return run_dir


def test_levels_are_read_sorted_with_the_median():
    assert forecasting.quantile_levels("0.9, 0.1") == [0.1, 0.5, 0.9]
    assert forecasting.quantile_levels("0.5") == [0.5]


def test_pinball_loss_and_crps_by_hand():
    y_true = np.array([[[1.0, 10.0]]])  # (batch 1, horizon 1, targets 2)
    y_pred = np.array([[[[0.0, 14.0], [2.0, 10.0], [3.0, 12.0]]]])  # levels 0.1, 0.5, 0.9
    scale = [1.0, 2.0]
    # Errors y - y_q in standard deviations: target 0: 1, -1, -2; target 1: -2, 0, -1.
    by_hand = {
        (0.1, 1.0): 0.1,
        (0.5, -1.0): 0.5,
        (0.9, -2.0): 0.2,
        (0.1, -2.0): 1.8,
        (0.5, 0.0): 0.0,
        (0.9, -1.0): 0.1,
    }
    expected = np.mean(list(by_hand.values()))
    loss = StandardizedPinballLoss(scale, [0.1, 0.5, 0.9])(y_true, y_pred)
    assert float(loss) == pytest.approx(expected)
    scores = IntervalScores(np.array(scale), [0.1, 0.5, 0.9])
    scores.add(y_pred, y_true)
    metrics = scores.metrics()
    assert metrics["crps"] == pytest.approx(2 * expected)
    interval = metrics["intervals"]["80%"]
    assert interval["coverage"] == 0.5  # 1 is inside [0, 3]; 10 is not inside [14, 12]
    assert interval["width"] == pytest.approx((3.0 + (12.0 - 14.0) / 2) / 2)


def test_the_true_noise_quantiles_cover_as_often_as_they_say():
    rng = np.random.default_rng(0)
    levels = [0.05, 0.1, 0.5, 0.9, 0.95]
    mean = rng.normal(size=(4000, 6, 2))
    actual = mean + rng.normal(size=mean.shape) * np.array([1.0, 3.0])
    quantiles = mean[:, :, None, :] + norm.ppf(levels)[None, None, :, None] * np.array([1.0, 3.0])
    scores = IntervalScores(np.array([1.0, 3.0]), levels)
    for chunk in range(0, 4000, 1000):  # chunks add up as one pass would
        scores.add(quantiles[chunk : chunk + 1000], actual[chunk : chunk + 1000])
    intervals = scores.metrics()["intervals"]
    assert intervals["80%"]["coverage"] == pytest.approx(0.80, abs=0.01)
    assert intervals["90%"]["coverage"] == pytest.approx(0.90, abs=0.01)
    assert intervals["80%"]["width"] == pytest.approx(2 * norm.ppf(0.9), rel=1e-6)


def test_quantiles_never_cross_even_untrained(series_csv):
    config = {**forecasting.DEFAULTS, "dataset": str(series_csv), "data_dir": None, "limit": None, "seed": 0}
    config = forecasting.complete_config({**config, "lookback": 24, "horizon": 12, "segment": 6, "units": 16})
    for decoder in ("parallel", "direct"):
        config.update(decoder=decoder, quantiles=[0.05, 0.25, 0.5, 0.75, 0.95])
        model = build_model(config, data.load(config))
        history = np.random.default_rng(1).normal(10, 5, size=(8, 24, 3)).astype("float32")
        outputs = model.predict(history, verbose=0)
        assert outputs["quantiles"].shape == (8, 12, 5, 3)
        assert np.all(np.diff(outputs["quantiles"], axis=2) > 0)
        np.testing.assert_array_equal(outputs["forecast"], outputs["quantiles"][:, :, 2])


def test_quantiles_need_a_decoder_that_does_not_feed_back_and_exclude_a_distribution(series_csv, capsys):
    with pytest.raises(SystemExit):
        forecasting.main(["train", "--dataset", str(series_csv), "--decoder", "autoregressive", "--quantiles", "0.1"])
    assert "--quantiles needs --decoder parallel or direct" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        forecasting.main(["train", "--dataset", str(series_csv), "--quantiles", "0.1", "--distribution", "normal"])
    assert "give --quantiles or --distribution, not both" in capsys.readouterr().err


def test_negative_log_likelihoods_by_hand():
    y_true = np.array([[[1.0, 10.0]]])
    y_pred = np.array([[[[0.0, 14.0], [2.0, 4.0], [3.0, 7.5]]]])  # locations 0, 14; scales 2, 4; df 3, 7.5
    scale = [1.0, 2.0]
    normal = [norm.logpdf(1.0, 0.0, 2.0), norm.logpdf(10.0, 14.0, 4.0) + np.log(2.0)]
    loss = StandardizedNLL(scale, "normal")(y_true, y_pred[:, :, :2])
    assert float(loss) == pytest.approx(-np.mean(normal), rel=1e-6)
    student = [t.logpdf(1.0, 3.0, 0.0, 2.0), t.logpdf(10.0, 7.5, 14.0, 4.0) + np.log(2.0)]
    loss = StandardizedNLL(scale, "studentt")(y_true, y_pred)
    assert float(loss) == pytest.approx(-np.mean(student), rel=1e-5)


def test_distribution_quantiles_are_scipys():
    levels = forecasting.DISTRIBUTION_LEVELS
    distribution = np.array([[[[0.0, 14.0], [2.0, 4.0], [2.5, 30.0]]]], dtype="float32")
    normal = distribution_quantiles(distribution[:, :, :2], "normal", levels).numpy()[0, 0]
    student = distribution_quantiles(distribution, "studentt", levels).numpy()[0, 0]
    for k, (location, spread, df) in enumerate(distribution[0, 0].T):
        np.testing.assert_allclose(normal[:, k], norm.ppf(levels, location, spread), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(student[:, k], t.ppf(levels, df, location, spread), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["normal", "studentt"])
def test_a_distribution_forecast_trains_and_gives_its_quantiles_everywhere(kind, series_csv, tmp_path, capsys):
    run_dir = tmp_path / kind
    args = ["train", "--dataset", str(series_csv), "--run-dir", str(run_dir), "--epochs", "2", "--verbose", "0"]
    forecasting.main([*args, *TINY, "--distribution", kind])
    logged = json.loads((run_dir / "history.json").read_text())
    assert "val_forecast_standardized_mse" in logged  # what recipes are chosen on
    model = runs.load_model(run_dir)
    history = np.random.default_rng(1).normal(10, 2, size=(3, 24, 3)).astype("float32")
    outputs = model.predict(history, verbose=0)
    location, spread = outputs["distribution"][:, :, 0], outputs["distribution"][:, :, 1]
    np.testing.assert_array_equal(outputs["forecast"], location)
    assert np.all(spread > 0)
    levels = forecasting.DISTRIBUTION_LEVELS
    if kind == "normal":
        standard = norm.ppf(levels)[None, None, :, None]
    else:
        df = outputs["distribution"][:, :, 2]
        assert np.all(df > 2)
        standard = t.ppf(np.array(levels)[None, None, :, None], df[:, :, None])
    expected = location[:, :, None] + spread[:, :, None] * standard
    np.testing.assert_allclose(outputs["quantiles"], expected, rtol=1e-4, atol=1e-3)
    if kind == "studentt":  # the served graph finds its quantiles by bisection on betainc
        path = forecasting.main(["export", "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")])
        served = run_savedmodel_in_subprocess(path, {"history": history})
        np.testing.assert_allclose(served["quantiles"], outputs["quantiles"], atol=1e-4)
        return
    metrics = forecasting.main(["evaluate", "--run-dir", str(run_dir)])
    assert metrics["quantile_levels"] == list(levels)
    assert metrics["quantile_forecasts"]["model"]["method"] == f"quantiles of the {kind} distribution"
    assert set(metrics["quantile_forecasts"]["model"]["intervals"]) == {"90%", "80%", "50%"}
    capsys.readouterr()
    forecasting.main(["predict", "--model", str(run_dir), str(series_csv)])
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert header[4:10] == [f"load_q{q:g}" for q in levels if q != 0.5]


def test_evaluate_scores_the_quantiles_beside_empirical_ones(run_dir):
    metrics = forecasting.main(["evaluate", "--run-dir", str(run_dir)])
    assert metrics["quantile_levels"] == [0.1, 0.5, 0.9]
    scored = metrics["quantile_forecasts"]
    assert set(scored) == {"model", "model_conformal", "model_median_empirical", "seasonal_naive"}
    assert scored["model"]["method"] == "trained quantiles"
    for scores in scored.values():
        assert scores["crps"] > 0 and 0 <= scores["intervals"]["80%"]["coverage"] <= 1
        assert len(scores["intervals"]["80%"]["coverage_per_step"]) == 12
    for plot in ("fan_chart.png", "calibration.png"):
        assert (run_dir / plot).stat().st_size > 10_000
    validation = forecasting.main(["evaluate", "--run-dir", str(run_dir), "--split", "val"])
    assert validation["val_windows"] == json.loads((run_dir / "metrics_val.json").read_text())["val_windows"] > 0
    assert validation["quantile_forecasts"]["model"]["crps"] != scored["model"]["crps"]
    # Conformalized on the validation windows, the interval holds at least its share of them, and barely more.
    conformal = validation["quantile_forecasts"]["model_conformal"]["intervals"]["80%"]["coverage_per_step"]
    assert all(0.8 <= coverage <= 0.85 for coverage in conformal)
    assert (run_dir / "fan_chart_val.png").is_file() and json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_predict_and_export_give_the_quantiles_in_raw_units(run_dir, series_csv, tmp_path, capsys):
    forecasting.main(["predict", "--model", str(run_dir), str(series_csv)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "date,load,temp,OT,load_q0.1,load_q0.9,temp_q0.1,temp_q0.9,OT_q0.1,OT_q0.9"
    table = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert np.all(table[:, 3:9:2] < table[:, 0:3]) and np.all(table[:, 0:3] < table[:, 4:9:2])
    path = forecasting.main(["export", "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")])
    assert json.loads((path / "seqapps.json").read_text())["quantiles"] == [0.1, 0.5, 0.9]
    model = runs.load_model(run_dir)
    history = np.random.default_rng(1).normal(10, 2, size=(3, 24, 3)).astype("float32")
    history = np.concatenate([history, history + 100])  # raw units: a shifted history shifts the quantiles
    served = run_savedmodel_in_subprocess(path, {"history": history})
    expected = model.predict(history, verbose=0)
    assert served["quantiles"].shape == (6, 12, 3, 3)
    for name in ("forecast", "quantiles"):
        np.testing.assert_allclose(served[name], expected[name], atol=1e-4)
    assert np.mean(served["quantiles"][3:] - served["quantiles"][:3]) == pytest.approx(100, rel=0.05)
