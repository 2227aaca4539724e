"""Quality and cost of the sentiment app on IMDB: the full 25k/25k split, no
pretrained embeddings, no unlabeled data, next to the published anchors.

For every cell and seed given, runs `seqapps sentiment train` (the app's defaults,
unless options follow `--`) and `evaluate` on all 25,000 test reviews. Reports the
best validation accuracy (recipes are chosen on it; with --ngram-features, the
blended model's, beside each path's), test accuracy, F1, ROC-AUC,
epochs, wall-clock training time, the training process's peak memory, and the
bag-of-n-grams baseline that `evaluate` fits on the same training split. With
`--validation-only` it trains and stops there: no test figure is computed. Each
finished row is saved at once and a rerun skips the rows already in the results
file, so a long table can be stopped and resumed.

    python benchmarks/sentiment.py --data-dir ../shared/data
    python benchmarks/sentiment.py --data-dir ../shared/data --cells lstm peephole cifg gru --name sentiment-cells
    python benchmarks/sentiment.py --data-dir ../shared/data --validation-only --name sentiment-recipe -- --units 128
"""

import argparse
import json
import subprocess
import sys
import time

from report import RESULTS_DIR, machine, run_measured

from seqapps.apps.tables import markdown_table

# Published test accuracy on IMDB, trained on the 25,000 labeled training reviews only.
ANCHORS = [
    ("keras.io bidirectional LSTM example (first 200 words, 2 epochs)", 0.843),
    ("Dai & Le 2015, LSTM with tuning and dropout", 0.865),
    ("Deep Learning with Python (2nd ed.), bidirectional LSTM (600-token cut)", 0.875),
    ("bag of bigrams, dense classifier (Deep Learning with Python)", 0.90),
    ("NBSVM-bigram (Wang & Manning 2012)", 0.912),
    ("Johnson & Zhang 2016, one-hot bidirectional LSTM with pooling (supervised only)", 0.919),
    # Pretrained on the 50,000 unlabeled reviews (rows with --pretrained):
    ("Dai & Le 2015, LM-LSTM (language-model pretraining)", 0.924),
    ("Dai & Le 2015, SA-LSTM (sequence-autoencoder pretraining)", 0.928),
    ("Miyato et al. 2017, LM-pretrained LSTM", 0.926),
    ("Miyato et al. 2017, LM-pretrained LSTM + virtual adversarial training", 0.941),
]
COLUMNS = [
    ("cell", "cell", "{}"),
    ("seed", "seed", "{}"),
    ("options", "options", "{}"),
    ("val_accuracy", "val accuracy", "{:.4f}"),
    ("recurrent_val_accuracy", "recurrent path's val accuracy", "{:.4f}"),
    ("ngram_val_accuracy", "n-gram path's val accuracy", "{:.4f}"),
    ("accuracy", "test accuracy", "{:.4f}"),
    ("recurrent_accuracy", "recurrent path's test accuracy", "{:.4f}"),
    ("f1", "F1", "{:.4f}"),
    ("roc_auc", "ROC-AUC", "{:.4f}"),
    ("baseline_accuracy", "baseline accuracy", "{:.4f}"),
    ("epochs", "epochs", "{}"),
    ("best_epoch", "best epoch", "{}"),
    ("train_minutes", "training min", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("device", "ran on", "{}"),
]
BASELINE_COLUMNS = [
    ("model", "baseline", "{}"),
    ("accuracy", "test accuracy", "{:.4f}"),
    ("f1", "F1", "{:.4f}"),
    ("roc_auc", "ROC-AUC", "{:.4f}"),
    ("C", "C", "{}"),
]


def run(cell, seed, options, data, validation_only):
    app = [sys.executable, "-m", "seqapps.apps.sentiment"]
    run_dir = RESULTS_DIR / "runs" / f"sentiment-{cell}-{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    train = [*app, "train", *data, "--cell", cell, "--seed", str(seed), "--run-dir", str(run_dir), "--verbose", "2"]
    seconds, peak = run_measured([*train, *options])
    history = json.loads((run_dir / "history.json").read_text())
    best = max(range(len(history["val_accuracy"])), key=history["val_accuracy"].__getitem__)
    blend = json.loads((run_dir / "state.json").read_text()).get("after_fit", {})  # with --ngram-features
    row = {
        "cell": cell,
        "seed": seed,
        "options": " ".join(options),
        "val_accuracy": blend.get("val_accuracy", history["val_accuracy"][best]),
        "recurrent_val_accuracy": blend.get("recurrent_val_accuracy"),
        "ngram_val_accuracy": blend.get("ngram_val_accuracy"),
        "epochs": len(history["loss"]),
        "best_epoch": best + 1,
        "train_minutes": seconds / 60,
        "peak_rss_mib": peak,
        "device": "GPU" if machine()["gpus"] else "CPU",
        "config": json.loads((run_dir / "config.json").read_text()),
    }
    if not validation_only:
        subprocess.run([*app, "evaluate", "--run-dir", str(run_dir), *data], check=True)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        row.update({name: metrics[name] for name in ("accuracy", "f1", "roc_auc")})
        row["recurrent_accuracy"] = metrics.get("recurrent", metrics)["accuracy"]  # the model's, without n-grams
        row["baseline_accuracy"] = metrics["baseline"]["accuracy"]
        row["baseline"] = metrics["baseline"]
    return row


def write(name, rows):
    """`<name>.json` (every row, with its config) and `<name>.md` (the table, the baseline, the anchors)."""
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps({"machine": machine(), "results": rows}, indent=2) + "\n")
    tested = [row for row in rows if "accuracy" in row]
    text = (
        f"# {name}\n\nIMDB, trained on the 25,000 training reviews (the reviews of a seeded set "
        "of movies, a tenth of them, held out for validation), "
        "tested on all 25,000 test reviews; the app's defaults with the options shown. "
        "Each row's full config is in the JSON.\n\n"
        f"{markdown_table(rows, COLUMNS)}\n"
    )
    if tested:
        baseline = tested[-1]["baseline"]
        text += (
            "\n## The baseline, fitted by `evaluate` on the same training split\n\n"
            f"{markdown_table([baseline], BASELINE_COLUMNS)}\n"
        )
    anchors = [{"model": model, "accuracy": accuracy} for model, accuracy in ANCHORS]
    anchor_columns = [("model", "model", "{}"), ("accuracy", "test accuracy", "{:.3f}")]
    text += f"\n## Anchors (published)\n\n{markdown_table(anchors, anchor_columns)}\n"
    (RESULTS_DIR / f"{name}.md").write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="IMDB in its published form (default: download)")
    parser.add_argument("--cells", nargs="+", default=["lstm"], help="cells to compare (default: lstm)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337], help="(default: train's, 1337)")
    parser.add_argument("--name", default="sentiment", help="results file name (default: %(default)s)")
    parser.add_argument("--validation-only", action="store_true", help="train only: no test figures")
    parser.add_argument("train_options", nargs="*", help="more `train` options, after --")
    args = parser.parse_args()

    path = RESULTS_DIR / f"{args.name}.json"
    rows = json.loads(path.read_text())["results"] if path.exists() else []
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    options = " ".join(args.train_options)
    for cell in args.cells:
        for seed in args.seeds:
            if any((r["cell"], r["seed"], r["options"]) == (cell, seed, options) for r in rows):
                print(f"done already: {cell}, seed {seed}, options {options!r}")
                continue
            rows.append(run(cell, seed, args.train_options, data, args.validation_only))
            write(args.name, rows)
    print((RESULTS_DIR / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
