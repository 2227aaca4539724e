"""The sentiment app end to end on a tiny IMDB in the published layout."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from seqapps.apps import runs, sentiment
from seqapps.apps.export import run_savedmodel_in_subprocess
from seqapps.apps.sentiment import commands, data, model

SHARED_IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "aclImdb_v1_labeled.tar.gz"
TINY_TRAINING = [
    "--units",
    "8",
    "--embedding-dim",
    "8",
    "--vocab-size",
    "100",
    "--sequence-length",
    "16",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--verbose",
    "0",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, make_imdb):
    return make_imdb(tmp_path_factory.mktemp("imdb"))


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    sentiment.main(["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--cell", "cifg", *TINY_TRAINING])
    return run_dir


def test_load_imdb_directory_and_tarball_agree(data_dir, make_tarball):
    from_dir = data.load_imdb(data_dir)
    from_tar = data.load_imdb(make_tarball(data_dir).parent)
    for split, n in (("train", 40), ("test", 20)):
        texts, labels, movies = from_dir[split]
        assert len(texts) == n and labels.sum() == n // 2
        for column, from_tarball in zip(from_dir[split], from_tar[split], strict=True):
            np.testing.assert_array_equal(column, from_tarball)
        # Review <id> of each label is about the movie on line <id> of urls_<label>.txt (<id> // 4 here).
        first = 0 if split == "train" else 10**6
        expected = [f"tt{first + i // 4:07d}" for i in range(n // 2)]
        assert list(movies[labels == 1]) == list(movies[labels == 0]) == expected
    assert not set(from_dir["train"][2]) & set(from_dir["test"][2])


def test_validation_reviews_are_about_movies_no_training_review_is_about():
    rng = np.random.default_rng(0)
    movies = np.array([f"tt{m}" for m in rng.integers(0, 50, size=400)], dtype=object)
    texts, labels = np.arange(400).astype(str).astype(object), np.arange(400) % 2
    (train, train_labels), (validation, _) = data.split_validation(texts, labels, 0.1, seed=3, movies=movies)
    assert sorted([*train, *validation]) == sorted(texts)
    train_movies, validation_movies = (set(movies[np.array(part).astype(int)]) for part in (train, validation))
    assert not train_movies & validation_movies
    # A tenth of the reviews, give or take the reviews of the last movie drawn.
    assert 40 <= len(validation) < 40 + max(np.unique(movies, return_counts=True)[1])
    np.testing.assert_array_equal(train_labels, np.array(train).astype(int) % 2)
    # Without movies (other archives, TFDS): a tenth of the reviews, drawn by review.
    (_, _), (by_review, _) = data.split_validation(texts, labels, 0.1, seed=3)
    assert len(by_review) == 40 and set(movies[np.array(by_review).astype(int)]) & train_movies


@pytest.mark.slow
def test_train_writes_the_run_directory(run_dir):
    for name in (
        "config.json",
        "model.keras",
        "best.keras",
        "last.keras",
        "history.json",
        "history.csv",
        "learning_curves.png",
    ):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "logs").rglob("*tfevents*"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["cell"] == "cifg" and config["units"] == 8 and config["bidirectional"] is True
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 1 and "val_accuracy" in history


def test_validation_drawn_by_review_when_movies_are_missing_says_so(capsys):
    texts, labels = np.array([f"review {i}" for i in range(10)]), np.arange(10) % 2
    movies = np.array(["tt1"] * 5 + [""] * 5, dtype=object)
    (train, _), (validation, _) = data.split_validation(texts, labels, 0.2, seed=0, movies=movies)
    assert len(train) == 8 and len(validation) == 2
    assert "5 of 10 training reviews have no movie" in capsys.readouterr().err
    data.split_validation(texts, labels, 0.2, seed=0, movies=None)  # --no-split-by-movie: chosen, so silent
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_model_without_its_run_is_evaluated_with_what_was_assumed_said(run_dir, data_dir, tmp_path, capsys):
    alone = tmp_path / "model.keras"
    alone.write_bytes((run_dir / "model.keras").read_bytes())
    metrics = sentiment.main(["evaluate", "--model", str(alone), "--data-dir", str(data_dir)])
    assumed = {"dataset": "imdb", "seed": 0, "validation_fraction": 0.1, "limit": None, "split_by_movie": False}
    assert metrics["assumed"] == assumed
    assert "config.json does not exist; assuming dataset=imdb" in capsys.readouterr().err
    assert json.loads((tmp_path / "metrics.json").read_text())["assumed"] == json.loads(json.dumps(metrics["assumed"]))


@pytest.mark.slow
def test_evaluate_writes_metrics(run_dir, capsys):
    metrics = sentiment.main(["evaluate", "--run-dir", str(run_dir)])
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["examples"] == 20
    assert sum(map(sum, saved["confusion_matrix"])) == 20
    assert (run_dir / "confusion_matrix.png").is_file()
    out = capsys.readouterr().out
    assert "roc_auc" in out
    # The bag-of-n-grams baseline beside the model, fitted on the same training split.
    baseline = saved["baseline"]
    assert baseline["examples"] == 20 and baseline["accuracy"] > 0.8 and baseline["C"] in (0.3, 1.0, 3.0)
    assert any(line.startswith("model ") for line in out.splitlines())
    assert any(line.startswith("baseline ") for line in out.splitlines())


def test_the_bag_of_ngrams_baseline_learns(make_imdb, tmp_path):
    from seqapps.apps.sentiment import baseline

    reviews = data.load_imdb(make_imdb(tmp_path, per_class=(60, 40), seed=1))
    texts, labels, _ = reviews["train"]
    features = baseline.CountVectorizer(token_pattern=r"\S+", binary=True).fit(baseline.cleaned(texts))
    ratios = baseline.log_count_ratios(features.transform(baseline.cleaned(texts)), labels)
    vocabulary = features.vocabulary_
    assert ratios[vocabulary["superb"]] > 0 > ratios[vocabulary["dull"]]
    assert abs(ratios[vocabulary["film"]]) < ratios[vocabulary["superb"]]
    classifier = baseline.fit_baseline((texts[::2], labels[::2]), (texts[1::2], labels[1::2]))
    accuracy = np.mean((classifier.probabilities(reviews["test"][0]) >= 0.5) == reviews["test"][1])
    assert accuracy >= 0.9 and classifier.C in baseline.COSTS
    # The baseline reads the text as the model does.
    assert baseline.cleaned(["Not GREAT.<br />Awful!"]) == ["not great  awful "]


@pytest.mark.slow
def test_predict_from_arguments_file_and_stdin(run_dir, tmp_path, capsys, monkeypatch):
    sentiment.main(["predict", "--model", str(run_dir), "a superb film", "awful"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    probability, label, _ = lines[0].split("\t")
    assert 0.0 <= float(probability) <= 1.0 and label in ("positive", "negative")

    inputs = tmp_path / "reviews.txt"
    inputs.write_text("great\nboring\ndull\n")
    sentiment.main(["predict", "--model", str(run_dir / "model.keras"), "--file", str(inputs)])
    assert len(capsys.readouterr().out.strip().splitlines()) == 3

    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("loved it\nhated it\n"))
    sentiment.main(["predict", "--model", str(run_dir)])
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


@pytest.mark.slow
def test_bad_texts_get_a_probability_from_keras_and_savedmodel(run_dir, tmp_path):
    export = sentiment.main(["export", "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")])
    texts = commands.EXPORT_CHECK_TEXTS
    for path in (run_dir, export):
        probabilities, labels = commands.predict_texts(path, texts)
        assert probabilities.shape == (len(texts),)
        assert np.all(np.isfinite(probabilities)) and np.all((probabilities >= 0) & (probabilities <= 1))
        assert set(labels) <= {"positive", "negative"}


@pytest.mark.slow
def test_export_serves_raw_text_with_tensorflow_only(run_dir, tmp_path):
    exports = tmp_path / "saved_models" / "sentiment"
    first = sentiment.main(["export", "--run-dir", str(run_dir), "--export-dir", str(exports)])
    second = sentiment.main(["export", "--run-dir", str(run_dir), "--export-dir", str(exports)])
    assert (first.name, second.name) == ("1", "2")
    assert (first / "saved_model.pb").is_file() and (first / "variables").is_dir()
    assert sorted(p.name for p in exports.iterdir()) == ["1", "2"]  # no temporary leftovers

    texts = ["a superb moving film", "boring and awful"]
    served = run_savedmodel_in_subprocess(first, {"text": np.array(texts, dtype="S")})
    expected, labels = commands.predict_texts(run_dir, texts)
    np.testing.assert_allclose(served["probability"], expected, atol=1e-5)
    np.testing.assert_array_equal(served["label"].astype(str), labels)


@pytest.mark.slow
def test_export_never_overwrites_a_version(run_dir, tmp_path, capsys):
    exports = tmp_path / "exports"
    sentiment.main(["export", "--run-dir", str(run_dir), "--export-dir", str(exports), "--version", "3"])
    before = sorted(p.name for p in (exports / "3").rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        sentiment.main(["export", "--run-dir", str(run_dir), "--export-dir", str(exports), "--version", "3"])
    assert exit_.value.code == 2
    assert "exists and exports never overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in (exports / "3").rglob("*")) == before


@pytest.mark.slow
def test_resume_continues_an_interrupted_run(data_dir, tmp_path, interrupt_training):
    run_dir = tmp_path / "run"
    args = ["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *TINY_TRAINING, "--epochs", "2"]
    with pytest.raises(KeyboardInterrupt):
        sentiment.main(args)
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 1
    assert not (run_dir / "model.keras").exists()

    interrupt_training()  # lets training run again
    sentiment.main(["train", "--resume", "--run-dir", str(run_dir), "--verbose", "0"])
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2
    assert (run_dir / "model.keras").is_file()


@pytest.mark.slow
def test_an_existing_run_is_not_overwritten(run_dir, data_dir, capsys):
    with pytest.raises(SystemExit):
        sentiment.main(["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *TINY_TRAINING])
    assert "already holds a run" in capsys.readouterr().err


def test_wrong_data_dir_names_the_expected_layout(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        sentiment.main(["train", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "aclImdb/{train,test}/{pos,neg}/<id>_<stars>.txt" in err


def test_corrupt_review_names_the_file(tmp_path, capsys, make_imdb):
    data_dir = make_imdb(tmp_path / "data")
    (data_dir / "aclImdb" / "train" / "pos" / "3_9.txt").write_bytes(b"great \xff\xfe film")
    with pytest.raises(SystemExit):
        sentiment.main(["train", "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert "train/pos/3_9.txt" in err and "not UTF-8" in err


def test_binary_metrics():
    labels = np.array([1, 1, 1, 0, 0, 0])
    probabilities = np.array([0.9, 0.6, 0.4, 0.6, 0.2, 0.1])
    metrics = commands.binary_metrics(labels, probabilities)
    assert metrics["confusion_matrix"] == [[2, 1], [1, 2]]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    # Of the 9 (positive, negative) pairs the positive scores higher in 7, ties in 1.
    assert metrics["roc_auc"] == pytest.approx(7.5 / 9)


def test_cleaning_removes_markup_and_keeps_words():
    import tensorflow as tf

    cleaned = model.clean_review(tf.constant([b"Great<br />film, DON'T miss it!", b"caf\xc3\xa9 \xff ok"]))
    assert cleaned.numpy()[0].split() == [b"great", b"film", b"dont", b"miss", b"it"]
    assert cleaned.numpy()[1].split() == ["café".encode(), b"ok"]


@pytest.mark.skipif(not SHARED_IMDB.exists(), reason=f"the real IMDB archive is not at {SHARED_IMDB}")
def test_real_imdb_archive_loads_balanced():
    splits = data.load_imdb(SHARED_IMDB.parent)
    for split in ("train", "test"):
        texts, labels, movies = splits[split]
        assert len(texts) == 25000 and all(movies)
        assert labels.sum() == 12500
        assert all(isinstance(t, str) and t for t in texts[:100])


def test_vocabulary_is_ranked_as_textvectorization_adapt_ranks_it():
    import tensorflow as tf

    # Ties of every kind: "b", "c" and "d" twice, "e" and "f" once, words across markup and case.
    texts = np.array(["A b c d.", "b C<br />a d", "e a, f", "a"], dtype=object)
    vectorizer = keras.layers.TextVectorization(standardize=model.clean_review)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(texts.astype(str)).batch(2))
    assert model.adapt_vocabulary(texts) == vectorizer.get_vocabulary(include_special_tokens=False)
    assert model.adapt_vocabulary(texts)[0] == "a"


def test_token_counts_follow_the_vectorizer_and_the_cap():
    texts = np.array(["One two three four.", "", "Don't<br />stop"], dtype=object)
    np.testing.assert_array_equal(model.token_counts(texts), [4, 0, 2])
    np.testing.assert_array_equal(model.token_counts(texts, sequence_length=3), [3, 0, 2])


def test_batches_hold_reviews_of_similar_length_and_every_review_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 1500, size=300).astype(np.int32)
    texts = np.array([f"{i} " + "w " * (n - 1) for i, n in enumerate(lengths)], dtype=object)
    labels = np.arange(300) % 2
    ds = data.dataset(texts, labels, model.token_counts(texts), batch_size=16, shuffle_seed=1)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == ds.cardinality().numpy()  # Keras' progress bar knows the epoch's length
    seen = []
    for batch_texts, batch_labels in batches:
        ids = [int(text.split()[0]) for text in batch_texts]
        np.testing.assert_array_equal(batch_labels, labels[ids])  # texts and labels stay paired
        buckets = np.searchsorted(data.BUCKETS, lengths[ids], side="right")
        assert len(set(buckets)) == 1 and len(ids) <= 16
        # Long reviews come fewer to a batch: no batch holds more tokens than 16 of 512.
        assert len(ids) * lengths[ids].max() <= 16 * data.TOKENS_PER_REVIEW
        seen += ids
    assert sorted(seen) == list(range(300))
    # Shuffled: another epoch, another order.
    assert [b[0][0] for b in ds.as_numpy_iterator()] != [b[0][0] for b in batches]


def tiny_model(**options):
    vocabulary = ["good", "bad", "film", "plot"]
    config = {
        **sentiment.DEFAULTS,
        "units": 4,
        "embedding_dim": 4,
        "vocab_size": 10,
        "seed": 0,
        "ngram_features": 0,
        **options,
    }
    keras.utils.set_random_seed(0)
    return model.build_model(config, data.Reviews((None, None), (None, None), vocabulary))


def test_the_model_reads_whole_reviews_or_the_first_sequence_length_tokens():
    import tensorflow as tf

    head, tails = "good film " * 3, ["bad plot " * 10, "good good " * 10]
    whole, capped = tiny_model(), tiny_model(sequence_length=6)
    for m, differ in ((whole, True), (capped, False)):
        probabilities = m(tf.constant([head + tail for tail in tails])).numpy()
        assert (abs(probabilities[0] - probabilities[1]) > 1e-6) == differ


def test_padding_to_the_batch_longest_review_changes_no_probability():
    import tensorflow as tf

    m = tiny_model()
    texts = ["good film", "bad plot " * 200, "", "film"]
    together = m(tf.constant(texts)).numpy().reshape(-1)
    alone = [m(tf.constant([text])).numpy().item() for text in texts]
    np.testing.assert_allclose(together, alone, atol=1e-6)  # an empty batch too
    # Evaluation sorts by length and puts the probabilities back in order.
    np.testing.assert_allclose(model.predict_by_length(m, np.array(texts, dtype=object)).reshape(-1), alone, atol=1e-6)


def test_the_ngram_path_is_the_baselines_model_weighed_after_training(make_imdb, tmp_path):
    from seqapps.apps.sentiment import baseline

    texts, labels, _ = data.load_imdb(make_imdb(tmp_path / "imdb"))["train"]
    train, validation = (texts[::2], labels[::2]), (texts[1::2], labels[1::2])
    classifier = baseline.fit_baseline(train, validation, max_features=50)
    assert len(classifier.ngrams) == len(classifier.weights) == 50 and any(" " in g for g in classifier.ngrams)
    config = {**sentiment.DEFAULTS, "units": 4, "embedding_dim": 4, "vocab_size": 10, "seed": 0, "ngram_features": 50}
    m = model.build_model(config, data.Reviews(train, validation, ["good", "bad"], classifier))
    assert "ngram_logit" not in {layer.name for layer in m.layers}  # the recurrent model trains alone
    recurrent_logits = keras.Model(m.input, m.get_layer("recurrent_logit").output).predict(texts, verbose=0)[:, 0]
    both, blend = model.with_ngram_path(m, classifier, validation)
    logits = keras.Model(both.input, both.get_layer("probability").input).predict(texts, verbose=0)

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    # The n-gram path is the baseline's model: bigrams are written alike by its vectorizer and the model's.
    np.testing.assert_allclose(sigmoid(logits[:, 1]), classifier.probabilities(texts), atol=1e-5)
    np.testing.assert_allclose(logits[:, 0], recurrent_logits, atol=1e-6)
    np.testing.assert_allclose(
        model.recurrent_probability(both).predict(texts, verbose=0)[:, 0], sigmoid(recurrent_logits), atol=1e-6
    )
    # The untrained recurrent path knows nothing: the blend leans on the n-gram path.
    assert blend["ngram_weight"] > abs(blend["recurrent_weight"])
    assert blend["val_accuracy"] >= 0.9 > blend["recurrent_val_accuracy"]
    weights = np.array([blend["recurrent_weight"], blend["ngram_weight"]])
    blended = sigmoid(logits @ weights + blend["bias"])
    np.testing.assert_allclose(both.predict(texts, verbose=0).reshape(-1), blended, atol=1e-5)
    both.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored.predict(texts, verbose=0).reshape(-1), blended, atol=1e-5)


@pytest.mark.slow
def test_a_run_with_the_ngram_path_trains_and_exports(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *TINY_TRAINING, "--ngram-features", "200"]
    sentiment.main(args)
    assert json.loads((run_dir / "config.json").read_text())["ngram_features"] == 200
    layers = {layer.name for layer in runs.load_model(run_dir).layers}
    assert layers >= {"recurrent_logit", "ngram_vectorizer", "ngram_logit"}
    blend = json.loads((run_dir / "state.json").read_text())["after_fit"]
    assert blend["val_accuracy"] >= blend["recurrent_val_accuracy"]
    keras.backend.clear_session()  # as in a fresh process: Keras' automatic layer names start over
    metrics = sentiment.main(["evaluate", "--run-dir", str(run_dir)])
    assert set(metrics["recurrent"]) == set(metrics["baseline"]) - {"model", "C"}
    # The export is checked against the Keras model in a TensorFlow-only process.
    export = sentiment.main(["export", "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")])
    probabilities, _ = commands.predict_texts(export, ["a superb moving film", ""])
    np.testing.assert_allclose(
        probabilities, commands.predict_texts(run_dir, ["a superb moving film", ""])[0], atol=1e-5
    )
