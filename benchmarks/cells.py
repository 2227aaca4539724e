"""Training and inference throughput of each cell against Keras' built-in layers.

Same model for every variant: Embedding(20000, 128) -> RNN(128) -> Dense(1),
batch 64, sequences of 200 tokens. Variants run interleaved, `--repeats` times
each; the table gives medians and the ratio to the built-in layer each cell
corresponds to (keras.layers.LSTM for the LSTM family, keras.layers.GRU for GRU).
Peak memory is measured per variant in a fresh subprocess (peak RSS).

    python benchmarks/cells.py [--repeats 5] [--steps 5]

`--device gpu` measures on a GPU instead, where `lstm`, `cifg` and `gru` run cuDNN's
fused kernel: each variant with and without `jit_compile`, its ratio to the built-in
layer under the same setting, on the Keras backend of `KERAS_BACKEND` (tensorflow, jax
or torch; the project itself need not be installed, nor TensorFlow), appending its
rows to `benchmarks/results/cells-gpu.{json,md}` in place of that backend's earlier ones:

    KERAS_BACKEND=jax python benchmarks/cells.py --device gpu
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

if importlib.util.find_spec("seqapps") is None:
    # Not installed (the GPU machine has no TensorFlow to install it with): the packages
    # from this checkout; seqapps.layers and the tables of seqapps.apps need only Keras.
    ROOT = Path(__file__).resolve().parents[1]
    sys.modules["seqapps"] = type(sys)("seqapps")
    sys.modules["seqapps"].__path__ = []
    for package in ("layers", "apps"):
        spec = importlib.util.spec_from_file_location(
            f"seqapps.{package}", ROOT / package / "__init__.py", submodule_search_locations=[str(ROOT / package)]
        )
        sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[spec.name])

from report import RESULTS_DIR, peak_rss_mib, save  # noqa: E402

from seqapps.layers import LSTMCell, make_rnn  # noqa: E402

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


# On a GPU: the cuDNN-capable cells, one generic-loop cell, and the built-ins.
GPU_VARIANTS = ["keras.layers.LSTM", "keras.layers.GRU", "lstm", "cifg", "gru", "peephole"]


def build_model(variant, length, jit_compile="auto"):
    rnn, _ = VARIANTS[variant]
    model = keras.Sequential(
        [
            keras.Input((length,), dtype="int32"),
            keras.layers.Embedding(VOCAB, EMBED),
            rnn(),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True), jit_compile=jit_compile)
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


def median_throughputs(models, x, y, args):
    """Warm every model up (tracing), then time them in `args.repeats` interleaved rounds:
    (train, inference) median samples/s, by the keys of `models`."""
    for model in models.values():
        model.train_on_batch(x, y)
        model.predict_on_batch(x)
    train = {key: [] for key in models}
    infer = {key: [] for key in models}
    for round_ in range(args.repeats):
        print(f"round {round_ + 1}/{args.repeats}", flush=True)
        for key, model in models.items():
            train[key].append(throughput(lambda model=model: model.train_on_batch(x, y), args.batch, args.steps))
            infer[key].append(throughput(lambda model=model: model.predict_on_batch(x), args.batch, args.steps))
    return tuple({key: float(np.median(values)) for key, values in times.items()} for times in (train, infer))


THROUGHPUT_COLUMNS = [
    ("train_samples_per_s", "train samples/s", "{:.0f}"),
    ("train_ratio", "train vs built-in", "{:.2f}x"),
    ("infer_samples_per_s", "inference samples/s", "{:.0f}"),
    ("infer_ratio", "inference vs built-in", "{:.2f}x"),
]


def measure_gpu(args):
    """Each GPU variant with and without jit_compile: rows for cells-gpu.{json,md}."""
    x, y = batch(args.batch, args.length)
    models = {}
    for name in args.variants:
        for jit in (False, True):
            keras.utils.set_random_seed(0)
            models[name, jit] = build_model(name, args.length, jit_compile=jit)
    train, infer = median_throughputs(models, x, y, args)
    rows = []
    for (name, jit), model in models.items():
        reference = (VARIANTS[name][1], jit)
        fused = bool(getattr(model.layers[1], "fused", False))
        rows.append(
            {
                "backend": keras.backend.backend(),
                "layer": name,
                "jit_compile": model.jit_compile,
                "path": "built-in" if name.startswith("keras.") else ("cuDNN" if fused else "generic loop"),
                "train_samples_per_s": train[name, jit],
                "infer_samples_per_s": infer[name, jit],
                "train_ratio": train[name, jit] / train[reference],
                "infer_ratio": infer[name, jit] / infer[reference],
                "reference": VARIANTS[name][1],
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per variant")
    parser.add_argument("--steps", type=int, default=5, help="batches timed per round")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help=f"(default: all; on a GPU: {', '.join(GPU_VARIANTS)})"
    )
    parser.add_argument("--probe-memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_memory:
        return probe_memory(args.probe_memory, args)
    settings = {"batch": args.batch, "length": args.length, "vocab": VOCAB, "embed": EMBED, "units": UNITS}
    settings.update(repeats=args.repeats, steps=args.steps, dtype="float32")
    if args.device == "gpu":
        args.variants = args.variants or GPU_VARIANTS
        rows = measure_gpu(args)
        earlier = RESULTS_DIR / "cells-gpu.json"
        if earlier.exists():  # the other backends' rows stay
            rows = [r for r in json.loads(earlier.read_text())["results"] if r["backend"] != rows[0]["backend"]] + rows
        columns = [
            ("backend", "backend", "{}"),
            ("layer", "layer", "{}"),
            ("jit_compile", "jit_compile", "{}"),
            ("path", "runs on", "{}"),
            *THROUGHPUT_COLUMNS,
            ("reference", "built-in", "{}"),
        ]
        return save("cells-gpu", rows, columns, settings)
    args.variants = args.variants or list(VARIANTS)

    keras.utils.set_random_seed(0)
    x, y = batch(args.batch, args.length)
    models = {name: build_model(name, args.length) for name in args.variants}
    train, infer = median_throughputs(models, x, y, args)
    rows = []
    for name in models:
        reference = VARIANTS[name][1]
        row = {
            "layer": name,
            "reference": reference,
            "train_samples_per_s": train[name],
            "infer_samples_per_s": infer[name],
            "peak_rss_mib": peak_memory_mib(name, args),
        }
        if reference in models:
            row["train_ratio"] = train[name] / train[reference]
            row["infer_ratio"] = infer[name] / infer[reference]
        rows.append(row)

    columns = [
        ("layer", "layer", "{}"),
        *THROUGHPUT_COLUMNS,
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
        ("reference", "built-in", "{}"),
    ]
    save("cells", rows, columns, settings)


if __name__ == "__main__":
    main()
