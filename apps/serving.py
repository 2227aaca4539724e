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
import contextlib
import logging
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import orjson
from fastapi.responses import ORJSONResponse
from kserve import Model  # KServe 0.21 parses sys.argv on import (parse_known_args: ours pass through)
from kserve.errors import InferenceError, InvalidInput
from kserve.logging import KSERVE_TRACE_LOGGER_NAME, configure_logging, logger
from kserve.model_repository import ModelRepository
from kserve.model_server import app
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess
from kserve.protocol.rest.server import RESTServer

from seqapps.apps.cli import UsageError, checked_number, positive_int

MAX_BATCH = 1024  # instances in one request
MAX_BODY_BYTES = 16 * 2**20
BODY_SECONDS = 30  # for a request body to arrive
SIGNATURE = "serving_default"
APP = "kserve.model_server:app"  # KServe's REST server adds its routes to this app, whatever it is told

# TensorFlow is imported where it is used: a worker process of --workers N imports this
# module first, and must answer its supervisor's pings within 5 s while it then loads.

PREDICTORS = {}  # name -> the predictor this process serves, for the TF Serving routes below


class BadRequest(InvalidInput):
    """A request the predictor refuses (400), logged in one line, not with a traceback."""


def served_export(path) -> Path:
    """The SavedModel at `path`, or the latest integer version under it."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist: give an export (saved_models/<app>/<version>) or its app's directory")
    if (path / "saved_model.pb").is_file():
        return path
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
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

    def load(self) -> bool:
        import tensorflow as tf

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

    # A worker process of `--workers N` gets the predictor unloaded and loads it itself.
    def __getstate__(self):
        return {"name": self.name, "path": self.path}

    def __setstate__(self, state):
        self.__init__(**state)

    async def predict(self, payload, headers=None):
        # Parsing a large batch takes a while: off the event loop, as the model's call.
        return await asyncio.get_running_loop().run_in_executor(None, self.answer, payload)

    def answer(self, payload):
        if isinstance(payload, bytes):  # KServe passes on a body not labelled JSON (curl -d); TF Serving reads it
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as error:
                raise BadRequest(f"Unrecognized request format: {error}") from None
        inputs, row_format = parse_request(payload, self.inputs)
        return format_response(self.run(inputs), row_format)

    def run(self, inputs):
        import tensorflow as tf

        try:
            outputs = self.signature(**{name: tf.constant(value) for name, value in inputs.items()})
        except tf.errors.InvalidArgumentError as error:  # the graph's own checks, e.g. a history with NaN
            raise BadRequest(reason(error)) from None
        except tf.errors.OpError as error:
            raise InferenceError(reason(error)) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def reason(error):
    """The line of a TensorFlow error that says what went wrong, not where."""
    lines = [line.strip() for line in error.message.splitlines()]
    said = [line for line in lines if line and not line.startswith(("Graph execution error", "Detected at node", "[["))]
    return said[0] if said else type(error).__name__


def warm_up_inputs(specs):
    """One example of each input: a word for strings, zeros (finite) for numbers."""
    return {
        name: np.array([b"warm up"], dtype=object)
        if spec.dtype.name == "string"
        else np.zeros([1, *(d or 1 for d in spec.shape[1:])], spec.dtype.as_numpy_dtype)
        for name, spec in specs.items()
    }


def parse_request(body, specs):
    """The named input arrays of a TF Serving REST request body (decoded JSON), checked
    against the signature's input `specs`; and whether it came in the row format."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise BadRequest('send a JSON object with "instances" (row format) or "inputs" (columnar format)')
    if body.get("signature_name", SIGNATURE) != SIGNATURE:
        raise BadRequest(f"unknown signature_name {body['signature_name']!r}: the model has {SIGNATURE!r}")
    names = list(specs)

    def by_name(value, where):  # a single input may be given without its name
        if isinstance(value, dict) and set(value) != {"b64"}:
            unknown, missing = set(value) - set(names), set(names) - set(value)
            if unknown or missing:
                problem = f"unknown input {min(unknown)!r}" if unknown else f"missing input {min(missing)!r}"
                raise BadRequest(f"{problem} in {where}; the model takes {', '.join(map(repr, names))}")
            return value
        if len(names) > 1:
            raise BadRequest(f"{where} must be an object of the inputs {', '.join(map(repr, names))}")
        return {names[0]: value}

    if "instances" in body:
        if not isinstance(body["instances"], list):
            raise BadRequest('"instances" must be a list, one entry per example')
        check_batch(body["instances"])
        instances = [by_name(instance, "an instance") for instance in body["instances"]]
        columns = {name: [instance[name] for instance in instances] for name in names}
    else:
        columns = by_name(body["inputs"], '"inputs"')
        for value in columns.values():
            check_batch(value)
    return {name: input_array(name, columns[name], spec) for name, spec in specs.items()}, "instances" in body


def check_batch(values):
    if not isinstance(values, list) or not values:
        raise BadRequest("the batch is empty: send at least one example" if values == [] else "send a list of examples")
    if len(values) > MAX_BATCH:
        raise BadRequest(f"a batch holds at most {MAX_BATCH} examples: split the request")


def input_array(name, value, spec):
    """`value` (nested JSON lists) as an array of the input's type and shape, or a 400."""
    if spec.dtype.name == "string":
        array = np.array(strings(name, value, len(spec.shape)), dtype=object)
        if not all(isinstance(item, bytes) for item in array.flat):  # ragged lists
            raise BadRequest(f"input {name!r} must be a regular nested list of strings (every row as long)")
    else:
        try:
            array = np.array(value)
        except ValueError:  # ragged
            array = np.array(None)
        if array.dtype.kind not in "iuf":  # strings, booleans, None, ragged lists
            raise BadRequest(f"input {name!r} must be numbers in a regular nested list (every row as long)")
        array = array.astype(spec.dtype.as_numpy_dtype)
        if not np.isfinite(array).all():
            raise BadRequest(f"input {name!r} holds NaN or Inf: send finite numbers")
    expected = tuple(spec.shape)
    if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape, strict=True)):
        wanted = "[" + ", ".join("any" if d is None else str(d) for d in expected) + "]"
        raise BadRequest(f"input {name!r} has shape {list(array.shape)}; the model takes {wanted}")
    return array


def strings(name, value, depth):
    """A nest of JSON strings or {"b64": ...} objects, at most `depth` lists deep, as the same nest of bytes."""
    if isinstance(value, list):
        if not depth:
            raise BadRequest(f"input {name!r} is nested deeper than its shape")
        return [strings(name, item, depth - 1) for item in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise BadRequest(f"input {name!r}: a b64 value is not valid base64") from None
    raise BadRequest(f'input {name!r} must be strings (or {{"b64": ...}} objects), got {type(value).__name__}')


def json_value(value, binary=False):
    """An output array or element as JSON: numbers as Python numbers, strings decoded,
    or, for an output whose name ends in "_bytes" (`binary`), as {"b64": ...} as TF Serving gives them."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()} if binary else value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [json_value(item, binary) for item in value]
    return value.tolist()


def format_response(outputs, row_format):
    """TF Serving's answer: "predictions" (one entry per example; an object of the
    outputs when there are several) or "outputs" (the batch of each output)."""
    values = {name: json_value(array, name.endswith("_bytes")) for name, array in outputs.items()}
    if len(values) == 1:
        return {"predictions" if row_format else "outputs": next(iter(values.values()))}
    if not row_format:
        return {"outputs": values}
    batch = {len(value) if isinstance(value, list) else None for value in values.values()}
    if len(batch) != 1 or None in batch:
        raise BadRequest('the outputs differ in batch size: ask for the columnar format ("inputs")')
    return {"predictions": [{name: value[i] for name, value in values.items()} for i in range(batch.pop())]}


# -- KServe's web application, which its REST server serves (in every worker process:
# they import this module to unpickle the predictor) with its routes after ours --------


class BodyRefused(Exception):
    """A request body over MAX_BODY_BYTES (413), or slower than BODY_SECONDS (408)."""

    def __init__(self, status):
        self.status = status


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused (413), whether its
    Content-Length says so or its chunks add up to it, and one that stops arriving
    is given up (408), never waited for."""

    def __init__(self, app, limit):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            # Read (and drop) what the client sends first, up to a bound: a client that
            # writes its whole body before it reads would otherwise meet a reset connection.
            body = LimitedBody(receive, 4 * self.limit)
            with contextlib.suppress(BodyRefused):
                while not body.done:
                    await body()
            return await refuse(send, 413)
        try:
            await self.app(scope, LimitedBody(receive, self.limit), send)
        except BodyRefused as error:  # raised where the body was read: the answer has not started
            await refuse(send, error.status)


class LimitedBody:
    """A request's `receive`, refusing a body over `limit` bytes or slower than BODY_SECONDS."""

    def __init__(self, receive, limit):
        self.receive, self.limit, self.received, self.done = receive, limit, 0, False

    async def __call__(self):
        if self.done:  # the body is in: what follows (a client's disconnect) may take any time
            return await self.receive()
        try:
            message = await asyncio.wait_for(self.receive(), BODY_SECONDS)
        except asyncio.TimeoutError:
            raise BodyRefused(408) from None
        self.received += len(message.get("body", b""))
        if self.received > self.limit:
            raise BodyRefused(413)
        self.done = not message.get("more_body", False)
        return message


async def refuse(send, status):
    error = {
        413: f"the request body is over {MAX_BODY_BYTES} bytes: split the batch",
        408: f"the request body did not arrive within {BODY_SECONDS} s",
    }[status]
    # Closing the connection is the way to drop a client's unread bytes (HTTP/1.1 has no other).
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps({"error": error})})


async def bad_request(request, error):
    logger.warning("400 %s: %s", request.url.path, error)
    return ORJSONResponse({"error": str(error)}, 400)


app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
app.add_exception_handler(BadRequest, bad_request)


@app.api_route("/v2/repository/{path:path}", methods=["GET", "POST"])
async def no_repository(path: str):
    """KServe's model repository API would let any client unload the model: not offered."""
    return ORJSONResponse({"error": "the model repository API is not served"}, 404)


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

    from tensorflow.core.framework import types_pb2

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


def port_number(text):
    """An argparse type: a TCP port, 0 for any free one."""
    return checked_number(text, int, "a port number", lambda value: 0 <= value <= 65535, "between 0 and 65535")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="seqapps serve",
        description="Serve an export under TensorFlow Serving's REST API (KServe's model server). "
        f"Requests hold at most {MAX_BATCH} examples and {MAX_BODY_BYTES // 2**20} MiB.",
    )
    parser.add_argument("export", help="an export (saved_models/<app>/<version>), or its app's directory: the latest")
    parser.add_argument("--name", help="the model's name in the URLs (default: the app's directory, e.g. sentiment)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; 0.0.0.0: all)")
    parser.add_argument("--port", type=port_number, default=8080, help="(default: %(default)s; 0: any free port)")
    parser.add_argument("--workers", type=positive_int, default=1, help="server processes (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        path = served_export(args.export)
        name = args.name or (path.parent.name if path.name.isdigit() else path.name)
        SavedModelPredictor(name, path).load()  # refuse a bad export here, in one line
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        try:
            listener = socket.create_server((args.host, args.port), family=family)
        except OSError as error:
            where = f"{args.host}:{args.port}"
            raise UsageError(f"cannot listen on {where} ({error.strerror}): pass another --port or --host") from None
    except UsageError as error:
        parser.exit(2, f"seqapps serve: error: {error}\n")
    configure_logging()  # KServe's and uvicorn's log lines, as KServe's ModelServer has them,
    logging.getLogger(KSERVE_TRACE_LOGGER_NAME).setLevel(logging.WARNING)  # less two timing lines per request
    # The server's own predictor loads in the process that serves it (in each worker).
    repository = ModelRepository()
    predictor = SavedModelPredictor(name, path)
    repository.update(predictor)
    dataplane, extension = DataPlane(model_registry=repository), ModelRepositoryExtension(model_registry=repository)
    port = listener.getsockname()[1]
    print(f"Serving {name} version {predictor.version} ({path}) at http://{args.host}:{port}/v1/models/{name}:predict")
    sys.stdout.flush()
    server = LoadingRESTServer(APP, dataplane, extension, port, workers=args.workers)
    server.config.host = args.host  # KServe writes 0.0.0.0 there; uvicorn only names it in its log
    try:
        if args.workers == 1:
            # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises it again: exit quietly then.
            for stop in (signal.SIGINT, signal.SIGTERM):
                signal.signal(stop, lambda signum, frame: sys.exit(0))
            server.run(sockets=[listener])
        else:
            workers = RESTServerMultiProcess(APP, dataplane, extension, port, workers=args.workers)
            workers._rest_server = server  # (KServe 0.21 has no argument for it)
            asyncio.run(supervise(workers, listener))
    finally:
        print(f"Stopped serving {name}")


class LoadingRESTServer(RESTServer):
    """KServe's REST server, loading its models before it serves: in a worker process,
    only once the worker answers its supervisor's pings (which it must within 5 s, far
    less than TensorFlow takes to load a model)."""

    def run(self, sockets=None):
        for model in self.dataplane.model_registry.get_models().values():
            if not model.ready:
                model.load()
        super().run(sockets=sockets)


async def supervise(workers, listener):
    """KServe's supervisor of worker processes on our socket (its own would bind every
    interface): start them, restart any that dies, stop all on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop, workers.should_exit.set)
    workers.init_processes([listener])
    while not workers.should_exit.is_set():
        await asyncio.sleep(0.5)
        await workers.keep_subprocess_alive([listener])
    await workers.terminate_all()
