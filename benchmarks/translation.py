"""Quality and speed of the translation app on spa-eng.zip (Spanish -> English),
split by sentence as the app does (no test sentence, on either side, in training).

For each setting, runs `seqapps translation train` (same budget for every row: the
options given after --, max epochs and early stopping as configured), `evaluate`
(sacreBLEU's cased corpus BLEU, the same case-insensitive, and chrF on
the test split, greedy and beam search, and the [UNK] left in the outputs) and
`export` twice (beam and greedy), then times decoding in the exported SavedModel.
Rows: the default cell and attention first, then each other --cells with the default
attention, then each other --attentions with the default cell.

    python benchmarks/translation.py --data-dir ../shared/data [--cells lstm gru] [--attentions additive dot] \
        [-- TRAIN OPTIONS]
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from report import RESULTS_DIR, run_measured, save

# The app's defaults before cased output (lower-cased, [UNK] kept; benchmarks/results/translation.md
# of that version): the figures to keep.
BEFORE = (
    "lstm/additive, lower-cased output: beam 4 BLEU 33.5 cased, 47.93 case-insensitive; greedy 45.28 "
    "case-insensitive; SavedModel 639 sentences/s greedy, 128 beam 4; 56.0 training min"
)


def savedmodel_speed(path, texts, batch_size=64):
    """Sentences per second through the SavedModel's serving signature."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    signature(text=tf.constant(texts[:batch_size]))  # warm up
    started = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        signature(text=tf.constant(texts[i : i + batch_size]))
    return len(texts) / (time.perf_counter() - started)


def save_table(name, rows, metrics, run_dir, serving):
    """Write the rows so far (after every row: a long benchmark cut short keeps what it measured)."""
    columns = [
        ("cell", "cell", "{}"),
        ("attention", "attention", "{}"),
        ("bleu_greedy", "BLEU greedy", "{:.2f}"),
        ("bleu_beam", f"BLEU beam {metrics['beam_size']}", "{:.2f}"),
        ("bleu_uncased_greedy", "uncased BLEU greedy", "{:.2f}"),
        ("bleu_uncased_beam", f"uncased BLEU beam {metrics['beam_size']}", "{:.2f}"),
        ("chrf_greedy", "chrF greedy", "{:.2f}"),
        ("chrf_beam", f"chrF beam {metrics['beam_size']}", "{:.2f}"),
        ("unknown_words", "unknown words (replaced)", "{}"),
        ("epochs", "epochs", "{}"),
        ("best_epoch", "best epoch", "{}"),
        ("train_minutes", "training min", "{:.1f}"),
        ("keras_greedy_per_s", "Keras greedy sent/s", "{:.0f}"),
        ("keras_beam_per_s", f"Keras beam {metrics['beam_size']} sent/s", "{:.0f}"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ]
    if serving:
        columns[-1:-1] = [
            ("savedmodel_greedy_per_s", "SavedModel greedy sent/s", "{:.0f}"),
            ("savedmodel_beam_per_s", f"SavedModel beam {metrics['beam_size']} sent/s", "{:.0f}"),
        ]
    config = json.loads((run_dir / "config.json").read_text())
    settings = {k: v for k, v in config.items() if k not in ("cell", "attention", "data_dir")}
    settings.update(
        test_sentences=metrics["sentences"],
        test_references=metrics["references"],
        bleu="sacrebleu corpus BLEU (cased, 13a, its defaults) and chrF, all references of each source sentence",
        decoding_batch=64,
        before=BEFORE,
    )
    save(name, rows, columns, settings)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="directory with spa-eng.zip (default: download)")
    parser.add_argument("--cells", nargs="+", default=["lstm"], help="cells to compare (default: lstm)")
    parser.add_argument("--attentions", nargs="+", default=["additive"], help="attentions (default: additive)")
    parser.add_argument("--eval-limit", type=int, help="evaluate on at most N test pairs")
    parser.add_argument(
        "--serving",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also export and time the SavedModel (default: yes)",
    )
    parser.add_argument("--name", default="translation", help="results file name (default: %(default)s)")
    parser.add_argument("train_options", nargs="*", help="more `train` options, after --")
    args = parser.parse_args()

    settings_rows = [(args.cells[0], args.attentions[0])]
    settings_rows += [(cell, args.attentions[0]) for cell in args.cells[1:]]
    settings_rows += [(args.cells[0], attention) for attention in args.attentions[1:]]
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    limit = ["--limit", str(args.eval_limit)] if args.eval_limit else []
    app = [sys.executable, "-m", "seqapps.apps.translation"]
    rows = []
    for cell, attention in settings_rows:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = RESULTS_DIR / "runs" / f"{args.name}-{cell}-{attention}-{stamp}"
        export_dir = RESULTS_DIR / "runs" / f"{args.name}-{cell}-{attention}-{stamp}-export"
        seconds, peak = run_measured(
            [
                *app,
                "train",
                *data,
                "--cell",
                cell,
                "--attention",
                attention,
                "--run-dir",
                str(run_dir),
                "--verbose",
                "2",
                *args.train_options,
            ]
        )
        subprocess.run([*app, "evaluate", "--run-dir", str(run_dir), *data, *limit], check=True)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
        beam = f"beam{metrics['beam_size']}"
        sources = [line.split("\t")[0] for line in (run_dir / "translations.tsv").read_text().splitlines()[1:]]
        sources = np.array([s.encode("utf-8") for s in sources])
        served = {}
        for name, size in (("greedy", 1), (beam, metrics["beam_size"])) if args.serving else ():
            subprocess.run(
                [*app, "export", "--run-dir", str(run_dir), "--export-dir", str(export_dir), "--beam-size", str(size)],
                check=True,
            )
            served[name] = savedmodel_speed(sorted(export_dir.iterdir())[-1], sources)
        rows.append(
            {
                "cell": cell,
                "attention": attention,
                **{f"{key}_greedy": metrics["greedy"][key] for key in ("bleu", "bleu_uncased", "chrf")},
                **{f"{key}_beam": metrics[beam][key] for key in ("bleu", "bleu_uncased", "chrf")},
                "unknown_words": metrics["greedy"]["unknown_words"] + metrics[beam]["unknown_words"],
                "epochs": len(history["loss"]),
                "best_epoch": 1 + int(np.argmin(history["val_token_loss"])),  # what early stopping follows
                "train_minutes": seconds / 60,
                "peak_rss_mib": peak,
                "keras_greedy_per_s": metrics["greedy"]["sentences_per_second"],
                "keras_beam_per_s": metrics[beam]["sentences_per_second"],
                **(
                    {"savedmodel_greedy_per_s": served["greedy"], "savedmodel_beam_per_s": served[beam]}
                    if args.serving
                    else {}
                ),
                "run_dir": str(run_dir.relative_to(RESULTS_DIR.parent.parent)),
            }
        )
        save_table(args.name, rows, metrics, run_dir, args.serving)


if __name__ == "__main__":
    main()
