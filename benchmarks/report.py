"""Writing benchmark results: a JSON file and a Markdown table, both printed."""

import json
import os
import platform
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine():
    import keras
    import tensorflow as tf

    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def peak_rss_mib(pid="self"):
    """Peak resident memory (VmHWM) of a process in MiB; None once it has exited.

    Not ru_maxrss: that survives exec, so a child would report its parent's peak.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(status.split("VmHWM:")[1].split()[0]) / 1024  # kB


def markdown_table(rows, columns):
    """`rows`: list of dicts; `columns`: list of (key, header, format) tuples."""
    lines = [
        "| " + " | ".join(header for _, header, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
