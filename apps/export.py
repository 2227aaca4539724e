"""TensorFlow SavedModel exports that TensorFlow Serving can serve.

`export_savedmodel` writes `<export_dir>/<version>/` with one `serving_default`
signature, into a temporary directory renamed into place, never over an existing
version, and only once it has run alone: `run_savedmodel_in_subprocess` runs an
export in a fresh Python that imports TensorFlow and nothing of this project.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from seqapps.apps.cli import UsageError
from seqapps.layers.rnn import generic_loops


def next_version(export_dir: str | Path) -> int:
    versions = [int(p.name) for p in Path(export_dir).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export_savedmodel(
    model: keras.Model,
    serve: Callable[..., dict],
    *,
    examples: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    export_dir: str | Path,
    version: int | None = None,
    atol: float | None = None,
    files: dict[str, object] | None = None,
) -> Path:
    """Export `serve` (a function of named input tensors returning a dict of named
    outputs, using `model`) as `<export_dir>/<version>/`. Returns the path.

    The inputs are named, typed and shaped as `examples` (name -> array; strings as
    bytes), with a free batch size. Before the export is renamed into place it runs
    in a process that imports only TensorFlow, on `examples`, and must give
    `expected` (output name -> array) exactly, or within `atol` (and rtol 1e-5); if
    not, nothing is published. The recurrent layers are traced on their generic loop
    (never cuDNN), so the export serves on any device. `files` (name -> JSON-able data)
    are written beside saved_model.pb.
    """
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(export_dir)
    final = export_dir / str(version)
    if final.exists():
        raise UsageError(f"{final} exists and exports never overwrite: pass another --version or leave it out")
    signature = [
        tf.TensorSpec([None, *value.shape[1:]], tf.string if value.dtype.kind == "S" else value.dtype, name=name)
        for name, value in examples.items()
    ]
    # A hidden, non-numeric name on the same filesystem: Serving ignores it, and the
    # rename below is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=export_dir))
    archive = keras.export.ExportArchive()
    try:
        # Traced on the generic loop, so that the graph also serves on a CPU: cuDNN's op has no CPU kernel.
        with generic_loops(model):
            archive.track(model)
            archive.add_endpoint("serving_default", serve, input_signature=signature)
            archive.write_out(str(tmp), verbose=False)
        for name, data in (files or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2) + "\n")
        check_alone(tmp, examples, expected, atol)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def check_alone(path, examples, expected, atol=None):
    """Raise unless the SavedModel at `path`, run alone on `examples`, gives `expected`."""
    served = run_savedmodel_in_subprocess(path, examples)
    for name, value in expected.items():
        if atol is None:
            agree = np.array_equal(served[name], value)
        else:
            agree = np.allclose(served[name], value, atol=atol, rtol=1e-5)
        if not agree:
            raise RuntimeError(f"the export disagrees with the Keras model on {name!r}: {served[name]} vs {value}")


_RUN_ALONE = """
import sys
import numpy as np
import tensorflow as tf

path, inputs_file, outputs_file = sys.argv[1:]
inputs = {k: tf.constant(v) for k, v in np.load(inputs_file).items()}
outputs = tf.saved_model.load(path).signatures["serving_default"](**inputs)
project = sorted(m for m in sys.modules if m.split(".")[0] == "seqapps")
if project:
    sys.exit("the SavedModel needed project code: " + ", ".join(project))
np.savez(outputs_file, **{k: v.numpy().astype("S") if v.dtype == tf.string else v.numpy() for k, v in outputs.items()})
"""


def run_savedmodel_in_subprocess(path: str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of the SavedModel at `path` for `inputs` (name -> array; strings as
    bytes), computed in a separate process that imports only TensorFlow."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs_file, outputs_file = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(inputs_file, **inputs)
        done = subprocess.run(
            [sys.executable, "-I", "-c", _RUN_ALONE, str(Path(path).resolve()), str(inputs_file), str(outputs_file)],
            cwd=tmp,
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"the exported SavedModel failed to run on its own:\n{done.stderr[-3000:]}")
        with np.load(outputs_file) as outputs:
            return dict(outputs)


def is_savedmodel(path: str | Path) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


def load_serving_signature(path: str | Path):
    """The `serving_default` signature of the SavedModel at `path`."""
    return tf.saved_model.load(str(path)).signatures["serving_default"]
