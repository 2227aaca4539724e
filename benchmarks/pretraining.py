"""The language models of `seqapps sentiment pretrain` on IMDB's unlabeled reviews and
its training reviews: validation perplexity (of the held-out unlabeled reviews, exact
softmax) per epoch, epochs, time, memory.

Each configuration pretrains into its own run directory under results/runs/, named by
its cell, seed and options; a rerun continues an unfinished one (`--resume`, so a
pretraining can span sittings) and skips the finished ones. The classifiers fine-tuned
from them are rows of benchmarks/sentiment.py (`-- --pretrained RUN_DIR`).

    python benchmarks/pretraining.py --data-dir ../shared/data
    python benchmarks/pretraining.py --data-dir ../shared/data --cells gru -- --epochs 6
"""

import argparse
import hashlib
import json
import sys

from report import RESULTS_DIR, machine, run_measured

from seqapps.apps.tables import markdown_table

COLUMNS = [
    ("cell", "cell", "{}"),
    ("seed", "seed", "{}"),
    ("options", "options", "{}"),
    ("val_perplexity", "val perplexity", "{:.1f}"),
    ("perplexity_by_epoch", "val perplexity by epoch", "{}"),
    ("epochs", "epochs", "{}"),
    ("train_minutes", "training min (last sitting)", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB (last sitting)", "{:.0f}"),
    ("run_dir", "run directory", "{}"),
    ("device", "ran on", "{}"),
    ("note", "note", "{}"),
]


def run_directory(cell, seed, options):
    digest = hashlib.sha1(" ".join(options).encode()).hexdigest()[:8]
    return RESULTS_DIR / "runs" / f"pretrain-{cell}-{seed}-{digest}"


def pretrain(cell, seed, options, data, note):
    run_dir = run_directory(cell, seed, options)
    command = [sys.executable, "-m", "seqapps.apps.sentiment", "pretrain", *data, "--run-dir", str(run_dir)]
    command += ["--verbose", "2"]
    if (run_dir / "config.json").exists():
        command.append("--resume")  # an interrupted pretraining continues from its last epoch
    else:
        command += ["--cell", cell, "--seed", str(seed), *options]
    _, peak = run_measured(command)
    return row_of(run_dir, cell, seed, options, note, peak)


def row_of(run_dir, cell, seed, options, note, peak=None):
    """The row of the run in `run_dir`, finished or not (then marked unfinished: a rerun continues it)."""
    state = json.loads((run_dir / "state.json").read_text())  # saved after every epoch
    history = state["history"]
    row = {
        "cell": cell,
        "seed": seed,
        "options": " ".join(options),
        "val_perplexity": min(history["val_perplexity"]),
        "perplexity_by_epoch": " ".join(f"{p:.0f}" for p in history["val_perplexity"]),
        "epochs": len(history["val_perplexity"]),
        "train_minutes": state["train_seconds"] / 60 if "train_seconds" in state else None,  # the last sitting
        "peak_rss_mib": peak,
        "run_dir": str(run_dir.relative_to(RESULTS_DIR.parent)),
        "device": "GPU" if machine()["gpus"] else "CPU",
        "note": note or "-",
        "config": json.loads((run_dir / "config.json").read_text()),
    }
    if not (run_dir / "model.keras").exists():
        row["unfinished"] = True
        row["note"] = f"unfinished, rerun continues it; {row['note']}"
    return row


def write(name, rows):
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps({"machine": machine(), "results": rows}, indent=2) + "\n")
    text = (
        f"# {name}\n\nLanguage models of `seqapps sentiment pretrain`: IMDB's 50,000 unlabeled reviews (less "
        "the 2 % held out) and the classifier's training reviews; the perplexity is that of the held-out "
        "unlabeled reviews under the exact softmax, at the best epoch. The app's defaults with the options "
        "shown; each row's full config is in the JSON.\n\n"
        f"{markdown_table(rows, COLUMNS)}\n"
    )
    (RESULTS_DIR / f"{name}.md").write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="IMDB with its unlabeled reviews, in its published form (default: download)")
    parser.add_argument("--cells", nargs="+", default=["lstm"], help="cells to pretrain (default: lstm)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337], help="(default: train's, 1337)")
    parser.add_argument("--name", default="sentiment-pretraining", help="results file name (default: %(default)s)")
    parser.add_argument("--note", help="said in each new row, e.g. that other work ran beside it")
    parser.add_argument(
        "--record-unfinished",
        action="store_true",
        help="train nothing: record the epochs done so far of runs still under way or interrupted",
    )
    parser.add_argument("pretrain_options", nargs="*", help="more `pretrain` options, after --")
    args = parser.parse_args()

    data = ["--data-dir", args.data_dir] if args.data_dir else []
    options = " ".join(args.pretrain_options)
    for cell in args.cells:
        for seed in args.seeds:
            path = RESULTS_DIR / f"{args.name}.json"
            rows = json.loads(path.read_text())["results"] if path.exists() else []  # another run may have written
            same = [r for r in rows if (r["cell"], r["seed"], r["options"]) == (cell, seed, options)]
            if any(not r.get("unfinished") for r in same):
                print(f"done already: {cell}, seed {seed}, options {options!r}")
                continue
            rows = [r for r in rows if r not in same]
            if args.record_unfinished:
                run_dir = run_directory(cell, seed, args.pretrain_options)
                if (run_dir / "state.json").exists():
                    rows.append(row_of(run_dir, cell, seed, args.pretrain_options, args.note))
            else:
                rows.append(pretrain(cell, seed, args.pretrain_options, data, args.note))
            write(args.name, rows)
    print((RESULTS_DIR / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
