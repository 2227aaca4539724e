"""The text apps on TensorFlow Datasets by name, offline: TFDS's own datasets mocked
(`tfds.testing.mock_data` makes examples from the builders' feature specs), and tiny
builders of our own, prepared for real in a temporary data directory."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seqapps.apps import sentiment, translation
from seqapps.apps.sentiment.data import load_reviews
from seqapps.tuning.__main__ import main as tune

SHARED_IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "aclImdb_v1_labeled.tar.gz"
TINY = ["--units", "4", "--embedding-dim", "8", "--epochs", "1", "--batch-size", "8", "--verbose", "0"]


class TinyReviews(tfds.core.GeneratorBasedBuilder):
    """Reviews with a train and a test split, no validation split."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["neg", "pos"])}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(50), "test": self._generate_examples(20)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"text": f"review {i}: " + ("a great film" if i % 2 else "an awful film"), "label": i % 2}


class TinyNews(tfds.core.GeneratorBasedBuilder):
    """Two text features and four classes: what the sentiment app must refuse."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "title": tfds.features.Text(),
            "body": tfds.features.Text(),
            "topic": tfds.features.ClassLabel(names=["world", "sports", "business", "science"]),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(8)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"title": f"title {i}", "body": f"body {i}", "topic": i % 4}


class OfflineOnly(tfds.core.GeneratorBasedBuilder):
    """A dataset whose download fails, as any does on a machine with no network."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["neg", "pos"])}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        raise ConnectionError("Failed to resolve 'example.org'")

    def _generate_examples(self):
        yield from ()


def error_of(main, args, capsys):
    """The one-line error of a command (after TFDS's own progress bars, if any)."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1].split("\r")[-1]
    assert last.startswith("seqapps "), err
    return last


@pytest.mark.slow
def test_sentiment_trains_evaluates_and_exports_on_a_tfds_dataset(tmp_path):
    run_dir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=24):
        sentiment.main(["train", "--dataset", "tfds:imdb_reviews", "--run-dir", str(run_dir), *TINY])
        metrics = sentiment.main(["evaluate", "--run-dir", str(run_dir)])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "tfds:imdb_reviews"
    assert metrics["examples"] == 24 and sum(map(sum, metrics["confusion_matrix"])) == 24
    export = sentiment.main(["export", "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")])
    assert (export / "saved_model.pb").is_file()


@pytest.mark.slow
def test_tuning_searches_on_a_tfds_dataset(tmp_path):
    fixed = [
        "units=4",
        "embedding_dim=8",
        "sequence_length=16",
        "batch_size=8",
        "layers=1",
        "dataset=tfds:imdb_reviews",
    ]
    with tfds.testing.mock_data(num_examples=24):
        summary = tune(
            ["sentiment", "--directory", str(tmp_path), "--tuner", "random", "--max-trials", "1", "--max-epochs", "1"]
            + ["--verbose", "0", *[arg for value in fixed for arg in ("--set", value)]]
        )
    assert summary["objective"] == "val_accuracy" and np.isfinite(summary["score"])


@pytest.mark.slow
def test_translation_trains_evaluates_and_exports_on_a_tfds_dataset(tmp_path):
    run_dir = tmp_path / "run"
    dataset = ["--dataset", "tfds:ted_hrlr_translate/pt_to_en", "--source", "pt", "--target", "en"]
    with tfds.testing.mock_data(num_examples=24):
        translation.main(["train", *dataset, "--run-dir", str(run_dir), *TINY, "--max-length", "8"])
        metrics = translation.main(["evaluate", "--run-dir", str(run_dir), "--beam-size", "2"])
    assert metrics["sentences"] >= 1 and "bleu" in metrics["greedy"]
    export = translation.main(["export", "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")])
    assert (export / "saved_model.pb").is_file()
    assert len(translation.main(["predict", "--model", str(export), "olá mundo"])) == 1


def config(dataset, **overrides):
    return {**sentiment.DEFAULTS, "dataset": dataset, "seed": 0, "limit": None, **overrides}


def test_own_splits_are_used_and_a_missing_validation_split_is_carved_from_train(tmp_path):
    splits = load_reviews(config("tfds:tiny_reviews"), str(tmp_path), ("train", "validation", "test"))
    assert [len(splits[s][0]) for s in ("train", "validation", "test")] == [45, 5, 20]
    train, validation = (set(splits[s][0]) for s in ("train", "validation"))
    assert not train & validation and all(text.startswith("review") for text in train)
    assert set(splits["test"][1]) == {0, 1}
    again = load_reviews(config("tfds:tiny_reviews"), str(tmp_path), ("validation",))["validation"]
    np.testing.assert_array_equal(again[0], splits["validation"][0])  # the same seeded rows each time
    limited = load_reviews(config("tfds:tiny_reviews", limit=7), str(tmp_path), ("train", "test"))
    assert [len(limited[s][0]) for s in ("train", "test")] == [7, 7]


def test_features_are_found_or_refused_with_the_candidates(tmp_path, capsys):
    train = ["train", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run"), *TINY]
    err = error_of(sentiment.main, [*train, "--dataset", "tfds:tiny_news"], capsys)
    assert "tiny_news" in err and "several text features (title, body): choose one with --text-feature" in err
    err = error_of(sentiment.main, [*train, "--dataset", "tfds:tiny_news", "--text-feature", "body"], capsys)
    assert "'topic' has 4 classes (world, sports, business, science)" in err and "binary label" in err
    err = error_of(sentiment.main, [*train, "--dataset", "tfds:tiny_news", "--text-feature", "summary"], capsys)
    assert "no text feature 'summary'; its text features are: title, body" in err


def test_unknown_and_unavailable_datasets_get_one_line_errors(tmp_path, capsys):
    train = ["train", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run")]
    err = error_of(sentiment.main, [*train, "--dataset", "tfds:no_such_dataset"], capsys)
    assert "--dataset tfds:no_such_dataset: Dataset no_such_dataset not found" in err
    err = error_of(sentiment.main, [*train, "--dataset", "tfds:offline_only"], capsys)
    assert f"offline_only/1.0.0 is not prepared in {tmp_path}" in err and "ConnectionError" in err
    err = error_of(sentiment.main, [*train, "--dataset", "yelp"], capsys)
    assert "expected imdb or tfds:NAME[/CONFIG], got 'yelp'" in err
    err = error_of(translation.main, [*train, "--dataset", "tfds:tiny_reviews"], capsys)
    assert "--source spa --target eng: tiny_reviews has the texts text" in err


def test_published_imdb_files_keep_their_split_sizes(make_imdb, tmp_path):
    imdb = make_imdb(tmp_path, per_class=(20, 10))
    splits = load_reviews(config("imdb", split_by_movie=False), str(imdb), ("train", "validation", "test"))
    assert [len(splits[s][0]) for s in ("train", "validation", "test")] == [36, 4, 20]
    # By movie: the 8 reviews (4 of each label) of the one movie that holds the 4 wanted.
    splits = load_reviews(config("imdb"), str(imdb), ("train", "validation", "test"))
    assert [len(splits[s][0]) for s in ("train", "validation", "test")] == [32, 8, 20]


@pytest.mark.skipif(not SHARED_IMDB.exists(), reason=f"the real IMDB archive is not at {SHARED_IMDB}")
def test_real_imdb_files_keep_their_split_sizes():
    splits = load_reviews(config("imdb"), str(SHARED_IMDB.parent), ("train", "validation", "test"))
    sizes = [len(splits[s][0]) for s in ("train", "validation", "test")]
    # Validation: the reviews of whole movies, 2,500 and those of the last movie drawn (at most 30).
    assert sizes[0] + sizes[1] == 25000 and 2500 <= sizes[1] < 2530 and sizes[2] == 25000
    splits = load_reviews(config("imdb", split_by_movie=False), str(SHARED_IMDB.parent), ("train", "validation"))
    assert [len(splits[s][0]) for s in ("train", "validation")] == [22500, 2500]
