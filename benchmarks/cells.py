"""Training and inference throughput of each cell against Keras' built-in layers.

Same model for every variant: Embedding(20000, 128) -> RNN(128) -> Dense(1),
batch 64, sequences of 200 tokens. Variants run interleaved, `--repeats` times
each; the table gives medians and the ratio to the built-in layer each cell
corresponds to (keras.layers.LSTM for the LSTM family, keras.layers.GRU for GRU).
Peak memory is measured per variant in a fresh subprocess (peak RSS).

    python benchmarks/cells.py [--repeats 5] [--steps 5]
"""

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from report import peak_rss_mib, save

from seqapps.layers import LSTMCell, make_rnn

VOCAB, EMBED, UNITS = 20000, 128, 128

# name -> (builder, built-in it is compared with)
VARIANTS = {
    "keras.layers.LSTM": (lambda: keras.layers.LSTM(UNITS), "keras.layers.LSTM"),
    "keras.layers.GRU": (lambda: keras.layers.GRU(UNITS), "keras.layers.GRU"),
    "lstm": (lambda: make_rnn("lstm", UNITS), "keras.layers.LSTM"),
    "peephole": (lambda: make_rnn("peephole", UNITS), "keras.layers.LSTM"),
    "cifg": (lambda: make_rnn("cifg", UNITS), "keras.layers.LSTM"),
    "gru": (lambda: make_rnn("gru", UNITS), "keras.layers.GRU"),
    # The same LSTMCell stepped by plain keras.layers.RNN: what GatedRNN's
    # whole-sequence input projection is worth.
    "lstm in keras.layers.RNN": (lambda: keras.layers.RNN(LSTMCell(UNITS)), "keras.layers.LSTM"),
}


def build_model(variant, length):
    rnn, _ = VARIANTS[variant]
    model = keras.Sequential(
        [
            keras.Input((length,), dtype="int32"),
            keras.layers.Embedding(VOCAB, EMBED),
            rnn(),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def batch(size, length, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, VOCAB, (size, length)), rng.integers(0, 2, (size, 1))


def throughput(fn, samples, steps):
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return samples * steps / (time.perf_counter() - start)


def peak_memory_mib(variant, args):
    """Peak RSS of a fresh process that builds the model and trains a few steps."""
    out = subprocess.run(
        [sys.executable, __file__, "--probe-memory", variant, "--batch", str(args.batch), "--length", str(args.length)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def probe_memory(variant, args):
    x, y = batch(args.batch, args.length)
    model = build_model(variant, args.length)
    for _ in range(3):
        model.train_on_batch(x, y)
    model.predict_on_batch(x)
    print(peak_rss_mib())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per variant")
    parser.add_argument("--steps", type=int, default=5, help="batches timed per round")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--probe-memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_memory:
        return probe_memory(args.probe_memory, args)

    keras.utils.set_random_seed(0)
    x, y = batch(args.batch, args.length)
    models = {name: build_model(name, args.length) for name in args.variants}
    for model in models.values():  # trace and warm up
        model.train_on_batch(x, y)
        model.predict_on_batch(x)

    train = {name: [] for name in models}
    infer = {name: [] for name in models}
    for round_ in range(args.repeats):
        print(f"round {round_ + 1}/{args.repeats}", flush=True)
        for name, model in models.items():
            train[name].append(throughput(lambda model=model: model.train_on_batch(x, y), args.batch, args.steps))
            infer[name].append(throughput(lambda model=model: model.predict_on_batch(x), args.batch, args.steps))

    rows = []
    for name in models:
        reference = VARIANTS[name][1]
        row = {
            "layer": name,
            "reference": reference,
            "train_samples_per_s": float(np.median(train[name])),
            "infer_samples_per_s": float(np.median(infer[name])),
            "peak_rss_mib": peak_memory_mib(name, args),
        }
        if reference in models:
            row["train_ratio"] = row["train_samples_per_s"] / float(np.median(train[reference]))
            row["infer_ratio"] = row["infer_samples_per_s"] / float(np.median(infer[reference]))
        rows.append(row)

    columns = [
        ("layer", "layer", "{}"),
        ("train_samples_per_s", "train samples/s", "{:.0f}"),
        ("train_ratio", "train vs built-in", "{:.2f}x"),
        ("infer_samples_per_s", "inference samples/s", "{:.0f}"),
        ("infer_ratio", "inference vs built-in", "{:.2f}x"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
        ("reference", "built-in", "{}"),
    ]
    settings = {
        "batch": args.batch,
        "length": args.length,
        "vocab": VOCAB,
        "embed": EMBED,
        "units": UNITS,
        "repeats": args.repeats,
        "steps": args.steps,
    }
    save("cells", rows, columns, settings)


if __name__ == "__main__":
    main()
