"""Run directories: a new run never shares one, and files are written atomically."""

import pytest

from seqapps.apps import runs
from seqapps.apps.cli import UsageError


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs.time, "strftime", lambda _: "20261130-062042")
    made = [runs.start_run(None, "sentiment", {"seed": seed}, {}) for seed in range(3)]
    assert [path.name for path in made] == ["20261130-062042", "20261130-062042-2", "20261130-062042-3"]
    assert [runs.load_json(path / "config.json")["seed"] for path in made] == [0, 1, 2]


def test_a_run_directory_holds_one_run(tmp_path):
    runs.start_run(tmp_path / "run", "forecasting", {"seed": 1}, {})
    with pytest.raises(UsageError, match="already holds a run: continue it with --resume"):
        runs.start_run(tmp_path / "run", "forecasting", {"seed": 2}, {})
    assert runs.load_json(tmp_path / "run" / "config.json") == {"seed": 1}
    runs.start_run(tmp_path / "run", "forecasting", {"seed": 1}, {}, resume=True)  # a resume writes it again


def test_writers_of_one_file_never_share_a_temporary_name(tmp_path):
    target = tmp_path / "state.json"
    temporary = []

    def outer(tmp):
        temporary.append(tmp)
        runs.atomic_write(target, lambda inner: (temporary.append(inner), inner.write_text("inner")))
        tmp.write_text("outer")

    runs.atomic_write(target, outer)
    assert temporary[0] != temporary[1]
    assert target.read_text() == "outer"
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]  # no temporary file left


def test_a_failed_write_leaves_the_previous_version(tmp_path):
    target = tmp_path / "state.json"
    runs.save_json(target, {"epoch": 1})

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        runs.atomic_write(target, fail)
    assert runs.load_json(target) == {"epoch": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


@pytest.fixture
def saved_run(tmp_path):
    """A forecasting run directory with its config, and a parser of `train`."""
    from seqapps.apps import cli, get_app

    app = get_app("forecasting")
    run_dir = tmp_path / "run"
    args = cli.build_parser(app).parse_args(["train", "--run-dir", str(run_dir), "--units", "8"])
    _, config = runs.run_config(app.name, args, app.defaults)
    runs.start_run(run_dir, app.name, config, {})

    def resume(*flags):
        args = cli.build_parser(app).parse_args(["train", "--resume", "--run-dir", str(run_dir), *flags])
        return runs.run_config(app.name, args, app.defaults)[1]

    return config, resume


def test_a_resume_continues_with_the_runs_own_options(saved_run):
    config, resume = saved_run
    assert config["seed"] == 1337 and config["units"] == 8
    assert resume() == config
    assert resume("--units", "8", "--seed", "1337") == config  # agreeing options may be repeated


def test_a_resume_refuses_options_that_differ_and_names_them(saved_run):
    _, resume = saved_run
    with pytest.raises(UsageError, match=r"differ: --units 16 \(the run has 8\); --seed 2 \(the run has 1337\)"):
        resume("--units", "16", "--seed", "2")


def test_a_resume_takes_more_epochs_and_records_them(saved_run, tmp_path):
    config, resume = saved_run
    assert resume("--epochs", "50")["epochs"] == 50 != config["epochs"]


def test_early_stopping_continues_its_count_after_a_resume():
    import keras

    history = {"val_loss": [1.0, 0.5, 0.6, 0.7]}  # best at epoch 2, two epochs without improvement since
    stopping = runs.ResumedEarlyStopping(history, monitor="val_loss", mode="min", patience=3)
    stopping.set_model(keras.Sequential())
    stopping.on_train_begin()
    assert (stopping.best, stopping.wait) == (0.5, 2)
    stopping.on_epoch_end(4, {"val_loss": 0.55})
    assert stopping.model.stop_training  # as an uninterrupted run would have stopped after epoch 5


def test_a_preset_names_a_recipe_and_given_options_win():
    from seqapps.apps import cli, get_app

    app = get_app("forecasting")

    def config_of(*flags):
        args = cli.build_parser(app).parse_args(["train", *flags])
        return runs.run_config(app.name, args, app.defaults, app.presets)[1]

    config = config_of("--preset", "lookback-720")
    assert (config["lookback"], config["segment"], config["preset"]) == (720, 48, "lookback-720")
    assert config_of("--preset", "lookback-720", "--segment", "24")["segment"] == 24
    assert config_of()["lookback"] is None  # the dataset's own default, filled in later
