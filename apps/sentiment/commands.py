"""`seqapps sentiment evaluate | predict | export`."""

import sys

import keras
import numpy as np
import tensorflow as tf

from seqapps.apps import runs
from seqapps.apps.cli import as_bytes, read_inputs
from seqapps.apps.export import export_savedmodel, is_savedmodel, load_serving_signature
from seqapps.apps.plots import plot_confusion_matrix
from seqapps.apps.sentiment.baseline import fit_baseline
from seqapps.apps.sentiment.data import load_reviews
from seqapps.apps.sentiment.model import predict_by_length, recurrent_probability
from seqapps.apps.tables import text_table

LABELS = np.array(["negative", "positive"])
BASELINE = "NB-weighted logistic regression over binary unigrams and bigrams"


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


def evaluate(args):
    """The model's metrics on the test split, and beside them (under "baseline") those
    of the NB-weighted bag-of-n-grams baseline fitted on the run's training split."""
    model, out_dir = runs.load_model_to_evaluate(args.run_dir or args.model)
    config_path = out_dir / "config.json"
    config = runs.load_json(config_path) if config_path.exists() else {}
    # A model without its run, or a run of an earlier version: the test split of IMDB,
    # and the baseline fitted on a training split drawn as those versions drew it.
    earlier = {"dataset": "imdb", "seed": 0, "validation_fraction": 0.1, "limit": None, "split_by_movie": False}
    assumed = {key: value for key, value in earlier.items() if key not in config}
    if assumed:
        print(
            f"warning: {config_path} {'lacks ' + ', '.join(assumed) if config else 'does not exist'}; assuming "
            + ", ".join(f"{key}={value}" for key, value in assumed.items())
            + " (recorded in metrics.json under 'assumed'): evaluate the run directory to use its own settings",
            file=sys.stderr,
        )
    config = {**earlier, **config}
    data_dir = args.data_dir or config.get("data_dir")
    texts, labels = load_reviews({**config, "limit": args.limit}, data_dir, ("test",))["test"]
    recurrent = recurrent_probability(model)
    if recurrent is model:
        metrics = binary_metrics(labels, predict_by_length(model, texts).reshape(-1))
    else:  # the blend, and beside it the recurrent path on its own
        # Named: a loaded model's layers keep their names, and Keras' automatic ones start over in a new process.
        both = keras.Model(
            model.input, keras.layers.Concatenate(name="blend_and_recurrent")([model.output, recurrent.output])
        )
        probabilities = predict_by_length(both, texts)
        metrics = binary_metrics(labels, probabilities[:, 0])
        metrics["recurrent"] = binary_metrics(labels, probabilities[:, 1])
    print("Fitting the bag-of-n-grams baseline on the training split ...")
    splits = load_reviews(config, data_dir, ("train", "validation"))  # the run's own, with its --limit
    baseline = fit_baseline(splits["train"], splits["validation"])
    metrics["baseline"] = {"model": BASELINE, "C": baseline.C, **binary_metrics(labels, baseline.probabilities(texts))}
    if assumed:
        metrics["assumed"] = assumed
    runs.save_json(out_dir / "metrics.json", metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], LABELS, out_dir / "confusion_matrix.png")
    print(f"\nTest reviews: {metrics['examples']:,}")
    columns = [("name", "", "{}")] + [
        (name, name, "{:.4f}") for name in ("accuracy", "precision", "recall", "f1", "roc_auc")
    ]
    rows = [{"name": "model", **metrics}]
    if "recurrent" in metrics:
        rows = [{"name": "model (recurrent + n-gram)", **metrics}, {"name": "recurrent path", **metrics["recurrent"]}]
    print(text_table([*rows, {"name": "baseline", **metrics["baseline"]}], columns))
    print(f"(baseline: {BASELINE}, C={baseline.C})")
    print(f"confusion matrix [[TN, FP], [FN, TP]] of the model: {metrics['confusion_matrix']}")
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


def predict(args):
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


def export(args):
    model = runs.load_model(args.run_dir)

    def serve(text):
        probability = tf.reshape(model(text, training=False), [-1])
        return {"probability": probability, "label": tf.where(probability >= 0.5, "positive", "negative")}

    texts = np.array(as_bytes(EXPORT_CHECK_TEXTS), dtype="S")
    expected = model.predict(tf.constant(texts), verbose=0).reshape(-1)
    path = export_savedmodel(
        model,
        serve,
        examples={"text": texts},
        expected={"probability": expected},
        export_dir=args.export_dir,
        version=args.version,
        atol=1e-5,
    )
    print(f"Exported {path} (checked in a TensorFlow-only process on {len(texts)} inputs)")
    return path
