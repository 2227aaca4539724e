import os

import pytest

# Quiet TensorFlow's start-up banner; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture
def interrupt_training(monkeypatch):
    """Makes `train` stop with KeyboardInterrupt right after its first epoch's
    checkpoint, as a killed run would; returns a function that lets it run again."""
    from apps import runs

    save_epoch = runs.RunCheckpoint.on_epoch_end

    def interrupted(self, epoch, logs=None):
        save_epoch(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.RunCheckpoint, "on_epoch_end", interrupted)
    return lambda: monkeypatch.setattr(runs.RunCheckpoint, "on_epoch_end", save_epoch)
