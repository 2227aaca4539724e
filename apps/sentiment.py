"""IMDB sentiment: raw review text in, probability of a positive review out.

    seqapps sentiment train --data-dir ../shared/data [--cell peephole] [--epochs 10]
    seqapps sentiment evaluate --run-dir runs/sentiment/<time>
    seqapps sentiment predict --model runs/sentiment/<time> "A wonderful film." "Dreadful."
    seqapps sentiment export --run-dir runs/sentiment/<time>

The model reads raw strings: cleaning (<br /> tags, case, punctuation) and the
vocabulary (TextVectorization, adapted on the training split only) live inside it,
and so inside the export.
"""

import re
import tarfile
import zlib
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from apps import runs
from apps.cli import UsageError, add_option, app_parser, as_bytes, read_inputs, run
from apps.export import agreement_check, export_savedmodel, is_savedmodel, load_serving_signature
from apps.plots import plot_confusion_matrix
from layers import GlobalMeanMaxPooling1D, make_rnn

DEFAULTS = {
    "cell": "lstm",
    "units": 64,
    "layers": 1,
    "bidirectional": True,
    "dropout": 0.25,
    "recurrent_dropout": 0.0,
    "vocab_size": 20000,
    "embedding_dim": 128,
    "sequence_length": 400,
    "validation_fraction": 0.1,
    "epochs": 10,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "patience": 2,
}

LABELS = np.array(["negative", "positive"])

# -- data -------------------------------------------------------------------------

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_ARCHIVES = ("aclImdb_v1.tar.gz", "aclImdb_v1_labeled.tar.gz")
IMDB_LAYOUT = "aclImdb/{train,test}/{pos,neg}/<id>_<stars>.txt, as a directory or inside " + " or ".join(IMDB_ARCHIVES)
REVIEW_PATH = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


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


def iter_review_files(source):
    """(relative path, bytes) of every review file, read straight from a tarball if need be."""
    if source.is_dir():
        for path in sorted(source.glob("*/*/*.txt")):
            yield path.relative_to(source).as_posix(), path.read_bytes()
        return
    try:
        with tarfile.open(source, "r:*") as archive:
            for member in archive:  # streaming: nothing is unpacked to disk
                if member.isfile() and REVIEW_PATH.search(member.name):
                    yield member.name, archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise UsageError(f"cannot read {source}: {e}; the archive is damaged, download it again") from None


def load_imdb(data_dir=None, splits=("train", "test")):
    """The Large Movie Review Dataset: {split: (texts, labels)}, label 1 = positive.

    `data_dir` holds the published layout (directory or tarball, see IMDB_LAYOUT);
    without it the official archive is downloaded once and cached.
    """
    source = find_imdb(data_dir)
    reviews = {split: [] for split in splits}
    progress = keras.utils.Progbar(None, unit_name="review")
    count = 0
    for name, raw in iter_review_files(source):
        match = REVIEW_PATH.search(name)
        if not match or match[1] not in reviews:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(
                f"{source}: review {name} is not UTF-8 text ({e.reason} at byte {e.start}); "
                "replace it with the file from the official archive"
            ) from None
        reviews[match[1]].append((int(match[2] == "pos"), int(match[3]), text))
        count += 1
        if count % 1000 == 0:
            progress.update(count)
    progress.update(count, finalize=True)
    result = {}
    for split, items in reviews.items():
        if not items:
            raise UsageError(f"no {split} reviews in {source}: expected {IMDB_LAYOUT}")
        items.sort()  # the order of files on disk or in the archive varies
        result[split] = (np.array([text for _, _, text in items], dtype=object), np.array([y for y, _, _ in items]))
    return result


def sample(texts, labels, limit, seed):
    """At most `limit` examples, drawn at random (seeded)."""
    if limit is None or limit >= len(texts):
        return texts, labels
    keep = np.random.default_rng(seed).permutation(len(texts))[:limit]
    return texts[keep], labels[keep]


def split_validation(texts, labels, fraction, seed):
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = max(1, int(round(len(texts) * fraction)))
    val, train = order[:n_val], order[n_val:]
    return (texts[train], labels[train]), (texts[val], labels[val])


def dataset(texts, labels, batch_size, shuffle_seed=None):
    ds = tf.data.Dataset.from_tensor_slices((texts.astype(str), labels.astype("float32")))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# -- model ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="seqapps")
def clean_review(text):
    """Lower-case, <br /> tags and punctuation to spaces; invalid UTF-8 bytes become U+FFFD."""
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    text = tf.strings.regex_replace(text, "'", "")
    return tf.strings.regex_replace(text, r"[^\pL\pN\s]", " ")


def build_model(config, vectorizer):
    """Raw text -> tokens -> Embedding -> recurrent layers -> pooled -> probability."""
    text = keras.Input(shape=(), dtype="string", name="text")
    x = keras.layers.Embedding(config["vocab_size"], config["embedding_dim"], mask_zero=True)(vectorizer(text))
    x = keras.layers.SpatialDropout1D(config["dropout"], seed=config["seed"])(x)
    for i in range(config["layers"]):
        x = make_rnn(
            config["cell"],
            config["units"],
            return_sequences=True,
            bidirectional=config["bidirectional"],
            dropout=config["dropout"] if i else 0.0,
            recurrent_dropout=config["recurrent_dropout"],
            seed=config["seed"] + i,
        )(x)
    x = GlobalMeanMaxPooling1D()(x)
    x = keras.layers.Dropout(config["dropout"], seed=config["seed"])(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(text, probability, name=f"sentiment_{config['cell']}")
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def adapt_vocabulary(train_texts, vocab_size):
    """The `vocab_size` most frequent tokens of the training texts (padding and OOV included)."""
    vectorizer = keras.layers.TextVectorization(max_tokens=vocab_size, standardize=clean_review)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_texts.astype(str)).batch(512))
    return vectorizer.get_vocabulary(include_special_tokens=False)


def make_vectorizer(config, vocabulary):
    """The model's TextVectorization; `vocabulary` is ordered by frequency, so any
    prefix of it is the vocabulary of that size."""
    return keras.layers.TextVectorization(
        max_tokens=config["vocab_size"],
        standardize=clean_review,
        output_sequence_length=config["sequence_length"],
        vocabulary=vocabulary[: config["vocab_size"] - 2],
        name="vectorizer",
    )


# -- commands ---------------------------------------------------------------------


def train_command(args):
    run_dir, config = runs.prepare_run_dir("sentiment", args, DEFAULTS)
    keras.utils.set_random_seed(config["seed"])
    data = load_imdb(config["data_dir"], splits=("train",))
    texts, labels = sample(*data["train"], config["limit"], config["seed"])
    (train_texts, train_labels), (val_texts, val_labels) = split_validation(
        texts, labels, config["validation_fraction"], config["seed"]
    )
    print(f"{len(train_texts):,} training and {len(val_texts):,} validation reviews; run directory {run_dir}")
    model = build_model(config, make_vectorizer(config, adapt_vocabulary(train_texts, config["vocab_size"])))
    runs.train(
        model,
        dataset(train_texts, train_labels, config["batch_size"], shuffle_seed=config["seed"]),
        dataset(val_texts, val_labels, config["batch_size"]),
        run_dir,
        config,
        monitor="val_accuracy",
        mode="max",
        verbose=args.verbose,
    )


def binary_metrics(labels, probabilities):
    """Accuracy, precision, recall, F1, ROC-AUC and the confusion matrix [[TN, FP], [FN, TP]]."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(probabilities) >= 0.5).astype(int)
    tp = int(np.sum((predicted == 1) & (labels == 1)))
    tn = int(np.sum((predicted == 0) & (labels == 0)))
    fp = int(np.sum((predicted == 1) & (labels == 0)))
    fn = int(np.sum((predicted == 0) & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    # ROC-AUC as the Mann-Whitney statistic: the chance that a random positive review
    # scores above a random negative one (ties count half).
    ranks = np.empty(len(labels))
    order = np.argsort(probabilities, kind="mergesort")
    ranks[order] = np.arange(1, len(labels) + 1)
    for value in np.unique(probabilities):
        tied = probabilities == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
    auc = (ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg) if n_pos and n_neg else None
    return {
        "examples": len(labels),
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": auc,
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def evaluate_command(args):
    model, out_dir = runs.load_model_to_evaluate(args.run_dir or args.model)
    config_path = out_dir / "config.json"
    config = runs.load_json(config_path) if config_path.exists() else {}
    texts, labels = load_imdb(args.data_dir or config.get("data_dir"), splits=("test",))["test"]
    texts, labels = sample(texts, labels, args.limit, config.get("seed", 0))
    probabilities = model.predict(tf.constant(texts.astype(str)), batch_size=256, verbose=1).reshape(-1)
    metrics = binary_metrics(labels, probabilities)
    runs.save_json(out_dir / "metrics.json", metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], LABELS, out_dir / "confusion_matrix.png")
    for name in ("examples", "accuracy", "precision", "recall", "f1", "roc_auc"):
        value = metrics[name]
        print(f"{name:>10}: {value:.4f}" if isinstance(value, float) else f"{name:>10}: {value}")
    print(f"confusion matrix [[TN, FP], [FN, TP]]: {metrics['confusion_matrix']}")
    print(f"Wrote {out_dir / 'metrics.json'} and {out_dir / 'confusion_matrix.png'}")
    return metrics


def predict_texts(model_path, texts):
    """(probabilities, labels) from a .keras model, a run directory or a SavedModel."""
    texts = tf.constant(as_bytes(texts), dtype=tf.string)
    if is_savedmodel(model_path):
        outputs = load_serving_signature(model_path)(text=texts)
        return outputs["probability"].numpy(), outputs["label"].numpy().astype(str)
    probabilities = runs.load_model(model_path).predict(texts, verbose=0).reshape(-1)
    return probabilities, LABELS[(probabilities >= 0.5).astype(int)]


def predict_command(args):
    texts = read_inputs(args)
    probabilities, labels = predict_texts(args.model, texts)
    for text, probability, label in zip(texts, probabilities, labels, strict=True):
        preview = text if len(text) <= 60 else text[:57] + "..."
        print(f"{probability:.4f}\t{label}\t{preview!r}")


# Inputs the export is checked on: ordinary reviews and the awkward ones.
EXPORT_CHECK_TEXTS = [
    "A wonderful, moving film.<br /><br />The acting is superb.",
    "Dull plot, wooden acting, a waste of two hours.",
    "",
    "   \t ",
    "película maravillosa, très bien 😀🎬",
    b"invalid utf-8 \xff\xfe bytes",
    "long " * 20000,
]


def export_command(args):
    model = runs.load_model(args.run_dir)

    def serve(text):
        probability = tf.reshape(model(text, training=False), [-1])
        return {"probability": probability, "label": tf.where(probability >= 0.5, "positive", "negative")}

    texts = np.array(as_bytes(EXPORT_CHECK_TEXTS), dtype="S")
    expected = model.predict(tf.constant(texts), verbose=0).reshape(-1)
    check = agreement_check({"text": texts}, {"probability": expected}, atol=1e-5)

    path = export_savedmodel(
        model, serve, [tf.TensorSpec([None], tf.string, name="text")], args.export_dir, args.version, check=check
    )
    print(f"Exported {path} (checked in a TensorFlow-only process on {len(texts)} inputs)")
    return path


def main(argv=None):
    parser, commands = app_parser("sentiment", __doc__, DEFAULTS)
    train = commands["train"]
    add_option(train, DEFAULTS, "--vocab-size", "vocabulary size", type=int)
    add_option(train, DEFAULTS, "--embedding-dim", "embedding size", type=int)
    add_option(train, DEFAULTS, "--sequence-length", "tokens kept per review", type=int)
    return run(
        parser,
        {"train": train_command, "evaluate": evaluate_command, "predict": predict_command, "export": export_command},
        argv,
    )


if __name__ == "__main__":
    main()
