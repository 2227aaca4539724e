"""The reviews: the Large Movie Review Dataset (IMDB) read from its published files,
or any TFDS dataset of texts with a binary label; the splits, and the tf.data
pipelines."""

import json
import re
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from seqapps.apps.batching import batch_count, bucket_by_length
from seqapps.apps.cli import UsageError, string_tensor
from seqapps.apps.sentiment.baseline import NgramClassifier, fit_baseline
from seqapps.apps.sentiment.model import adapt_vocabulary, token_counts
from seqapps.apps.tfds_data import find_feature, load_splits, tfds_builder, tfds_name

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_ARCHIVES = ("aclImdb_v1.tar.gz", "aclImdb_v1_labeled.tar.gz")
IMDB_LAYOUT = "aclImdb/{train,test}/{pos,neg}/<id>_<stars>.txt, as a directory or inside " + " or ".join(IMDB_ARCHIVES)
REVIEW_PATH = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
# Line i of urls_<label>.txt is the IMDB page of the movie that review i of that label is about.
URLS_PATH = re.compile(r"(?:^|/)(train|test)/urls_(pos|neg)\.txt$")
MOVIE_ID = re.compile(r"/title/(tt\d+)")
# The 50,000 unlabeled reviews, in the official archive and in aclImdb_v1_unsup.tar.gz.
UNLABELED_PATH = re.compile(r"(?:^|/)train/unsup/(\d+)_0\.txt$")
UNLABELED_ARCHIVES = ("aclImdb_v1.tar.gz", "aclImdb_v1_unsup.tar.gz")
UNLABELED_LAYOUT = "aclImdb/train/unsup/<id>_0.txt, as a directory or inside " + " or ".join(UNLABELED_ARCHIVES)


def find_imdb(data_dir):
    """The IMDB source: an `aclImdb` directory or a tarball; downloads one without `data_dir`."""
    if data_dir is None:
        return Path(keras.utils.get_file(origin=IMDB_URL))  # cached in ~/.keras/datasets, not unpacked
    path = Path(data_dir)
    if path.is_file():
        return path
    for candidate in (path / "aclImdb", path):
        if (candidate / "train").is_dir() or (candidate / "test").is_dir():
            return candidate
    for name in IMDB_ARCHIVES:
        if (path / name).is_file():
            return path / name
    raise UsageError(f"no IMDB data in {path}: expected {IMDB_LAYOUT}")


def iter_review_files(source, patterns=(REVIEW_PATH, URLS_PATH)):
    """(relative path, bytes) of every file whose path matches one of `patterns`, read
    straight from a tarball if need be, with a progress bar: files read of all files,
    or megabytes of the archive."""
    if source.is_dir():
        paths = sorted([*source.glob("*/*/*.txt"), *source.glob("*/urls_*.txt")])
        paths = [path for path in paths if any(p.search(path.relative_to(source).as_posix()) for p in patterns)]
        progress = keras.utils.Progbar(len(paths), unit_name="file")
        for i, path in enumerate(paths, 1):
            yield path.relative_to(source).as_posix(), path.read_bytes()
            if i % 1000 == 0 or i == len(paths):
                progress.update(i)
        return
    megabytes = source.stat().st_size / 2**20
    progress = keras.utils.Progbar(max(1, round(megabytes)), unit_name="MB")
    try:
        with open(source, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as archive:
            for member in archive:  # streaming: nothing is unpacked to disk
                if member.isfile() and any(pattern.search(member.name) for pattern in patterns):
                    yield member.name, archive.extractfile(member).read()
                    progress.update(round(raw.tell() / 2**20), finalize=False)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise UsageError(f"cannot read {source}: {e}; the archive is damaged, download it again") from None
    progress.update(max(1, round(megabytes)), finalize=True)


def load_imdb(data_dir=None, splits=("train", "test")):
    """The Large Movie Review Dataset: {split: (texts, labels, movies)}, label 1 =
    positive, movies the IMDB title id each review is about ("" where the archive
    has no urls_*.txt).

    `data_dir` holds the published layout (directory or tarball, see IMDB_LAYOUT);
    without it the official archive is downloaded once and cached.
    """
    source = find_imdb(data_dir)
    reviews = {split: [] for split in splits}
    urls = {}
    for name, raw in iter_review_files(source):
        if match := URLS_PATH.search(name):
            urls[match[1], int(match[2] == "pos")] = raw.decode("utf-8", errors="replace").splitlines()
            continue
        match = REVIEW_PATH.search(name)
        if not match or match[1] not in reviews:
            continue
        reviews[match[1]].append((int(match[2] == "pos"), int(match[3]), decode_review(source, name, raw)))
    result = {}
    for split, items in reviews.items():
        if not items:
            raise UsageError(f"no {split} reviews in {source}: expected {IMDB_LAYOUT}")
        items.sort()  # the order of files on disk or in the archive varies
        result[split] = (
            np.array([text for _, _, text in items], dtype=object),
            np.array([y for y, _, _ in items]),
            np.array([movie_id(urls.get((split, y), []), i) for y, i, _ in items], dtype=object),
        )
    return result


def decode_review(source, name, raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{source}: review {name} is not UTF-8 text ({e.reason} at byte {e.start}); "
            "replace it with the file from the official archive"
        ) from None


def find_unlabeled(data_dir):
    """Where the unlabeled reviews are: an `aclImdb` directory with train/unsup, the
    official archive, or aclImdb_v1_unsup.tar.gz; downloads the official one without `data_dir`."""
    if data_dir is None:
        return find_imdb(None)
    path = Path(data_dir)
    if path.is_file():
        return path
    for candidate in (path / "aclImdb", path):
        if (candidate / "train" / "unsup").is_dir():
            return candidate
    for name in UNLABELED_ARCHIVES:
        if (path / name).is_file():
            return path / name
    raise UsageError(f"no unlabeled IMDB reviews in {path}: expected {UNLABELED_LAYOUT}")


def load_unlabeled(data_dir=None):
    """The 50,000 unlabeled reviews of the Large Movie Review Dataset, in the order of their ids."""
    source = find_unlabeled(data_dir)
    reviews = sorted(
        (int(UNLABELED_PATH.search(name)[1]), decode_review(source, name, raw))
        for name, raw in iter_review_files(source, (UNLABELED_PATH,))
    )
    if not reviews:
        raise UsageError(f"no unlabeled reviews in {source}: expected {UNLABELED_LAYOUT}")
    return np.array([text for _, text in reviews], dtype=object)


def movie_id(url_lines, review_id):
    """The IMDB title id on line `review_id` of a urls_*.txt file; "" if there is none."""
    found = MOVIE_ID.search(url_lines[review_id]) if review_id < len(url_lines) else None
    return found[1] if found else ""


def sample(texts, labels, limit, seed, movies=None):
    """At most `limit` examples, drawn at random (seeded): (texts, labels[, movies])."""
    columns = (texts, labels) if movies is None else (texts, labels, movies)
    if limit is None or limit >= len(texts):
        return columns
    keep = np.random.default_rng(seed).permutation(len(texts))[:limit]
    return tuple(column[keep] for column in columns)


def split_validation(texts, labels, fraction, seed, movies=None):
    """(train, validation) (texts, labels): a seeded `fraction` of the reviews, or,
    given each review's movie, of the movies (as many reviews as `fraction` of them).
    IMDB's test reviews are about other movies than its training reviews; validation
    reviews about movies of the training split would score names and plots learned
    by heart, and a validation accuracy above what the test split gives."""
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(len(texts) * fraction)))
    if movies is not None and not all(movies):
        print(
            f"warning: {sum(not m for m in movies):,} of {len(movies):,} training reviews have no movie "
            "(urls_pos.txt/urls_neg.txt missing or short), so validation reviews are drawn one by one, not by "
            "movie: validation accuracy then reads about 3 points above the test split's. Give the urls files, "
            "or pass --no-split-by-movie to choose this.",
            file=sys.stderr,
        )
        movies = None
    if movies is None:
        val = rng.permutation(len(texts))[:n_val]
    else:
        titles, of_review, counts = np.unique(movies.astype(str), return_inverse=True, return_counts=True)
        order = rng.permutation(len(titles))
        chosen = order[: np.searchsorted(np.cumsum(counts[order]), n_val) + 1]
        val = np.flatnonzero(np.isin(of_review, chosen))
    is_val = np.zeros(len(texts), dtype=bool)
    is_val[val] = True
    return (texts[~is_val], labels[~is_val]), (texts[is_val], labels[is_val])


def tfds_reviews(name, config, data_dir, wanted):
    """{split: (texts, labels)} of a TFDS dataset with a text feature and a binary label."""
    builder = tfds_builder(name, data_dir)
    text = find_feature(builder, tfds.features.Text, config["text_feature"], "text", "--text-feature")
    label = find_feature(builder, tfds.features.ClassLabel, config["label_feature"], "label", "--label-feature")
    classes = builder.info.features[label].names
    if len(classes) != 2:
        raise UsageError(
            f"{name}: {label!r} has {len(classes)} classes ({', '.join(classes)}); the sentiment app tells two "
            "apart (negative = 0, positive = 1): choose a dataset with a binary label"
        )
    splits = load_splits(builder, [text, label], wanted, config)
    return {
        split: sample(columns[text], columns[label], config["limit"], split_seed(config))
        for split, columns in splits.items()
    }


def split_seed(config):
    """The seed that draws the splits: --split-seed, else --seed (runs before the option have only that)."""
    return config["seed"] if config.get("split_seed") is None else config["split_seed"]


def load_reviews(config, data_dir, wanted):
    """{split: (texts, labels)} of the `wanted` splits (train, validation, test), at
    most --limit each: IMDB's published files in `data_dir` (validation: a seeded
    share of its train split), or a TFDS dataset prepared in `data_dir`."""
    name = tfds_name(config["dataset"])
    if name:
        return tfds_reviews(name, config, data_dir, wanted)
    # One pass over the files: IMDB's train split holds the validation reviews too.
    published = [
        split for split in ("train", "test") if split in wanted or (split == "train" and "validation" in wanted)
    ]
    reviews = load_imdb(data_dir, splits=tuple(published))
    seed = split_seed(config)
    splits = {}
    if "train" in reviews:
        texts, labels, movies = reviews["train"]
        texts, labels, movies = sample(texts, labels, config["limit"], seed, movies)
        splits["train"], splits["validation"] = split_validation(
            texts, labels, config["validation_fraction"], seed, movies if config["split_by_movie"] else None
        )
    if "test" in reviews:
        splits["test"] = sample(*reviews["test"][:2], config["limit"], seed)
    return {split: splits[split] for split in wanted}


@dataclass
class Reviews:
    """What a run trains on: (texts, labels) of the training and validation splits,
    the training split's vocabulary, by frequency (any prefix is the vocabulary of
    that size), and with --ngram-features the baseline fitted on the training split
    over that many unigrams and bigrams."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    vocabulary: list[str]
    ngram_classifier: NgramClassifier | None = None


def load(config) -> Reviews:
    splits = load_reviews(config, config["data_dir"], ("train", "validation"))
    train, validation = splits["train"], splits["validation"]
    print(f"{len(train[0]):,} training and {len(validation[0]):,} validation reviews")
    classifier = None
    if config["ngram_features"]:
        print(f"Fitting the n-gram path on the {config['ngram_features']:,} most frequent unigrams and bigrams ...")
        classifier = fit_baseline(train, validation, config["ngram_features"])
    if config.get("pretrained"):
        vocabulary = json.loads((Path(config["pretrained"]) / "vocabulary.json").read_text())
    else:
        vocabulary = adapt_vocabulary(train[0])
    return Reviews(train, validation, vocabulary, classifier)


# Batches hold reviews of similar length (in tokens), so that few padding steps are run.
BUCKETS = [64, 96, 128, 160, 192, 256, 320, 400, 512, 640, 800, 1024]
# Reviews longer than this come in smaller batches of at most batch_size * TOKENS_PER_REVIEW
# tokens: the memory of a training step grows with the tokens in its batch.
TOKENS_PER_REVIEW = 512


def bucket_batch_sizes(lengths, batch_size):
    """The batch size of each bucket: `batch_size`, or fewer reviews where they are long."""
    longest = np.minimum(np.array(BUCKETS + [np.inf]) - 1, max(1, int(np.max(lengths, initial=1))))
    return [int(np.clip(batch_size * TOKENS_PER_REVIEW // n, 1, batch_size)) for n in longest]


def dataset(texts, labels, lengths, batch_size, shuffle_seed=None):
    """(texts, labels) batches of reviews of similar `lengths`, shuffled with `shuffle_seed`."""
    ds = tf.data.Dataset.from_tensor_slices((string_tensor(texts), labels.astype("float32"), lengths))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    sizes = bucket_batch_sizes(lengths, batch_size)
    ds = bucket_by_length(ds, lambda text, label, length: length, lengths, BUCKETS, sizes)
    return ds.map(lambda text, label, length: (text, label)).prefetch(tf.data.AUTOTUNE)


def training_batches(config, reviews: Reviews):
    """The number of batches in an epoch of `datasets`' training reviews."""
    lengths = token_counts(reviews.train[0], config["sequence_length"])
    return batch_count(lengths, BUCKETS, bucket_batch_sizes(lengths, config["batch_size"]))


def datasets(config, reviews: Reviews, model):
    def lengths(texts):
        return token_counts(texts, config["sequence_length"])

    train_texts, train_labels = reviews.train
    validation_texts, validation_labels = reviews.validation
    return (
        dataset(train_texts, train_labels, lengths(train_texts), config["batch_size"], shuffle_seed=config["seed"]),
        dataset(validation_texts, validation_labels, lengths(validation_texts), config["batch_size"]),
    )
