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
