import importlib.util
import os
import tarfile
import zipfile
from datetime import datetime, timedelta

import numpy as np
import pytest

# Quiet TensorFlow's start-up banner; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# The layers are Keras 3 layers, tested on any backend; the apps (tf.data, string ops,
# SavedModel) need TensorFlow. `KERAS_BACKEND=jax python -m pytest` runs these only.
BACKEND_NEUTRAL = {"test_attention.py", "test_cells.py", "test_cudnn.py"}


def pytest_configure(config):
    if importlib.util.find_spec(BACKEND) is None:
        pytest.exit(f"KERAS_BACKEND={BACKEND}, but {BACKEND} is not installed: no test can run (pip install {BACKEND})")


def pytest_ignore_collect(collection_path, config):
    if BACKEND != "tensorflow" and collection_path.suffix == ".py":
        return collection_path.name not in BACKEND_NEUTRAL


@pytest.fixture(autouse=True)
def numpy_reads_torch_tensors(monkeypatch):
    """Under torch, NumPy (the assertions) reads a layer's outputs as
    `keras.ops.convert_to_numpy` does, detached from autograd: torch refuses
    `np.asarray` on a tensor that requires grad, as every output of a Keras layer does."""
    if BACKEND == "torch":
        import torch

        def as_array(tensor, dtype=None, copy=None):
            array = tensor.detach().cpu().numpy()
            return array if dtype is None else array.astype(dtype)

        monkeypatch.setattr(torch.Tensor, "__array__", as_array)


def pytest_report_header(config):
    if BACKEND != "tensorflow":
        neutral = ", ".join(sorted(BACKEND_NEUTRAL))
        return f"KERAS_BACKEND={BACKEND}: the layer tests only ({neutral}); the apps need TensorFlow"


def layer_gradients(layer, x, **call_kwargs):
    """Gradients of ``sum(sin(outputs))`` of ``layer(x, **call_kwargs)`` with respect
    to ``x`` and the layer's trainable weights, as NumPy arrays, on any Keras backend."""
    import keras
    from keras import ops, tree

    def loss(outputs):
        return sum(ops.sum(ops.sin(output)) for output in tree.flatten(outputs))

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(layer(x, **call_kwargs))
        grads = tape.gradient(value, [x] + layer.trainable_weights)
    elif backend == "jax":
        import jax

        def stateless_loss(x, trainable):
            non_trainable = [v.value for v in layer.non_trainable_variables]
            outputs, _ = layer.stateless_call(trainable, non_trainable, x, **call_kwargs)
            return loss(outputs)

        grad_x, grad_weights = jax.grad(stateless_loss, argnums=(0, 1))(
            jax.numpy.asarray(x), [v.value for v in layer.trainable_variables]
        )
        grads = [grad_x, *grad_weights]
    elif backend == "torch":
        import torch

        x = torch.tensor(np.asarray(x), requires_grad=True)
        for weight in layer.trainable_weights:
            weight.value.grad = None
        loss(layer(x, **call_kwargs)).backward()
        grads = [x.grad] + [weight.value.grad for weight in layer.trainable_weights]
    else:
        raise NotImplementedError(f"no gradients on the {backend} backend")
    return [np.asarray(keras.ops.convert_to_numpy(g)) for g in grads]


@pytest.fixture(scope="session")
def gradients():
    return layer_gradients


@pytest.fixture
def interrupt_training(monkeypatch):
    """Makes `train` stop with KeyboardInterrupt right after its first epoch's
    checkpoint, as a killed run would; returns a function that lets it run again."""
    from seqapps.apps import runs

    save_epoch = runs.RunCheckpoint.on_epoch_end

    def interrupted(self, epoch, logs=None):
        save_epoch(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.RunCheckpoint, "on_epoch_end", interrupted)
    return lambda: monkeypatch.setattr(runs.RunCheckpoint, "on_epoch_end", save_epoch)


# Tiny data in each app's published format. The builders are fixtures that return
# the function, so that tests and module-scoped fixtures can call them with arguments.

# -- sentiment: IMDB ----------------------------------------------------------------

POSITIVE = "great wonderful excellent moving superb loved".split()
NEGATIVE = "awful terrible boring dull waste hated".split()
NEUTRAL = "the film movie plot actor scene story music".split()


def imdb_files(root, per_class=(20, 10), seed=0, reviews_per_movie=4, long_every=0, unlabeled=0):
    """aclImdb/{train,test}/{pos,neg}/<id>_<stars>.txt with a learnable signal, and the
    urls_{pos,neg}.txt that name each review's movie: reviews i of both labels are
    about movie i // reviews_per_movie (test movies are others than training movies).
    `long_every` k > 0: every k-th review is 600 words long, as IMDB's longest are.
    `unlabeled`: that many reviews in aclImdb/train/unsup/<id>_0.txt, half of each kind."""
    rng = np.random.default_rng(seed)
    if unlabeled:
        folder = root / "aclImdb" / "train" / "unsup"
        folder.mkdir(parents=True)
        for i in range(unlabeled):
            words = POSITIVE if i % 2 else NEGATIVE
            text = " ".join(rng.choice(NEUTRAL + words * 2, size=12)) + ".<br /><br />" + rng.choice(words) + "!"
            (folder / f"{i}_0.txt").write_text(text.capitalize())
    for split, count in zip(("train", "test"), per_class, strict=True):
        for label, words, stars in (("pos", POSITIVE, (7, 10)), ("neg", NEGATIVE, (1, 4))):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                size = 600 if long_every and i % long_every == 0 else 12
                text = " ".join(rng.choice(NEUTRAL + words * 2, size=size)) + ".<br /><br />" + rng.choice(words) + "!"
                (folder / f"{i}_{rng.integers(*stars)}.txt").write_text(text.capitalize())
            first = 0 if split == "train" else 10**6
            movies = [first + i // reviews_per_movie for i in range(count)]
            urls = "".join(f"http://www.imdb.com/title/tt{movie:07d}/usercomments\n" for movie in movies)
            (folder.parent / f"urls_{label}.txt").write_text(urls)
    return root


def imdb_tarball(data_dir, name="aclImdb_v1.tar.gz"):
    archive = data_dir.parent / f"{data_dir.name}-archive" / name
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data_dir / "aclImdb", arcname="aclImdb")
    return archive


@pytest.fixture(scope="session")
def make_imdb():
    return imdb_files


@pytest.fixture(scope="session")
def make_tarball():
    return imdb_tarball


# -- translation: anki sentence pairs -------------------------------------------------

# The toy "Spanish" is a number language that English translates word by word in the
# same order, so a small model learns it in seconds, and attention has to look at the
# aligned source word to get it right.
NUMBER_WORDS = {
    "uno": "one",
    "dos": "two",
    "tres": "three",
    "cuatro": "four",
    "cinco": "five",
    "seis": "six",
    "siete": "seven",
    "ocho": "eight",
}


def number_pairs(count, seed=0):
    """(english, spanish) sentences of 2-5 number words and a full stop."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        spanish = list(rng.choice(list(NUMBER_WORDS), size=rng.integers(2, 6)))
        pairs.append(
            (" ".join(NUMBER_WORDS[w] for w in spanish).capitalize() + ".", " ".join(spanish).capitalize() + ".")
        )
    return pairs


def pairs_file(path, pairs, extra_lines=()):
    lines = [f"{en}\t{es}\tCC-BY 2.0 (France) Attribution: tatoeba.org" for en, es in pairs] + list(extra_lines)
    text = "\n".join(lines) + "\n"
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("spa-eng/_about.txt", "about")
            archive.writestr("spa-eng/spa.txt", text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def number_words():
    return dict(NUMBER_WORDS)


@pytest.fixture(scope="session")
def toy_pairs():
    return number_pairs


@pytest.fixture(scope="session")
def write_pairs():
    return pairs_file


# -- forecasting: a CSV series ----------------------------------------------------------


def series_csv_file(
    path, rows=1200, columns=("load", "temp", "OT"), seed=0, edit=None, step=timedelta(hours=1), time_format=None
):
    """Noisy daily sines (of 24 rows) with a trend, one phase and scale per column,
    a row every `step`, times written in `time_format` (default: ISO 8601)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    values = (
        np.stack(
            [
                (k + 1) * np.sin(2 * np.pi * t / 24 + k) + 0.002 * t + 0.1 * rng.normal(size=rows)
                for k in range(len(columns))
            ],
            axis=1,
        )
        + 10
    )
    times = [datetime(2020, 1, 1) + int(i) * step for i in t]
    written = [time.strftime(time_format) if time_format else time.isoformat(sep=" ") for time in times]
    lines = [[time] + [f"{v:.5f}" for v in row] for time, row in zip(written, values, strict=True)]
    if edit:
        edit(lines)
    path.write_text("\n".join(",".join(line) for line in [["date", *columns]] + lines) + "\n")
    return path


@pytest.fixture(scope="session")
def write_series():
    return series_csv_file
