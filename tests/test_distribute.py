"""`train --distribute`: two workers on loopback train like one device, only the chief
writes, a killed run resumes; mirrored on one CPU equals none."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from seqapps.apps import distribute, forecasting, runs, sentiment
from seqapps.apps.export import run_savedmodel_in_subprocess
from seqapps.apps.sentiment import data as sentiment_data

pytestmark = pytest.mark.distributed

FORECASTING = ["--lookback", "24", "--horizon", "12", "--segment", "6", "--units", "16", "--dropout", "0"]
# One training step of a global batch of 32 (16 per worker on two). One step, because
# Adam's steps after the first amplify float round-off in near-zero gradients.
ONE_STEP = ["--limit", "32", "--batch-size", "32", "--epochs", "1"]
TINY = {
    "sentiment": ["--units", "8", "--embedding-dim", "8", "--vocab-size", "100", "--sequence-length", "16"],
    "translation": ["--units", "16", "--embedding-dim", "16", "--dropout", "0"],
    "forecasting": FORECASTING,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_imdb, toy_pairs, write_pairs, write_series):
    """The `train` arguments that give each app its tiny data."""
    root = tmp_path_factory.mktemp("data")
    (root / "translation").mkdir()
    write_pairs(root / "translation" / "spa-eng.zip", toy_pairs(300))
    return {
        "sentiment": ["--data-dir", str(make_imdb(root / "sentiment", per_class=(48, 8)))],
        "translation": ["--data-dir", str(root / "translation")],
        "forecasting": ["--dataset", str(write_series(root / "sines.csv"))],
    }


@pytest.fixture
def start_workers(tmp_path):
    """start(app, args, count=2): `seqapps <app> train --distribute multi-worker ARGS` as
    `count` processes on 127.0.0.1, each with its TF_CONFIG, TMPDIR=tmp_path/tmp and
    output to a file; all are killed at the end of the test."""
    started = []

    def start(app, args, count=2):
        (tmp_path / "tmp").mkdir(exist_ok=True)
        workers = []
        for tf_config in distribute.local_tf_configs(count):
            output = open(tmp_path / f"worker-{len(started)}.log", "w+")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"seqapps.apps.{app}", "train", "--distribute", "multi-worker", *args],
                    env={
                        **os.environ,
                        "TF_CONFIG": tf_config,
                        "TMPDIR": str(tmp_path / "tmp"),
                    },
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
            workers[-1].output = output
            started.append(workers[-1])
        return workers

    yield start
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.output.close()


def finish(workers, timeout=300):
    """Wait for `workers`; their outputs, after checking that each succeeded."""
    outputs = []
    for worker in workers:
        worker.wait(timeout=timeout)
        worker.output.seek(0)
        outputs.append(worker.output.read())
        assert worker.returncode == 0, outputs[-1][-3000:]
    return outputs


def weights(run_dir):
    return runs.load_model(run_dir).get_weights()


@pytest.mark.slow
@pytest.mark.parametrize("app", ["sentiment", "translation"])
def test_the_text_apps_train_on_two_workers(app, data, tmp_path, start_workers):
    run_dir = tmp_path / "run"
    args = [*data[app], *TINY[app], "--run-dir", str(run_dir), "--epochs", "2", "--batch-size", "8"]
    finish(start_workers(app, [*args, "--verbose", "0"]))
    assert len(runs.load_json(run_dir / "history.json")["val_loss"]) == 2
    assert (run_dir / "model.keras").is_file() and (run_dir / "learning_curves.png").is_file()
    assert not list((tmp_path / "tmp").iterdir()), "the other worker left files behind"


def test_every_replica_gets_an_equal_part_of_every_batch():
    import tensorflow as tf

    texts = tf.constant([f"review {i}" for i in range(7)])
    batches = tf.data.Dataset.from_tensor_slices((texts, tf.range(7.0))).batch(3)  # 3, 3 and 1 examples
    parts = [[t.numpy() for t in batch] for batch in distribute.equal_parts(batches, replicas=2)]
    assert [len(x) for x, _, _ in parts] == [4, 4, 2]
    assert [list(w) for _, _, w in parts] == [[1, 1, 1, 0], [1, 1, 1, 0], [1, 0]]  # the blanks weigh nothing
    assert [x[-1] for x, _, _ in parts] == [b"", b"", b""] and [y[-1] for _, y, _ in parts] == [0, 0, 0]
    assert sum(w.sum() for _, _, w in parts) == 7  # every example is there
    windows = tf.data.Dataset.from_tensor_slices((tf.zeros([3, 24, 2]), tf.zeros([3, 12, 2]))).batch(3)
    _, _, weights = next(iter(distribute.equal_parts(windows, replicas=2)))
    assert weights.shape == (4, 1)  # broadcast over each window's losses per step


@pytest.mark.slow
def test_every_review_trains_on_two_workers_long_ones_too(tmp_path, make_imdb, start_workers):
    """Long reviews come fewer to a batch, and every length bucket ends with a partial
    batch: none is left out, and an epoch counts every training and validation review."""
    data_dir = make_imdb(tmp_path / "imdb", per_class=(30, 4), long_every=3)
    run_dir = tmp_path / "run"
    args = ["--data-dir", str(data_dir), *TINY["sentiment"][:-2], "--limit", "50", "--batch-size", "8"]
    finish(start_workers("sentiment", [*args, "--epochs", "2", "--run-dir", str(run_dir), "--verbose", "0"]))
    history = runs.load_json(run_dir / "history.json")
    config = {**sentiment.DEFAULTS, **runs.load_json(run_dir / "config.json")}
    reviews = sentiment_data.load(config)
    assert any(len(text.split()) > 512 for text in reviews.train[0])
    assert history["examples"] == [len(reviews.train[0])] * 2
    assert history["val_examples"] == [len(reviews.validation[0])] * 2


@pytest.mark.slow
def test_two_workers_take_the_step_of_one_device_and_only_the_chief_writes(data, tmp_path, start_workers):
    args = [*data["forecasting"], *FORECASTING, *ONE_STEP, "--verbose", "0"]
    outputs = finish(start_workers("forecasting", [*args, "--run-dir", str(tmp_path / "two")]))
    assert "Training beside the chief" in outputs[1]
    forecasting.main(["train", *args, "--run-dir", str(tmp_path / "one")])

    for two, one in zip(weights(tmp_path / "two"), weights(tmp_path / "one"), strict=True):
        np.testing.assert_allclose(two, one, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert not list((tmp_path / "tmp").iterdir()), "the other worker left files behind"

    path = forecasting.main(["export", "--run-dir", str(tmp_path / "two"), "--export-dir", str(tmp_path / "exports")])
    history = np.random.default_rng(1).normal(10, 2, size=(2, 24, 3)).astype("float32")
    served = run_savedmodel_in_subprocess(path, {"history": history})
    np.testing.assert_allclose(served["forecast"], runs.load_model(tmp_path / "two").predict(history), atol=1e-4)


@pytest.mark.slow
def test_a_killed_multi_worker_run_resumes(data, tmp_path, start_workers):
    run_dir = tmp_path / "run"
    args = [*data["forecasting"], *FORECASTING, "--batch-size", "32", "--epochs", "4", "--run-dir", str(run_dir)]
    workers = start_workers("forecasting", [*args, "--verbose", "0"])
    deadline = time.monotonic() + 300
    while not (run_dir / "state.json").exists() or not runs.load_json(run_dir / "state.json")["epoch"]:
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "no first epoch"
        time.sleep(0.1)
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    done = runs.load_json(run_dir / "state.json")["epoch"]
    assert 1 <= done < 4

    history = runs.load_json(run_dir / "state.json")["history"]["loss"]
    outputs = finish(start_workers("forecasting", ["--run-dir", str(run_dir), "--resume", "--verbose", "0"]))
    assert all(f"after epoch {done} of 4" in output for output in outputs)
    assert runs.load_json(run_dir / "history.json")["loss"][:done] == history
    assert len(runs.load_json(run_dir / "history.json")["loss"]) == 4
    assert (run_dir / "model.keras").is_file()


@pytest.mark.slow
def test_mirrored_on_one_cpu_trains_as_none(data, tmp_path):
    args = [*data["forecasting"], *FORECASTING, *ONE_STEP, "--verbose", "0"]
    forecasting.main(["train", *args, "--run-dir", str(tmp_path / "none")])
    forecasting.main(["train", *args, "--run-dir", str(tmp_path / "mirrored"), "--distribute", "mirrored"])
    for mirrored, none in zip(weights(tmp_path / "mirrored"), weights(tmp_path / "none"), strict=True):
        np.testing.assert_allclose(mirrored, none, atol=1e-6)


def test_a_worker_without_its_peer_fails_in_one_line(data, tmp_path, monkeypatch, capsys):
    tf_config = distribute.local_tf_configs(2)[0]
    missing = json.loads(tf_config)["cluster"]["worker"][1]
    monkeypatch.setenv("TF_CONFIG", tf_config)
    args = ["train", *data["forecasting"], "--run-dir", str(tmp_path / "run"), "--distribute", "multi-worker"]
    with pytest.raises(SystemExit) as exit_:
        forecasting.main([*args, "--peer-timeout", "1"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"no answer from {missing} within 1 s (--peer-timeout)" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG must name a cluster of host:port addresses and this task"),
    ],
)
def test_multi_worker_needs_a_valid_tf_config(tf_config, message, data, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(SystemExit):
        forecasting.main(
            ["train", *data["forecasting"], "--run-dir", str(tmp_path / "run"), "--distribute", "multi-worker"]
        )
    assert message in capsys.readouterr().err


def test_multi_worker_needs_a_run_directory(data, capsys):
    with pytest.raises(SystemExit):
        forecasting.main(["train", *data["forecasting"], "--distribute", "multi-worker"])
    assert "--distribute multi-worker needs --run-dir" in capsys.readouterr().err
