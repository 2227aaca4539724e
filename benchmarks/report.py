"""Writing benchmark results: a JSON file and a Markdown table, both printed."""

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from seqapps.apps.tables import markdown_table

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine():
    import keras

    info = {
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    if info["backend"] == "jax":
        import jax

        info["devices"] = [str(device) for device in jax.devices()]
    elif info["backend"] == "torch":
        import torch

        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    try:
        import tensorflow as tf
    except ImportError:  # the GPU machine: JAX and PyTorch only
        return info
    return {**info, "tensorflow": tf.__version__, "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def peak_rss_mib(pid="self"):
    """Peak resident memory (VmHWM) of a process in MiB; None once it has exited.

    Not ru_maxrss: that survives exec, so a child would report its parent's peak.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    if "VmHWM:" not in status:  # a process that has exited but not been reaped
        return None
    return int(status.split("VmHWM:")[1].split()[0]) / 1024  # kB


def run_measured(command):
    """Run `command`; return (seconds, peak RSS in MiB), polling the child's high-water mark."""
    start = time.time()
    process = subprocess.Popen(command)
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, peak_rss_mib(process.pid) or 0.0)
        time.sleep(1.0)
    if process.returncode:
        sys.exit(f"failed with exit code {process.returncode}: {' '.join(command)}")
    return time.time() - start, peak


def save(name, rows, columns, settings, out_dir=RESULTS_DIR):
    """Print the table and write `<name>.json` and `<name>.md` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, columns)
    meta = {"settings": settings, "machine": machine()}
    (out_dir / f"{name}.json").write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    settings_line = ", ".join(f"{k}={v}" for k, v in settings.items())
    (out_dir / f"{name}.md").write_text(f"# {name}\n\n{settings_line}\n\n{table}\n")
    print(table)
    print(f"\nSaved {out_dir / (name + '.json')} and {out_dir / (name + '.md')}")


def seed_spread(rows, keys, metric):
    """Mean, sample standard deviation and range of `metric` over the seeds of each
    group of `rows` that agree on `keys`, for the groups measured with two or more seeds."""
    groups = {}
    for row in rows:
        if row.get(metric) is not None:
            groups.setdefault(tuple(row[key] for key in keys), []).append(row[metric])
    return [
        {
            **dict(zip(keys, key, strict=True)),
            "seeds": len(values),
            "mean": statistics.mean(values),
            "std": statistics.stdev(values),
            "min": min(values),
            "max": max(values),
        }
        for key, values in groups.items()
        if len(values) > 1
    ]
