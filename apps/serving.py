"""`seqapps serve`: an export answers TensorFlow Serving's REST API, served by KServe's
model server (`pip install 'seqapps[serve]'`).

`SavedModelPredictor` is a `kserve.Model`, so the same predictor serves a model on a
laptop (`seqapps serve`) and, unchanged, in a KServe InferenceService. It speaks TF
Serving's REST protocol for whatever the export's `serving_default` signature declares:

    POST /v1/models/NAME:predict   {"instances": [...]} -> {"predictions": [...]}  (row format)
                                   {"inputs": ...}      -> {"outputs": ...}        (columnar format)
    GET  /v1/models/NAME           TF Serving's model status, with KServe's "ready"
    GET  /v1/models/NAME/metadata  TF Serving's signature metadata

String values go in as JSON strings or {"b64": "..."} and come out as strings. A bad
request gets a 400 (a body over MAX_BODY_BYTES a 413) with one line of JSON,
{"error": "..."}, and the server goes on serving.
"""

import argparse
import asyncio
import base64
import binascii
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import orjson
import tensorflow as tf
from fastapi.responses import ORJSONResponse
from kserve import Model  # KServe 0.21 parses sys.argv on import (parse_known_args: ours pass through)
from kserve.errors import InvalidInput
from kserve.model_repository import ModelRepository
from kserve.model_server import app
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess
from kserve.protocol.rest.server import RESTServer
from tensorflow.core.framework import types_pb2

from seqapps.apps.cli import UsageError, positive_int
from seqapps.apps.export import is_savedmodel

MAX_BATCH = 1024  # instances in one request
MAX_BODY_BYTES = 16 * 2**20
SIGNATURE = "serving_default"
APP = "kserve.model_server:app"  # KServe's REST server adds its routes to this app, whatever it is told

PREDICTORS = {}  # name -> the predictor this process serves, for the TF Serving routes below


def served_export(path) -> Path:
    """The SavedModel at `path`, or the latest integer version under it."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist: give an export (saved_models/<app>/<version>) or its app's directory")
    if is_savedmodel(path):
        return path
    versions = [p for p in path.iterdir() if p.name.isdigit() and is_savedmodel(p)]
    if not versions:
        raise UsageError(f"{path} holds no SavedModel, nor integer versions of one: export a run first")
    return max(versions, key=lambda p: int(p.name))


class SavedModelPredictor(Model):
    """A SavedModel's `serving_default` signature behind TF Serving's REST protocol.
    It is ready once the model is loaded and has answered a warm-up request."""

    def __init__(self, name: str, path: str | Path):
        super().__init__(name)
        self.path = Path(path)
        self.version = int(self.path.name) if self.path.name.isdigit() else 1
        self.load()

    def load(self) -> bool:
        try:
            self.saved_model = tf.saved_model.load(str(self.path))
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise UsageError(f"{self.path}: not a loadable SavedModel ({str(error).splitlines()[0]})") from None
        if SIGNATURE not in self.saved_model.signatures:
            raise UsageError(f"{self.path}: the SavedModel has no {SIGNATURE!r} signature; export it with seqapps")
        self.signature = self.saved_model.signatures[SIGNATURE]
        self.inputs = self.signature.structured_input_signature[1]  # name -> TensorSpec
        self.outputs = self.signature.structured_outputs
        self.run(warm_up_inputs(self.inputs))  # the first call traces and allocates: not a client's to wait for
        self.ready = True
        PREDICTORS[self.name] = self
        return self.ready

    # Each process of `--workers N` unpickles the predictor and loads the SavedModel itself.
    def __getstate__(self):
        return {"name": self.name, "path": self.path}

    def __setstate__(self, state):
        self.__init__(**state)

    async def predict(self, payload, headers=None):
        if isinstance(payload, bytes):  # KServe passes on a body not labelled JSON (curl -d); TF Serving reads it
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as error:
                raise InvalidInput(f"Unrecognized request format: {error}") from None
        inputs, row_format = parse_request(payload, self.inputs)
        outputs = await asyncio.get_running_loop().run_in_executor(None, self.run, inputs)
        return format_response(outputs, row_format)

    def run(self, inputs):
        try:
            outputs = self.signature(**{name: tf.constant(value) for name, value in inputs.items()})
        except tf.errors.InvalidArgumentError as error:  # the graph's own checks, e.g. a history with NaN
            raise InvalidInput(error.message.splitlines()[0]) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def warm_up_inputs(specs):
    """One example of each input: a word for strings, zeros (finite) for numbers."""
    return {
        name: np.array([b"warm up"], dtype=object)
        if spec.dtype == tf.string
        else np.zeros([1, *(d or 1 for d in spec.shape[1:])], spec.dtype.as_numpy_dtype)
        for name, spec in specs.items()
    }


def parse_request(body, specs):
    """The named input arrays of a TF Serving REST request body (decoded JSON), checked
    against the signature's input `specs`; and whether it came in the row format."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise InvalidInput('send a JSON object with "instances" (row format) or "inputs" (columnar format)')
    if body.get("signature_name", SIGNATURE) != SIGNATURE:
        raise InvalidInput(f"unknown signature_name {body['signature_name']!r}: the model has {SIGNATURE!r}")
    names = list(specs)

    def by_name(value, where):  # a single input may be given without its name
        if isinstance(value, dict) and set(value) != {"b64"}:
            unknown, missing = set(value) - set(names), set(names) - set(value)
            if unknown or missing:
                problem = f"unknown input {min(unknown)!r}" if unknown else f"missing input {min(missing)!r}"
                raise InvalidInput(f"{problem} in {where}; the model takes {', '.join(map(repr, names))}")
            return value
        if len(names) > 1:
            raise InvalidInput(f"{where} must be an object of the inputs {', '.join(map(repr, names))}")
        return {names[0]: value}

    if "instances" in body:
        if not isinstance(body["instances"], list):
            raise InvalidInput('"instances" must be a list, one entry per example')
        instances = [by_name(instance, "an instance") for instance in body["instances"]]
        columns = {name: [instance[name] for instance in instances] for name in names}
    else:
        columns = by_name(body["inputs"], '"inputs"')
    arrays = {name: input_array(name, columns[name], spec) for name, spec in specs.items()}
    batch = {len(array) for array in arrays.values()}
    if len(batch) > 1:
        raise InvalidInput(f"the inputs differ in batch size: {sorted(batch)}")
    if batch == {0}:
        raise InvalidInput("the batch is empty: send at least one example")
    if batch.pop() > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} examples: split the request")
    return arrays, "instances" in body


def input_array(name, value, spec):
    """`value` (nested JSON lists) as an array of the input's type and shape, or a 400."""
    if spec.dtype == tf.string:
        array = np.array(strings(name, value), dtype=object)
    else:
        try:
            array = np.array(value)
        except ValueError:  # ragged
            array = np.array(None)
        if array.dtype.kind not in "iuf":  # strings, booleans, None, ragged lists
            raise InvalidInput(f"input {name!r} must be numbers in a regular nested list (every row as long)")
        array = array.astype(spec.dtype.as_numpy_dtype)
        if not np.isfinite(array).all():
            raise InvalidInput(f"input {name!r} holds NaN or Inf: send finite numbers")
    expected = tuple(spec.shape)
    if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape, strict=True)):
        wanted = "[" + ", ".join("any" if d is None else str(d) for d in expected) + "]"
        raise InvalidInput(f"input {name!r} has shape {list(array.shape)}; the model takes {wanted}")
    return array


def strings(name, value):
    """A nested list of JSON strings or {"b64": ...} objects, as the same nest of bytes."""
    if isinstance(value, list):
        return [strings(name, item) for item in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise InvalidInput(f"input {name!r}: a b64 value is not valid base64") from None
    raise InvalidInput(f'input {name!r} must be strings (or {{"b64": ...}} objects), got {type(value).__name__}')


def json_value(value):
    """An output array or element as JSON: strings decoded, numbers as Python numbers."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [json_value(item) for item in value]
    return value.tolist()


def format_response(outputs, row_format):
    """TF Serving's answer: "predictions" (one entry per example; an object of the
    outputs when there are several) or "outputs" (the batch of each output)."""
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": json_value(next(iter(outputs.values())))}
        return {"outputs": {name: json_value(array) for name, array in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": json_value(next(iter(outputs.values())))}
    batch = len(next(iter(outputs.values())))
    return {"predictions": [{name: json_value(array[i]) for name, array in outputs.items()} for i in range(batch)]}


# -- KServe's web application, which its REST server serves (in every worker process:
# they import this module to unpickle the predictor) with its routes after ours --------


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused (413) before it is
    read whole, whether its Content-Length says so or its chunks add up to it."""

    def __init__(self, app, limit):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await too_large(send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge
            return message

        await self.app(scope, limited_receive, send)


async def too_large(send):
    body = b'{"error": "the request body is over %d bytes: split the batch"}' % MAX_BODY_BYTES
    # Closing the connection is the way to stop the client's unread bytes (HTTP/1.1 has no other).
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def body_too_large(request, error):
    return ORJSONResponse({"error": f"the request body is over {MAX_BODY_BYTES} bytes: split the batch"}, 413)


app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
app.add_exception_handler(BodyTooLarge, body_too_large)


def not_found(name):
    return ORJSONResponse({"error": f"no model named {name!r}; this server serves {', '.join(PREDICTORS)}"}, 404)


@app.get("/v1/models/{name}")
async def model_status(name: str):
    """TF Serving's status of the served version (and KServe's readiness fields)."""
    if name not in PREDICTORS:
        return not_found(name)
    predictor = PREDICTORS[name]
    state = {"error_code": "OK", "error_message": ""}
    version = {"version": str(predictor.version), "state": "AVAILABLE", "status": state}
    return {"name": name, "ready": predictor.ready, "model_version_status": [version]}


@app.get("/v1/models/{name}/metadata")
async def model_metadata(name: str):
    """TF Serving's metadata: the serving signature's inputs and outputs."""
    if name not in PREDICTORS:
        return not_found(name)
    predictor = PREDICTORS[name]

    def tensors(specs):
        return {
            key: {
                "dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum),
                "tensor_shape": {"dim": [{"size": str(d or -1)} for d in spec.shape], "unknown_rank": False},
                "name": key,
            }
            for key, spec in specs.items()
        }

    signature = {"inputs": tensors(predictor.inputs), "outputs": tensors(predictor.outputs)}
    signature["method_name"] = "tensorflow/serving/predict"
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(predictor.version)},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
    }


# -- the command ---------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="seqapps serve",
        description="Serve an export under TensorFlow Serving's REST API (KServe's model server). "
        f"Requests hold at most {MAX_BATCH} examples and {MAX_BODY_BYTES // 2**20} MiB.",
    )
    parser.add_argument("export", help="an export (saved_models/<app>/<version>), or its app's directory: the latest")
    parser.add_argument("--name", help="the model's name in the URLs (default: the app's directory, e.g. sentiment)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; 0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=8080, help="(default: %(default)s; 0: any free port)")
    parser.add_argument("--workers", type=positive_int, default=1, help="server processes (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        path = served_export(args.export)
        name = args.name or (path.parent.name if path.name.isdigit() else path.name)
        predictor = SavedModelPredictor(name, path)
        try:
            listener = socket.create_server((args.host, args.port))
        except OSError as error:
            where = f"{args.host}:{args.port}"
            raise UsageError(f"cannot listen on {where} ({error.strerror}): pass another --port or --host") from None
    except UsageError as error:
        parser.exit(2, f"seqapps serve: error: {error}\n")
    repository = ModelRepository()
    repository.update(predictor)
    dataplane, extension = DataPlane(model_registry=repository), ModelRepositoryExtension(model_registry=repository)
    host, port = listener.getsockname()[:2]
    print(f"Serving {name} version {predictor.version} ({path}) at http://{host}:{port}/v1/models/{name}:predict")
    sys.stdout.flush()
    try:
        if args.workers == 1:
            # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises it again: exit quietly then.
            for stop in (signal.SIGINT, signal.SIGTERM):
                signal.signal(stop, lambda signum, frame: sys.exit(0))
            RESTServer(APP, dataplane, extension, port).run(sockets=[listener])
        else:
            # KServe's ModelServer would bind every interface; its process supervisor, on our socket, does not.
            workers = RESTServerMultiProcess(APP, dataplane, extension, port, workers=args.workers)
            asyncio.run(supervise(workers, listener))
    finally:
        print(f"Stopped serving {name}")


async def supervise(workers, listener):
    """Start the worker processes on `listener`, restart any that dies, stop all on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop, workers.should_exit.set)
    workers.init_processes([listener])
    while not workers.should_exit.is_set():
        await asyncio.sleep(0.5)
        await workers.keep_subprocess_alive([listener])
    await workers.terminate_all()
