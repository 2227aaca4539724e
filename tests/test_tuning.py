"""Tiny KerasTuner searches for each app: they complete, resume, record failures,
write their outputs, and run distributed with a chief and two workers."""

import itertools
import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from seqapps.layers import CELLS
from seqapps.tuning import __main__ as tuning_main
from seqapps.tuning import hypermodel
from seqapps.tuning.__main__ import main as tune

TINY_SENTIMENT = [
    "--set",
    "units=8",
    "--set",
    "embedding_dim=8",
    "--set",
    "sequence_length=16",
    "--set",
    "batch_size=16",
    "--set",
    "layers=1",
    "--max-epochs",
    "1",
    "--verbose",
    "0",
]


@pytest.fixture(scope="module")
def imdb_dir(tmp_path_factory, make_imdb):
    return make_imdb(tmp_path_factory.mktemp("imdb"), per_class=(16, 4))


def search(imdb_dir, directory, *more):
    return tune(
        [
            "sentiment",
            "--data-dir",
            str(imdb_dir),
            "--directory",
            str(directory),
            "--tuner",
            "random",
            *TINY_SENTIMENT,
            *more,
        ]
    )


def trial_records(project):
    return {p.parent.name: json.loads(p.read_text()) for p in Path(project).glob("trial_*/seqapps_trial.json")}


@pytest.mark.slow
def test_sentiment_search_writes_its_outputs(imdb_dir, tmp_path):
    summary = search(imdb_dir, tmp_path, "--max-trials", "2")
    project = tmp_path / "sentiment"
    best = json.loads((project / "best_hyperparameters.json").read_text())
    assert best["objective"] == "val_accuracy" and best["trial"] == summary["trial"]
    assert best["hyperparameters"]["cell"] in CELLS  # the search covers every cell
    assert best["hyperparameters"]["units"] == 8  # fixed with --set
    table = (project / "trials.md").read_text().splitlines()
    assert len([line for line in table if line.startswith("| ") and "COMPLETED" in line]) == 2
    assert (project / "trials.png").is_file()
    records = trial_records(project)
    assert len(records) == 2 and all(r["status"] == "COMPLETED" and r["epochs"] == 1 for r in records.values())


@pytest.mark.slow
def test_interrupted_search_resumes_and_finishes(imdb_dir, tmp_path, monkeypatch):
    fit = hypermodel.AppHyperModel.fit
    calls = []

    def interrupt_second_trial(self, hp, model, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fit(self, hp, model, **kwargs)

    monkeypatch.setattr(hypermodel.AppHyperModel, "fit", interrupt_second_trial)
    with pytest.raises(KeyboardInterrupt):
        search(imdb_dir, tmp_path, "--max-trials", "3")
    first = trial_records(tmp_path / "sentiment")
    assert list(first) == ["trial_0"]

    monkeypatch.setattr(hypermodel.AppHyperModel, "fit", fit)
    search(imdb_dir, tmp_path, "--max-trials", "3")
    records = trial_records(tmp_path / "sentiment")
    assert sum(r["status"] == "COMPLETED" for r in records.values()) == 3
    assert records["trial_0"] == first["trial_0"]  # the finished trial was not run again


@pytest.mark.slow
def test_failed_trial_is_recorded_and_the_search_goes_on(imdb_dir, tmp_path, monkeypatch):
    fit = hypermodel.AppHyperModel.fit
    calls = []

    def fail_first_trial(self, hp, model, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("simulated out of memory")
        return fit(self, hp, model, **kwargs)

    monkeypatch.setattr(hypermodel.AppHyperModel, "fit", fail_first_trial)
    search(imdb_dir, tmp_path, "--max-trials", "3")
    statuses = sorted(r["status"] for r in trial_records(tmp_path / "sentiment").values())
    assert statuses == ["COMPLETED", "COMPLETED", "FAILED"]
    assert "FAILED" in (tmp_path / "sentiment" / "trials.md").read_text()


def test_nan_loss_fails_the_trial():
    import keras_tuner

    with pytest.raises(keras_tuner.errors.FailedTrialError, match="nan"):
        hypermodel.FailOnNaN().on_batch_end(3, {"loss": float("nan")})
    hypermodel.FailOnNaN().on_batch_end(3, {"loss": 0.5})


@pytest.mark.slow
def test_forecasting_search_tunes_the_lookback(tmp_path, write_series):
    csv = write_series(tmp_path / "sines.csv")
    fixed = ["horizon=12", "segment=6", "units=8", "layers=1", "batch_size=64", "cell=gru", "learning_rate=0.001"]
    summary = tune(
        ["forecasting", "--directory", str(tmp_path), "--tuner", "random", "--max-trials", "4", "--max-epochs", "1"]
        + ["--verbose", "0", "--set", f"dataset={csv}", *[arg for value in fixed for arg in ("--set", value)]]
    )
    assert summary["objective"] == "val_loss"
    trials = [json.loads(p.read_text()) for p in (tmp_path / "forecasting").glob("trial_*/trial.json")]
    lookbacks = [trial["hyperparameters"]["values"]["lookback"] for trial in trials]
    # Around the default lookback (96), in whole segments; more than one of them tried.
    assert len(trials) == 4 and set(lookbacks) <= {48, 96, 192} and len(set(lookbacks)) > 1
    assert all(np.isfinite(trial["score"]) for trial in trials)


@pytest.mark.slow
def test_a_quantile_forecaster_is_tuned_on_its_validation_crps(tmp_path, write_series):
    csv = write_series(tmp_path / "sines.csv")
    fixed = ["horizon=12", "segment=6", "units=8", "layers=1", "batch_size=64", "quantiles=0.1,0.9"]
    summary = tune(
        ["forecasting", "--directory", str(tmp_path), "--tuner", "random", "--max-trials", "2", "--max-epochs", "1"]
        + ["--verbose", "0", "--set", f"dataset={csv}", *[arg for value in fixed for arg in ("--set", value)]]
        + ["--objective", "val_quantiles_crps"]
    )
    assert summary["objective"] == "val_quantiles_crps" and summary["direction"] == "min"
    trials = [json.loads(p.read_text()) for p in (tmp_path / "forecasting").glob("trial_*/trial.json")]
    for trial in trials:
        crps = trial["metrics"]["metrics"]["val_quantiles_crps"]["observations"][0]["value"][0]
        assert trial["score"] == pytest.approx(crps) and np.isfinite(crps)


TINY_FORECASTER = ["horizon=12", "segment=6", "units=8", "batch_size=64"]


def forecasting_search(directory, csv, *more, sets=()):
    """A tiny forecasting search; `sets`: more --set NAME=VALUE."""
    sets = [arg for value in [f"dataset={csv}", *TINY_FORECASTER, *sets] for arg in ("--set", value)]
    return tune(["forecasting", "--directory", str(directory), "--verbose", "0", *sets, *more])


def scored_by_distance_from_the_defaults(monkeypatch):
    """Trials skip training: each has one epoch, whose val_loss is 1 plus the trial's
    distance from the defaults, seen by the tuner's callbacks as after a real epoch."""
    import keras

    from seqapps.apps import forecasting

    defaults = forecasting.DEFAULTS

    def fit(self, hp, model, **kwargs):
        values = self.config(hp)
        distance = sum(
            abs(values[name] - defaults[name]) if isinstance(defaults[name], float) else values[name] != defaults[name]
            for name in ("cell", "layers", "dropout", "recurrent_dropout", "learning_rate", "lr_decay", "adam_beta_1")
        )
        logs = {"loss": 1.0, "val_loss": 1.0 + distance}
        history = keras.callbacks.History()
        callbacks = keras.callbacks.CallbackList([*kwargs["callbacks"], history], model=model)
        callbacks.on_train_begin()
        callbacks.on_epoch_end(0, logs)
        callbacks.on_train_end()
        return history

    monkeypatch.setattr(hypermodel.AppHyperModel, "fit", fit)


def tuned_defaults():
    """The forecasting app's defaults of its tuned hyperparameters that TINY_FORECASTER leaves free."""
    from seqapps.apps import forecasting

    names = ("cell", "layers", "dropout", "recurrent_dropout", "learning_rate", "lr_decay", "adam_beta_1")
    return {name: forecasting.DEFAULTS[name] for name in names} | {"lookback": 96}


@pytest.mark.parametrize("tuner", ["hyperband", "bayesian"])
def test_the_defaults_are_the_first_trial_and_win_where_all_else_is_worse(tmp_path, write_series, monkeypatch, tuner):
    scored_by_distance_from_the_defaults(monkeypatch)
    summary = forecasting_search(
        tmp_path, write_series(tmp_path / "sines.csv"), "--tuner", tuner, "--max-trials", "4", "--max-epochs", "3"
    )
    trials = sorted((tmp_path / "forecasting").glob("trial_*/trial.json"))
    first = json.loads(trials[0].read_text())["hyperparameters"]["values"]
    assert {name: first[name] for name in tuned_defaults()} == tuned_defaults()
    if tuner == "hyperband":  # the defaults train as long as any trial, not for a first bracket's few epochs
        assert first["tuner/epochs"] == 3
    assert len(trials) > 1
    assert summary["best_is_defaults"] and summary["trial"] == summary["defaults"]["trial"]
    assert {name: summary["hyperparameters"][name] for name in tuned_defaults()} == tuned_defaults()
    assert "The defaults (trial 0" in (tmp_path / "forecasting" / "trials.md").read_text()


def test_the_budget_stops_the_search_between_trials_across_resumes(tmp_path, write_series, monkeypatch):
    scored_by_distance_from_the_defaults(monkeypatch)
    csv = write_series(tmp_path / "sines.csv")
    search_ = ["--tuner", "random", "--max-trials", "5", "--budget-minutes", "0.0001"]  # less than a trial
    forecasting_search(tmp_path, csv, *search_)
    assert len(trial_records(tmp_path / "forecasting")) == 1
    forecasting_search(tmp_path, csv, *search_)  # resumed: the budget is spent already
    assert len(trial_records(tmp_path / "forecasting")) == 1
    summary = forecasting_search(tmp_path, csv, "--tuner", "random", "--max-trials", "3")  # no budget: it goes on
    assert len(trial_records(tmp_path / "forecasting")) == 3
    assert summary["best_is_defaults"]  # random search starts from the defaults too
    assert {name: summary["hyperparameters"][name] for name in tuned_defaults()} == tuned_defaults()


def test_the_budget_stops_the_running_trial_and_its_further_executions(tmp_path, write_series):
    search_ = ["--tuner", "random", "--max-trials", "3", "--max-epochs", "4", "--executions-per-trial", "2"]
    search_ += ["--budget-minutes", "0.0001"]  # 6 ms: spent during the first batch
    summary = forecasting_search(tmp_path, write_series(tmp_path / "sines.csv"), *search_, sets=["lookback=48"])
    (record,) = trial_records(tmp_path / "forecasting").values()
    # One epoch of at most 4 (early stopping needs two), one execution of 2, and the search ended there.
    assert record["stopped_by_budget"] and record["epochs"] == 1 and record["seeds"] == [1337]
    assert summary["score"] == pytest.approx(record["execution_scores"][0]) and np.isfinite(summary["score"])
    assert "| COMPLETED (budget) |" in (tmp_path / "forecasting" / "trials.md").read_text()


def test_no_trial_starts_with_less_budget_left_than_the_shortest_trial_took(tmp_path, monkeypatch):
    import keras_tuner

    space = keras_tuner.HyperParameters()
    space.Float("x", 0.0, 1.0, default=0.5)
    oracle_class = type("Oracle", (tuning_main.DefaultsFirst, keras_tuner.oracles.RandomSearchOracle), {})
    objective = keras_tuner.Objective("val_loss", "min")
    oracle = oracle_class(objective=objective, hyperparameters=space, max_trials=10, budget_minutes=1)
    oracle._set_project_dir(str(tmp_path), "search")
    now = [0.0]
    monkeypatch.setattr(tuning_main, "time", types.SimpleNamespace(time=lambda: now[0]))

    def trial_of(seconds, status):
        trial = oracle.create_trial("tuner0")
        if trial.status == "RUNNING":
            now[0] += seconds
            oracle.update_trial(trial.trial_id, {"val_loss": 1.0})
            trial.status = status
            oracle.end_trial(trial)
        return trial.status

    assert trial_of(2, "FAILED") == "FAILED"  # a failure's seconds are no trial's length
    assert trial_of(30, "COMPLETED") == "COMPLETED"  # 28 s left: less than the 30 s trial
    assert trial_of(5, "COMPLETED") == "STOPPED"
    assert oracle.spent_seconds == 32 and oracle.shortest_trial_seconds == 30


def test_with_a_budget_hyperband_iterates_until_it_is_spent(tmp_path, write_series, monkeypatch):
    scored_by_distance_from_the_defaults(monkeypatch)
    seconds = itertools.count(step=1.0)  # the search's clock: a second a reading, so each trial takes a few
    monkeypatch.setattr(tuning_main, "time", types.SimpleNamespace(time=lambda: next(seconds)))
    csv = write_series(tmp_path / "sines.csv")
    one_pass = ["--tuner", "hyperband", "--max-epochs", "1"]  # one bracket of one trial
    forecasting_search(tmp_path / "unbudgeted", csv, *one_pass)
    assert len(trial_records(tmp_path / "unbudgeted" / "forecasting")) == 2  # the defaults, then one pass
    forecasting_search(tmp_path / "budgeted", csv, *one_pass, "--budget-minutes", "0.5")
    records = trial_records(tmp_path / "budgeted" / "forecasting")
    assert len(records) > 2
    oracle = json.loads((tmp_path / "budgeted" / "forecasting" / "oracle.json").read_text())
    # The budget, not Hyperband's one pass, ended it: what was left was no more than the shortest trial.
    assert oracle["spent_seconds"] >= 30 - oracle["shortest_trial_seconds"] > 0


@pytest.mark.slow
def test_a_mirrored_search_trains_each_trial_on_every_device(tmp_path, write_series):
    # Two logical CPU devices stand in for two GPUs; TensorFlow takes them only before it starts.
    start = (
        "import sys, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from seqapps.tuning.__main__ import main\n"
        "main(sys.argv[1:])\n"
    )
    sets = [f"dataset={write_series(tmp_path / 'sines.csv')}", *TINY_FORECASTER, "lookback=48"]
    command = [sys.executable, "-c", start, "forecasting", "--directory", str(tmp_path), "--distribute", "mirrored"]
    command += ["--tuner", "random", "--max-trials", "1", "--max-epochs", "1", "--verbose", "0"]
    command += [arg for value in sets for arg in ("--set", value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (record,) = trial_records(tmp_path / "forecasting").values()
    assert record["status"] == "COMPLETED" and record["replicas"] == 2


@pytest.mark.slow
def test_executions_have_their_own_seeds_and_trials_stop_early(tmp_path, write_series):
    # A learning rate of 1e-12 leaves float32 weights, and so the validation loss, as they start: patience 1 stops
    # each execution after 2 epochs.
    forecasting_search(
        tmp_path,
        write_series(tmp_path / "sines.csv"),
        *["--tuner", "random", "--max-trials", "1", "--max-epochs", "6", "--executions-per-trial", "2"],
        sets=["learning_rate=1e-12", "patience=1", "lookback=48"],
    )
    (record,) = trial_records(tmp_path / "forecasting").values()
    assert record["status"] == "COMPLETED" and record["epochs"] == 2 * 2
    assert record["seeds"] == [1337, 1338]
    first, second = record["execution_scores"]
    assert first != pytest.approx(second)  # other initial weights


def test_a_trial_model_has_the_trial_lookback(tmp_path, write_series):
    import keras_tuner

    from seqapps.apps import forecasting

    csv = write_series(tmp_path / "sines.csv")
    config = {**forecasting.DEFAULTS, "dataset": str(csv), "horizon": 12, "segment": 6, "units": 4}
    config = forecasting.APP.complete_config({**config, "seed": 0, "limit": None, "data_dir": None})
    search_model = hypermodel.AppHyperModel(forecasting.APP, config)
    for lookback in (48, 192):
        hp = keras_tuner.HyperParameters()
        hp.Fixed("lookback", lookback)
        assert search_model.build(hp).input_shape == (None, lookback, 3)


@pytest.mark.slow
def test_translation_search_tunes_cell_and_attention(tmp_path, toy_pairs, write_pairs):
    pairs = write_pairs(tmp_path / "spa-eng.zip", toy_pairs(300))
    summary = tune(
        [
            "translation",
            "--data-dir",
            str(pairs),
            "--directory",
            str(tmp_path),
            "--tuner",
            "random",
            "--max-trials",
            "2",
            "--max-epochs",
            "1",
            "--verbose",
            "0",
            "--set",
            "units=8",
            "--set",
            "embedding_dim=128",
            "--set",
            "layers=1",
            "--set",
            "batch_size=32",
        ]
    )
    assert summary["objective"] == "val_token_loss"
    assert summary["hyperparameters"]["cell"] in CELLS  # the search covers every cell
    assert summary["hyperparameters"]["attention"] in ("additive", "dot", "general")
    records = trial_records(tmp_path / "translation")
    assert len(records) == 2 and all(r["status"] == "COMPLETED" for r in records.values())


@pytest.mark.slow
def test_export_retrains_the_best_and_exports(imdb_dir, tmp_path):
    exports = tmp_path / "exports"
    summary = search(
        imdb_dir,
        tmp_path,
        "--max-trials",
        "1",
        "--set",
        "validation_fraction=0.2",
        "--export",
        "--export-dir",
        str(exports),
    )
    assert Path(summary["export"]) == exports / "1"
    config = json.loads((tmp_path / "sentiment" / "best_run" / "config.json").read_text())
    for name, value in summary["hyperparameters"].items():
        assert config[name] == value
    assert config["limit"] is None  # the full training split
    assert config["validation_fraction"] == 0.2  # an app option set for the search holds for the retraining too


@pytest.mark.parametrize(
    "args,message",
    [
        (["--max-trials", "0"], "argument --max-trials: must be a positive integer"),
        (["--tuner", "grid"], "invalid choice: 'grid'"),
        (
            [
                "--set",
                "cell=gru",
                "--set",
                "units=8",
                "--set",
                "layers=1",
                "--set",
                "bidirectional=true",
                "--set",
                "dropout=0",
                "--set",
                "recurrent_dropout=0",
                "--set",
                "learning_rate=0.001",
                "--set",
                "batch_size=8",
                "--set",
                "vocab_size=100",
                "--set",
                "embedding_dim=8",
                "--set",
                "sequence_length=8",
            ],
            "empty search space",
        ),
        (["--set", "colour=blue"], "--set colour: not a hyperparameter"),
        (["--set", "learning_rate=0"], "--set learning_rate=0: must be a positive number, got 0.0"),
        (["--set", "cell=lstn"], "--set cell=lstn: choose from lstm, "),
    ],
    ids=["max-trials-0", "unknown-tuner", "empty-space", "unknown-set", "bad-set-value", "unknown-cell"],
)
def test_invalid_options_get_one_line_errors(imdb_dir, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        tune(["sentiment", "--data-dir", str(imdb_dir), "--directory", str(tmp_path), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers(imdb_dir, tmp_path):
    command = [
        sys.executable,
        "-m",
        "seqapps.tuning",
        "sentiment",
        "--data-dir",
        str(imdb_dir),
        "--directory",
        str(tmp_path),
        "--tuner",
        "random",
        "--max-trials",
        "3",
        *TINY_SENTIMENT,
    ]
    env = {
        **os.environ,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(free_port()),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    root = Path(__file__).resolve().parents[1]
    processes = {
        tuner_id: subprocess.Popen(
            command,
            env={**env, "KERASTUNER_TUNER_ID": tuner_id},
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for tuner_id in ("chief", "tuner0", "tuner1")
    }
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=420)[0]
    finally:
        for process in processes.values():
            process.kill()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, f"{tuner_id} failed:\n{outputs[tuner_id][-3000:]}"

    project = tmp_path / "sentiment"
    records = trial_records(project)
    assert len(records) == 3  # every trial ran, once: one record per trial
    assert all(r["status"] == "COMPLETED" for r in records.values())
    assert {r["tuner_id"] for r in records.values()} <= {"tuner0", "tuner1"}
    scores = {
        p.parent.name.split("_")[1]: json.loads(p.read_text())["score"] for p in project.glob("trial_*/trial.json")
    }
    best = json.loads((project / "best_hyperparameters.json").read_text())
    assert best["score"] == max(scores.values())
    assert scores[best["trial"]] == best["score"]
    assert best["verdict"] in outputs["chief"]
    assert np.isfinite(best["score"])
