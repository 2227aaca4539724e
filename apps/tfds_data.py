"""Datasets from TensorFlow Datasets (TFDS), by name, for the text apps.

`--dataset tfds:NAME[/CONFIG]` (also `tfds:NAME:CONFIG`) names a TFDS dataset. It is
prepared (downloaded and generated) once in `--data-dir`, TFDS's data directory
(default ~/tensorflow_datasets), and read from there offline afterwards. The apps
use its own train/validation/test splits; where it has no validation or no test
split, a seeded share of train stands in (`carve_splits`).
"""

import argparse

import numpy as np

from seqapps.apps.cli import UsageError

# tensorflow_datasets (and with it TensorFlow) is imported where a dataset is read: the
# apps' option tables use `dataset_type`, and the command line loads no TensorFlow.

PREFIX = "tfds:"
SPLITS = ("train", "validation", "test")


def tfds_name(dataset: str | None) -> str | None:
    """`NAME/CONFIG` of a `tfds:NAME[:CONFIG]` dataset, None for any other dataset."""
    if not dataset or not dataset.startswith(PREFIX):
        return None
    name = dataset[len(PREFIX) :].replace(":", "/")
    if not name:
        raise UsageError(f"--dataset {dataset}: name the TFDS dataset, e.g. {PREFIX}imdb_reviews")
    return name


def dataset_type(*names: str):
    """An argparse type for --dataset: one of `names`, or tfds:NAME[/CONFIG]."""

    def check(text):
        if text not in names and not (text.startswith(PREFIX) and len(text) > len(PREFIX)):
            raise argparse.ArgumentTypeError(f"expected {' or '.join(names)} or {PREFIX}NAME[/CONFIG], got {text!r}")
        return text

    return check


def tfds_builder(name: str, data_dir: str | None):
    """The TFDS builder of `name` with `data_dir` as its data directory. Its features
    are known before it is prepared; `prepare` makes its splits readable."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except ValueError as e:  # an unknown dataset or config
        first_line = str(e).strip().splitlines()[0]
        raise UsageError(f"--dataset {PREFIX}{name}: {first_line} (see `tfds.list_builders()`)") from None


def prepare(builder) -> None:
    """Download and generate the dataset in its data directory, unless it is there."""
    if builder.is_prepared():
        return
    name = builder.info.full_name
    print(f"Preparing TFDS dataset {name} in {builder.data_dir} (downloaded once)")
    try:
        builder.download_and_prepare()
    except Exception as e:  # anything TFDS raises while downloading or generating
        reason = str(e).strip().splitlines()[0] if str(e).strip() else "no details"
        raise UsageError(
            f"TFDS dataset {name} is not prepared in {builder.data_dir} and could not be prepared "
            f"({type(e).__name__}: {reason}); prepare it where it can be downloaded "
            f"(`tfds build {name.split('/')[0]} --data_dir DIR`) and pass DIR as --data-dir"
        ) from None


def features_of(builder, kind) -> list[str]:
    """Names of the top-level features of the dataset that are instances of `kind`."""
    return [key for key, feature in builder.info.features.items() if isinstance(feature, kind)]


def find_feature(builder, kind, given: str | None, what: str, option: str) -> str:
    """The feature of type `kind` to read: `given`, else the only one, else the
    dataset's supervised (input, label) key of that type; a one-line error if none
    or several remain."""
    name = builder.info.full_name
    candidates = features_of(builder, kind)
    if given is not None:
        if given not in candidates:
            raise UsageError(
                f"{name} has no {what} feature {given!r}; its {what} features are: {', '.join(candidates) or 'none'}"
            )
        return given
    if len(candidates) > 1:
        candidates = [key for key in candidates if key in (builder.info.supervised_keys or ())] or candidates
    if not candidates:
        raise UsageError(f"{name} has no {what} feature; its features are: {', '.join(builder.info.features)}")
    if len(candidates) > 1:
        raise UsageError(f"{name} has several {what} features ({', '.join(candidates)}): choose one with {option}")
    return candidates[0]


def read_split(builder, split: str, keys: list[str]) -> dict[str, np.ndarray]:
    """The columns `keys` of one split, as arrays (text as `str` objects)."""
    import tensorflow_datasets as tfds

    columns = {key: [] for key in keys}
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
        for key in keys:
            columns[key].append(example[key])
    return {key: as_array(values) for key, values in columns.items()}


def as_array(values: list) -> np.ndarray:
    if values and isinstance(values[0], bytes):
        return np.array([v.decode("utf-8", errors="replace") for v in values], dtype=object)
    return np.array(values)


def carve_splits(train: dict[str, np.ndarray], missing, *, seed: int, validation_fraction: float, test_fraction: float):
    """Train columns split into train and each `missing` split: a seeded share of the
    rows, the test share first, so that every command carves the same rows."""
    rows = len(next(iter(train.values())))
    order = np.random.default_rng(seed).permutation(rows)
    splits = {}
    for split, fraction in (("test", test_fraction), ("validation", validation_fraction)):
        if split in missing:
            size = max(1, int(round(rows * fraction)))
            splits[split], order = np.sort(order[:size]), order[size:]
    splits["train"] = np.sort(order)
    return {split: {key: values[indices] for key, values in train.items()} for split, indices in splits.items()}


def load_splits(builder, keys: list[str], wanted, config: dict):
    """{split: {key: array}} for the `wanted` splits of train, validation and test,
    the dataset prepared first if need be; `config` gives the `seed`,
    `validation_fraction` and `test_fraction` of the carved splits."""
    prepare(builder)
    # TFDS knows no split names only for a mocked dataset, which accepts any.
    own = [split for split in SPLITS if split in builder.info.splits] if builder.info.splits else list(SPLITS)
    if "train" not in own:
        raise UsageError(f"{builder.info.full_name} has no train split (its splits: {', '.join(own) or 'none'})")
    missing = [split for split in SPLITS if split not in own]
    columns = {split: read_split(builder, split, keys) for split in wanted if split in own and split != "train"}
    if "train" in wanted or any(split in missing for split in wanted):
        carved = carve_splits(
            read_split(builder, "train", keys),
            missing,
            seed=config["seed"],
            validation_fraction=config["validation_fraction"],
            test_fraction=config["test_fraction"],
        )
        columns.update(carved)
    return {split: columns[split] for split in wanted}
