"""`seqapps sentiment pretrain` and `train --pretrained` on a tiny IMDB with unlabeled reviews."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from seqapps.apps import runs, sentiment
from seqapps.apps.sentiment import data, pretraining
from seqapps.apps.sentiment.model import adapt_vocabulary

TINY = ["--units", "8", "--embedding-dim", "8", "--batch-size", "8", "--verbose", "0"]
TINY_PRETRAINING = [*TINY, "--vocab-size", "30", "--sequence-length", "8", "--sampled", "5", "--epochs", "2"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, make_imdb):
    return make_imdb(tmp_path_factory.mktemp("imdb"), unlabeled=40)


@pytest.fixture(scope="module")
def language_model(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "pretrained"
    sentiment.main(["pretrain", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *TINY_PRETRAINING])
    return run_dir


def pretraining_config(data_dir, **options):
    return {**sentiment.PRETRAINING.defaults, "data_dir": str(data_dir), "limit": None, "seed": 3, **options}


def test_pretraining_reads_no_validation_or_test_review_and_holds_unlabeled_ones_out(data_dir):
    config = pretraining_config(data_dir, heldout_fraction=0.25)
    texts, held_out = pretraining.pretraining_texts(config)
    splits = data.load_reviews({**config, "dataset": "imdb"}, data_dir, ("train", "validation", "test"))
    unlabeled = data.load_unlabeled(data_dir)
    assert set(texts) == set(splits["train"][0]) | (set(unlabeled) - set(held_out))
    assert not set(texts) & (set(splits["validation"][0]) | set(splits["test"][0]) | set(held_out))
    assert len(held_out) == 10 and set(held_out) <= set(unlabeled)


def test_unlabeled_reviews_load_from_a_directory_and_both_archives(data_dir, make_tarball, tmp_path):
    from_dir = data.load_unlabeled(data_dir)
    assert len(from_dir) == 40
    for name in data.UNLABELED_ARCHIVES:
        archive = make_tarball(data_dir, name)
        np.testing.assert_array_equal(data.load_unlabeled(archive.parent), from_dir)
        archive.unlink()
        archive.parent.rmdir()
    with pytest.raises(data.UsageError, match="no unlabeled IMDB reviews in .*train/unsup"):
        data.load_unlabeled(tmp_path)


def test_segments_cover_every_word_once():
    lengths = np.array([5, 8, 0, 17])
    segments = pretraining.segment_lengths(lengths, 8)
    np.testing.assert_array_equal(segments, [5, 8, 8, 8, 1])
    config = {"sequence_length": 8, "bidirectional": True}
    ids = np.arange(1, 31, dtype=np.int32)
    batches = list(pretraining.dataset(ids, lengths, config, batch_size=2))
    words = np.concatenate([tokens.numpy()[tokens.numpy() > 0] for (tokens, _), _ in batches])
    np.testing.assert_array_equal(np.sort(words), ids)
    (tokens, targets), _ = batches[0]
    np.testing.assert_array_equal(targets[:, :-1, 0], tokens[:, 1:])  # the next word
    np.testing.assert_array_equal(targets[:, 1:, 1], tokens[:, :-1])  # the previous word


def test_the_softmax_is_exact_in_validation_and_sampled_in_training():
    layer = pretraining.SampledSoftmax(vocab_size=50, num_sampled=10, seed=0)
    hidden = tf.random.stateless_normal((2, 3, 4), seed=(1, 2))
    targets = tf.constant([[5, 7, 0], [1, 49, 2]])
    exact = layer(hidden, targets).numpy()
    embeddings, bias = (weight.numpy() for weight in layer.weights)
    logits = hidden.numpy() @ embeddings.T + bias
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_softmax, targets.numpy()[..., None], -1)[..., 0]
    expected[0, 2] = 0.0  # no target, no loss
    np.testing.assert_allclose(exact, expected, rtol=1e-5)
    sampled = layer(hidden, targets, training=True).numpy()
    assert sampled[0, 2] == 0 and np.all(sampled[targets.numpy() > 0] > 0)


def test_pretraining_writes_a_run_with_validation_perplexity(language_model):
    history = json.loads((language_model / "history.json").read_text())
    assert len(history["val_perplexity"]) == 2
    np.testing.assert_allclose(history["val_perplexity"], np.exp(history["val_loss"]), rtol=1e-5)
    vocabulary = json.loads((language_model / "vocabulary.json").read_text())
    config = json.loads((language_model / "config.json").read_text())
    assert vocabulary == adapt_vocabulary(pretraining.pretraining_texts(config)[0])
    assert (language_model / "learning_curves.png").stat().st_size > 0


def test_the_classifier_starts_from_the_pretrained_layers_and_vocabulary(language_model, data_dir, tmp_path):
    run_dir = tmp_path / "classifier"
    args = ["--pretrained", str(language_model), "--ngram-features", "0", "--epochs", "1", "--batch-size", "8"]
    args += ["--layer-lr-decay", "2"]  # ULMFiT's discriminative fine-tuning
    sentiment.main(["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--verbose", "0", *args])
    config = json.loads((run_dir / "config.json").read_text())
    pretrained_config = json.loads((language_model / "config.json").read_text())
    for key in ("vocab_size", "units", "embedding_dim", "cell", "layers", "bidirectional"):
        assert config[key] == pretrained_config[key]
    assert config["split_seed"] == pretrained_config["seed"]
    assert runs.load_model(run_dir).optimizer.layer_rates == {"recurrent_1": 0.5, "embedding": 0.25}
    language = runs.load_model(language_model / "model.keras")
    classifier = sentiment.APP.build_model(config, data.load(config))
    for name in ("embedding", "recurrent_1"):
        for mine, pretrained in zip(
            classifier.get_layer(name).get_weights(), language.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(mine, pretrained)
    vocabulary = json.loads((language_model / "vocabulary.json").read_text())
    assert classifier.get_layer("vectorizer").get_vocabulary()[2:] == vocabulary[:28]


def test_gradual_unfreezing_trains_the_head_alone_in_the_first_epoch(language_model, data_dir, tmp_path):
    run_dir = tmp_path / "classifier"
    args = ["--pretrained", str(language_model), "--ngram-features", "0", "--epochs", "1", "--batch-size", "8"]
    args += ["--gradual-unfreezing", "--lr-schedule", "slanted-triangular"]  # ULMFiT's two schedules together
    sentiment.main(["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--verbose", "0", *args])
    config = json.loads((run_dir / "config.json").read_text())
    steps = data.training_batches(config, data.load(config))
    classifier, language = runs.load_model(run_dir), runs.load_model(language_model / "model.keras")
    assert classifier.optimizer.layer_start_steps == {"recurrent_1": steps, "embedding": 2 * steps}
    schedule = classifier.optimizer.get_config()["learning_rate"]["config"]
    assert schedule["total_steps"] == steps and schedule["maximal_learning_rate"] == config["learning_rate"]
    for name in ("embedding", "recurrent_1"):
        for mine, pretrained in zip(
            classifier.get_layer(name).get_weights(), language.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(mine, pretrained)


def test_pretrained_options_cannot_be_contradicted(language_model, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        sentiment.main(["train", "--data-dir", str(data_dir), "--pretrained", str(language_model), "--units", "16"])
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--units 16 (the pretraining run has 8)" in error
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((language_model / "config.json").read_text())
    with pytest.raises(SystemExit):
        sentiment.main(["train", "--data-dir", str(data_dir), "--pretrained", str(unfinished)])
    assert "has not finished (no model.keras)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sentiment.main(["train", "--data-dir", str(data_dir), "--gradual-unfreezing"])
    assert "--gradual-unfreezing thaws the layers of a language model: it needs --pretrained" in capsys.readouterr().err


def test_a_stacked_bidirectional_model_is_refused(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        sentiment.main(["pretrain", "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "r"), "--layers", "2"])
    assert "--layers 2 with --bidirectional cannot be pretrained" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


SHARED_UNLABELED = Path(__file__).resolve().parents[2] / "shared" / "data" / "aclImdb_v1_unsup.tar.gz"


@pytest.mark.skipif(not SHARED_UNLABELED.exists(), reason=f"the unlabeled IMDB archive is not at {SHARED_UNLABELED}")
def test_real_unlabeled_archive_holds_50000_reviews():
    texts = data.load_unlabeled(SHARED_UNLABELED.parent)
    assert len(texts) == 50000 and len(set(texts)) > 49000
    assert all(isinstance(text, str) and text for text in texts)


def test_layerwise_rates_slow_the_lower_layers_and_survive_saving(tmp_path):
    import keras

    from seqapps.apps.sentiment.model import LayerwiseAdam, layer_rates

    rates = layer_rates({"layers": 2, "layer_lr_decay": 2.0})
    assert rates == {"recurrent_2": 0.5, "recurrent_1": 0.25, "embedding": 0.125}
    inputs = keras.Input((3,))
    lower = keras.layers.Dense(2, name="embedding")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(lower))
    model.compile(optimizer=LayerwiseAdam({"embedding": 0.125}, learning_rate=0.01), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    model.train_on_batch(np.ones((4, 3)), np.full((4, 1), 100.0))
    # Adam's first step moves each weight by about its learning rate.
    steps = [np.abs(after - start).max() for after, start in zip(model.get_weights(), before, strict=True)]
    assert steps[0] == pytest.approx(0.01 * 0.125, rel=1e-3) and steps[2] == pytest.approx(0.01, rel=1e-3)
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").optimizer.layer_rates == {"embedding": 0.125}


def test_a_layer_learns_from_its_start_step():
    import keras

    from seqapps.apps.sentiment.model import LayerwiseAdam, layer_start_steps

    assert layer_start_steps({"layers": 2}, 5) == {"recurrent_2": 5, "recurrent_1": 10, "embedding": 15}
    inputs = keras.Input((3,))
    lower = keras.layers.Dense(2, name="embedding")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(lower))
    model.compile(optimizer=LayerwiseAdam(layer_start_steps={"embedding": 2}, learning_rate=0.01), loss="mse")
    x, y = np.ones((4, 3)), np.full((4, 1), 100.0)
    start = model.get_weights()
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    frozen = model.get_weights()
    np.testing.assert_array_equal(frozen[0], start[0])
    assert np.abs(frozen[2] - start[2]).max() > 0.015  # the head took two steps
    model.train_on_batch(x, y)
    assert np.abs(model.get_weights()[0] - frozen[0]).max() > 0.005


def test_slanted_triangular_rates_climb_a_tenth_of_the_steps_then_fall_and_survive_saving(tmp_path):
    import keras

    from seqapps.apps.sentiment.model import SlantedTriangular

    schedule = SlantedTriangular(0.032, total_steps=100)
    rates = np.array([float(schedule(step)) for step in range(101)])
    np.testing.assert_allclose(rates[[0, 10, 100]], [0.001, 0.032, 0.001], rtol=1e-5)
    assert (np.diff(rates[:11]) > 0).all() and (np.diff(rates[10:]) < 0).all()
    assert float(schedule(150)) == pytest.approx(0.001)  # past the end (more epochs than planned): the lowest rate
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    model.train_on_batch(np.ones((2, 3)), np.ones((2, 1)))
    model.save(tmp_path / "m.keras")
    saved = keras.saving.load_model(tmp_path / "m.keras").optimizer.get_config()["learning_rate"]["config"]
    assert saved == {"maximal_learning_rate": 0.032, "total_steps": 100, "cut_fraction": 0.1, "ratio": 32.0}
