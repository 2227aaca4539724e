"""Models saved by seqapps 0.1, when the packages were installed as top-level `layers`,
`apps` and `tuning`, still load (the registered names kept their `seqapps` package)
and compute what they computed then."""

import importlib
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

MODELS = Path(__file__).parent / "data" / "models-0.1"


@pytest.fixture(scope="module")
def expected():
    with np.load(MODELS / "expected.npz") as saved:
        return dict(saved)


def load(name):
    importlib.import_module(f"seqapps.apps.{name}.commands")  # registers the app's layers, functions and losses
    return keras.saving.load_model(MODELS / f"{name}.keras", compile=False)


@pytest.mark.parametrize("name", ["sentiment", "translation", "forecasting"])
def test_the_commands_load_saved_models_in_a_fresh_process(name):
    """What `seqapps <app> evaluate | predict | export` import registers every custom
    object of the app's models, with nothing else imported before."""
    script = (
        f"import seqapps.apps.{name}.commands\n"
        "from seqapps.apps import runs\n"
        f"print(type(runs.load_model({str(MODELS / f'{name}.keras')!r})).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_sentiment_model_of_0_1_loads(expected):
    probability = load("sentiment").predict(tf.constant(expected["sentiment_text"]), verbose=0).reshape(-1)
    np.testing.assert_allclose(probability, expected["sentiment_probability"], atol=1e-6)


def test_translation_model_of_0_1_loads(expected):
    translations = load("translation").translate(tf.constant(expected["translation_text"]), beam_size=2)
    # The same words, written as text now: a 0.1 model has no casing table, so only sentence capitals.
    written = [t[:1].upper() + t[1:] for t in expected["translation_translation"]]
    assert list(translations.numpy()) == written


def test_forecasting_model_of_0_1_loads(expected):
    forecast = load("forecasting").predict(expected["forecasting_history"], verbose=0)
    np.testing.assert_allclose(forecast, expected["forecasting_forecast"], atol=1e-5)
