"""Sentence pairs: the manythings.org/anki files with the split that keeps every
sentence in one split, or any TFDS translation dataset; and length-bucketed tf.data
pipelines."""

import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from seqapps.apps.batching import bucket_by_length
from seqapps.apps.cli import UsageError, string_tensor
from seqapps.apps.tfds_data import SPLITS, features_of, load_splits, tfds_builder, tfds_name
from seqapps.apps.translation.text import adapt_vocabularies

SPA_ENG_URL = "http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip"


def find_pairs_file(data_dir, language):
    """The pairs file for English-`language`: `data_dir` itself if it is a file, else
    `<language>-eng.zip` or `<language>.txt` inside it; downloads spa-eng.zip without it."""
    if data_dir is None:
        if language != "spa":
            raise UsageError(
                f"no download for {language}-eng: get {language}-eng.zip from manythings.org/anki "
                "and pass its directory with --data-dir"
            )
        return Path(keras.utils.get_file("spa-eng.zip", origin=SPA_ENG_URL))  # cached in ~/.keras/datasets
    path = Path(data_dir)
    if path.is_file():
        return path
    candidates = [path / f"{language}-eng.zip", path / f"{language}.txt", path / f"{language}-eng" / f"{language}.txt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(
        f"no {language}-eng sentence pairs in {path}: expected one of "
        + ", ".join(c.name if c.parent == path else str(c.relative_to(path)) for c in candidates)
    )


def read_pairs_text(path, language):
    if path.suffix != ".zip":
        return path.read_bytes().decode("utf-8", errors="replace")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if Path(n).name == f"{language}.txt"]
            if not names:
                raise UsageError(
                    f"{path} holds no {language}.txt; is it the {language}-eng file from manythings.org/anki?"
                )
            return archive.read(names[0]).decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError) as e:
        raise UsageError(f"cannot read {path}: {e}; the archive is damaged, download it again") from None


def load_pairs(data_dir=None, language="spa"):
    """English-`language` sentence pairs: (english, other, malformed), where malformed
    lists the line numbers skipped for lacking a tab or a side."""
    path = find_pairs_file(data_dir, language)
    english, other, malformed = [], [], []
    for number, line in enumerate(read_pairs_text(path, language).splitlines(), 1):
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) >= 2 and fields[0] and fields[1]:
            english.append(fields[0])
            other.append(fields[1])
        elif line.strip():
            malformed.append(number)
    if not english:
        raise UsageError(f"{path}: no sentence pairs; expected lines of English<TAB>{language}[<TAB>attribution]")
    return np.array(english, dtype=object), np.array(other, dtype=object), malformed


def load_translation_pairs(config):
    """(sources, targets) in the direction `config` asks for, malformed lines reported."""
    source, target = config["source"], config["target"]
    if "eng" not in (source, target) or source == target:
        raise UsageError(
            f"--source {source} --target {target}: the pairs files hold English and one other "
            "language, so one side must be eng and the other differ"
        )
    language = target if source == "eng" else source
    english, other, malformed = load_pairs(config["data_dir"], language)
    if malformed:
        print(
            f"Skipped {len(malformed)} malformed lines (no tab or an empty side), e.g. line {malformed[0]}.",
            file=sys.stderr,
        )
    return (english, other) if source == "eng" else (other, english)


def split_pairs(sources, targets, validation_fraction, test_fraction, seed):
    """Seeded train/validation/test index arrays. Pairs that share a sentence, on
    either side, land in the same split: a test sentence is never seen in training,
    neither as a source nor as a translation."""
    parent = list(range(len(sources)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for side in (sources, targets):
        first = {}
        for i, sentence in enumerate(side):
            j = first.setdefault(sentence, i)
            parent[find(i)] = find(j)
    roots = np.array([find(i) for i in range(len(sources))])
    groups = np.unique(roots)
    groups = groups[np.random.default_rng(seed).permutation(len(groups))]
    n_test = int(round(len(groups) * test_fraction))
    n_val = int(round(len(groups) * validation_fraction))
    split_of = dict.fromkeys(groups[:n_test], 2) | dict.fromkeys(groups[n_test : n_test + n_val], 1)
    assigned = np.array([split_of.get(r, 0) for r in roots])
    return tuple(np.flatnonzero(assigned == k) for k in range(3))


def sample(indices, limit, seed):
    """At most `limit` of `indices`, drawn at random (seeded), in their original order."""
    if limit is None or limit >= len(indices):
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, limit, replace=False))


def tfds_pairs(name, config, wanted):
    """{split: (sources, targets)} of a TFDS dataset whose features include the
    --source and --target texts."""
    builder = tfds_builder(name, config["data_dir"])
    languages = features_of(builder, tfds.features.Text)
    source, target = config["source"], config["target"]
    if source not in languages or target not in languages or source == target:
        raise UsageError(
            f"--source {source} --target {target}: {name} has the texts {', '.join(languages)}; "
            "name two of them with --source and --target"
        )
    splits = load_splits(builder, [source, target], wanted, config)
    return {split: (columns[source], columns[target]) for split, columns in splits.items()}


def split_data(config, wanted=SPLITS):
    """{split: (sources, targets)} of the `wanted` splits (train, validation, test),
    --limit applied: the anki pairs split by sentence, or a TFDS dataset's splits."""
    # A run of an earlier version has no dataset in its config: it read anki pairs.
    name = tfds_name(config.get("dataset", "anki"))
    if name:
        splits = tfds_pairs(name, config, wanted)
    else:
        sources, targets = load_translation_pairs(config)
        indices = split_pairs(
            sources,
            targets,
            validation_fraction=config["validation_fraction"],
            test_fraction=config["test_fraction"],
            seed=config["seed"],
        )
        splits = {split: (sources[i], targets[i]) for split, i in zip(SPLITS, indices, strict=True) if split in wanted}
    kept = {split: sample(np.arange(len(pair[0])), config["limit"], config["seed"]) for split, pair in splits.items()}
    return {split: (sources[kept[split]], targets[kept[split]]) for split, (sources, targets) in splits.items()}


BUCKETS = [6, 8, 10, 12, 15, 20, 30]


def dataset(model, sources, targets, batch_size, shuffle_seed=None):
    """((source ids, target ids in), target ids out) batches of sentences of similar length."""
    source_ids = model.source_ids(string_tensor(sources))
    target_ids = model.target_ids(string_tensor(targets))

    source_lengths, target_lengths = (tf.reduce_sum(tf.cast(ids != 0, tf.int32), 1) for ids in (source_ids, target_ids))
    ds = tf.data.Dataset.from_tensor_slices((source_ids, source_lengths, target_ids, target_lengths))
    ds = ds.map(lambda source, source_length, target, target_length: (source[:source_length], target[:target_length]))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(sources), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = bucket_by_length(
        ds,
        lambda source, target: tf.maximum(tf.shape(source)[0], tf.shape(target)[0]),
        np.maximum(source_lengths.numpy(), target_lengths.numpy()),
        BUCKETS,
        [batch_size] * (len(BUCKETS) + 1),
    )
    return ds.map(lambda source, target: ((source, target[:, :-1]), target[:, 1:])).prefetch(tf.data.AUTOTUNE)


@dataclass
class Pairs:
    """What a run trains on: (sources, targets) of the training and validation splits,
    and the vocabularies and target casing of the training split."""

    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    source_vocabulary: list[str]
    target_vocabulary: list[str]
    casing: dict[str, str]


def load(config) -> Pairs:
    splits = split_data(config, ("train", "validation"))
    print(", ".join(f"{len(splits[s][0]):,} {s}" for s in splits) + " pairs")
    return Pairs(splits["train"], splits["validation"], *adapt_vocabularies(config, *splits["train"]))


def datasets(config, pairs: Pairs, model):
    return (
        dataset(model, *pairs.train, config["batch_size"], shuffle_seed=config["seed"]),
        dataset(model, *pairs.validation, config["batch_size"]),
    )
