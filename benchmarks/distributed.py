"""Data-parallel training on loopback: training samples/s of `seqapps forecasting train`
(ETTh1, lookback 96, horizon 96, the same global batch) with `--distribute none` and
with `--distribute multi-worker` over 1 and 2 worker processes on this machine; and
the time of one all-reduce of the model's gradients between 2 workers.

Two workers on one 2-core machine share its cores, so no speed-up is expected here:
the figures show what the multi-worker machinery costs (the hand-written distributed
step, synchronised metrics, the gradient all-reduce over gRPC on loopback). On a GPU
machine the script also times `--distribute mirrored`.

    python benchmarks/distributed.py --data-dir ../shared/data [--epochs 3]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import save

from seqapps.apps import distribute

SETTINGS = ["--dataset", "etth1", "--lookback", "96", "--horizon", "96", "--verbose", "0"]


def run_workers(command, count):
    """`command` as `count` multi-worker processes (none: one plain process); the outputs."""
    configs = distribute.local_tf_configs(count) if count else [None]
    processes = [
        subprocess.Popen(
            command,
            env={**os.environ, **({"TF_CONFIG": config} if config else {}), "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for config in configs
    ]
    outputs = [process.communicate()[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode:
            sys.exit(f"failed:\n{output[-3000:]}")
    return outputs


def training_row(args, distribute, workers, train_windows):
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        command = [sys.executable, "-m", "seqapps.apps.forecasting", "train", *SETTINGS, "--data-dir", args.data_dir]
        command += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--run-dir", str(run_dir)]
        run_workers([*command, "--distribute", distribute], workers if distribute == "multi-worker" else 0)
        state = json.loads((run_dir / "state.json").read_text())
    # Multi-worker leaves out the last partial batch of each epoch.
    steps = train_windows // args.batch_size if distribute == "multi-worker" else -(-train_windows // args.batch_size)
    samples = min(steps * args.batch_size, train_windows) * state["epoch"]
    return {
        "distribute": distribute,
        "workers": workers,
        "global batch": args.batch_size,
        "per replica": args.batch_size // max(workers, 1),
        "epochs": state["epoch"],
        "fit seconds": round(state["train_seconds"], 1),
        "samples/s": round(samples / state["train_seconds"]),
        "ms/step": round(1000 * state["train_seconds"] / (steps * state["epoch"]), 1),
    }


def all_reduce_row(parameters, repeats):
    command = [sys.executable, __file__, "--all-reduce-worker", str(parameters), "--repeats", str(repeats)]
    outputs = run_workers(command, 2)
    milliseconds = json.loads(outputs[0].strip().splitlines()[-1])["ms"]
    return {"distribute": "all-reduce only", "workers": 2, "parameters": parameters, "ms/step": round(milliseconds, 2)}


def all_reduce_worker(parameters, repeats):
    """One worker of the all-reduce timing: SUM of a float32 tensor of `parameters` values."""
    import tensorflow as tf

    strategy = distribute.strategy("multi-worker", peer_timeout=120)
    gradient = tf.ones([parameters])
    step = tf.function(lambda: strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", gradient)))
    for _ in range(20):
        step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    print(json.dumps({"ms": 1000 * (time.perf_counter() - started) / repeats}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("SEQAPPS_DATA_DIR"), help="holds ETTh1.csv")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--all-reduce-worker", type=int, metavar="PARAMETERS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.all_reduce_worker:
        return all_reduce_worker(args.all_reduce_worker, args.repeats)
    if not args.data_dir:
        parser.error("give --data-dir (or set SEQAPPS_DATA_DIR): the directory holding ETTh1.csv")

    import keras
    import tensorflow as tf

    from seqapps.apps import forecasting
    from seqapps.apps.forecasting import data, windows

    config = data.complete_config(
        {**forecasting.APP.defaults, "dataset": "etth1", "data_dir": args.data_dir, "limit": None, "seed": 0}
        | {"lookback": 96, "horizon": 96}
    )
    series = forecasting.APP.load(config)
    train_windows = len(windows.window_starts(series, "train", config))
    parameters = forecasting.APP.build_model(config, series).count_params()
    keras.backend.clear_session()

    modes = [("none", 1), ("multi-worker", 1), ("multi-worker", 2)]
    if tf.config.list_physical_devices("GPU"):
        modes.append(("mirrored", len(tf.config.list_physical_devices("GPU"))))
    rows = []
    for mode, workers in modes:
        rows.append(training_row(args, mode, workers, train_windows))
        print(rows[-1], flush=True)
    rows.append(all_reduce_row(parameters, args.repeats))
    columns = ["distribute", "workers", "global batch", "per replica", "epochs", "fit seconds", "samples/s"]
    columns += ["ms/step", "parameters"]
    save(
        "distributed",
        rows,
        [(key, key, "{}") for key in columns],
        {
            "app": "forecasting",
            "train": " ".join(SETTINGS),
            "epochs": args.epochs,
            "train windows": train_windows,
            "model parameters": parameters,
            "note": "fit seconds include each epoch's validation; all-reduce: SUM of one float32 tensor "
            f"of the model's {parameters} parameters between 2 workers on 127.0.0.1, mean of {args.repeats}",
        },
    )


if __name__ == "__main__":
    main()
