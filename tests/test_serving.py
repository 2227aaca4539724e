"""`seqapps serve`: each app's tiny export behind KServe's model server on 127.0.0.1,
under TensorFlow Serving's REST protocol, against hostile requests."""

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("kserve", reason="the serving extra is not installed: pip install -e '.[serve]'")

from seqapps.apps import forecasting, sentiment, serving, translation  # noqa: E402
from seqapps.apps.export import load_serving_signature  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exports(tmp_path_factory, make_imdb, toy_pairs, write_pairs, write_series):
    """app -> the directory of its tiny export's versions."""
    root = tmp_path_factory.mktemp("serving")
    quiet = ["--epochs", "1", "--verbose", "0", "--units", "8"]
    imdb = make_imdb(root / "imdb")
    sentiment.main(["train", "--data-dir", str(imdb), "--run-dir", str(root / "s"), "--vocab-size", "100", *quiet])
    (root / "pairs").mkdir()
    write_pairs(root / "pairs" / "spa-eng.zip", toy_pairs(200))
    translation.main(["train", "--data-dir", str(root / "pairs"), "--run-dir", str(root / "t"), *quiet])
    csv = write_series(root / "series.csv")
    forecasting.main(
        ["train", "--dataset", str(csv), "--run-dir", str(root / "f"), "--lookback", "24", "--horizon", "12", *quiet]
    )
    for app, run in ((sentiment, "s"), (translation, "t"), (forecasting, "f")):
        app.main(["export", "--run-dir", str(root / run), "--export-dir", str(root / "saved_models" / app.APP.name)])
    return {app.APP.name: root / "saved_models" / app.APP.name for app in (sentiment, translation, forecasting)}


class Server:
    """`seqapps serve` in its own process on a free port of 127.0.0.1."""

    def __init__(self, export, *options):
        command = [sys.executable, "-m", "seqapps.apps", "serve", str(export), "--port", "0", *options]
        # Its output (an access log line per request) goes to a file: a pipe would fill and stop it.
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        # "Serving NAME version V (PATH) at http://HOST:PORT/v1/models/NAME:predict"
        while not (line := next((x for x in self.output().splitlines() if x.startswith("Serving")), None)):
            assert self.process.poll() is None, self.output()[-3000:]
            time.sleep(0.2)
        self.url = line.split(" at ")[-1].strip()
        self.base = self.url.split("/v1/")[0]
        self.name = line.split()[1]

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def request(self, path, body=None, method=None, headers=None):
        """(status, decoded JSON answer) of a request; `body` as bytes."""
        headers = {"Content-Type": "application/json", **(headers or {})}
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def predict(self, payload):
        return self.request(f"/v1/models/{self.name}:predict", json.dumps(payload).encode())

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@contextlib.contextmanager
def served(export, *options):
    server = Server(export, *options)
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):  # the server and any worker processes it left
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


@pytest.fixture(scope="module")
def servers(exports):
    with contextlib.ExitStack() as stack:
        yield {app: stack.enter_context(served(path)) for app, path in exports.items()}


def in_process(export_dir, inputs):
    signature = load_serving_signature(serving.served_export(export_dir))
    return {name: tensor.numpy() for name, tensor in signature(**inputs).items()}


def history(windows, steps=24, variables=3, seed=0):
    return (10 + np.random.default_rng(seed).normal(size=(windows, steps, variables))).astype("float32")


TEXTS = ["A wonderful film.", "Dull, too long; I left early.", "uno 😀 世界"]


@pytest.mark.parametrize("app", ["sentiment", "translation"])
def test_text_apps_answer_both_formats_as_the_savedmodel_does(servers, exports, app):
    server = servers[app]
    expected = in_process(exports[app], {"text": np.array([t.encode() for t in TEXTS], dtype=object)})
    status, rows = server.predict({"instances": TEXTS})
    assert status == 200
    b64 = [{"b64": base64.b64encode(t.encode()).decode()} for t in TEXTS]
    status, columns = server.predict({"inputs": {"text": b64}})
    assert status == 200
    for name, values in expected.items():
        values = [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]
        by_row = [row[name] for row in rows["predictions"]] if len(expected) > 1 else rows["predictions"]
        by_column = columns["outputs"][name] if len(expected) > 1 else columns["outputs"]
        expected_values = values if isinstance(values[0], str) else pytest.approx(values, rel=1e-5)
        assert by_row == expected_values and by_column == expected_values


def test_forecasting_answers_both_formats_in_raw_units(servers, exports):
    server, windows = servers["forecasting"], history(3)
    expected = in_process(exports["forecasting"], {"history": windows})["forecast"]
    status, rows = server.predict({"instances": [{"history": w.tolist()} for w in windows]})
    assert status == 200 and np.allclose(rows["predictions"], expected, rtol=1e-5, atol=1e-5)
    status, columns = server.predict({"inputs": windows.tolist()})
    assert status == 200 and np.allclose(columns["outputs"], expected, rtol=1e-5, atol=1e-5)
    assert np.asarray(rows["predictions"]).shape == (3, 12, 3) and 5 < np.mean(expected) < 15


def test_status_and_metadata_follow_tf_serving(servers):
    server = servers["forecasting"]
    status, answer = server.request(f"/v1/models/{server.name}")
    assert status == 200 and answer["ready"] is True
    assert answer["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    status, answer = server.request(f"/v1/models/{server.name}/metadata")
    signature = answer["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert status == 200 and answer["model_spec"]["name"] == "forecasting"
    assert signature["inputs"]["history"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signature["inputs"]["history"]["tensor_shape"]["dim"]] == ["-1", "24", "3"]
    assert list(signature["outputs"]) == ["forecast"]
    assert server.request("/v1/models/nonesuch")[0] == 404


def body_of(payload):
    return json.dumps(payload).encode()


HOSTILE = [
    ("malformed JSON", "sentiment", b'{"instances": ["good",', 400, "Unrecognized request format"),
    ("invalid UTF-8", "sentiment", b'{"instances": ["\xff\xfe bad"]}', 400, "Unrecognized request format"),
    ("not an object", "sentiment", body_of(["a film"]), 400, '"instances" (row format) or "inputs"'),
    ("both formats", "sentiment", body_of({"instances": ["a"], "inputs": ["a"]}), 400, '"instances" (row format)'),
    ("wrong input name", "sentiment", body_of({"inputs": {"review": ["a"]}}), 400, "unknown input 'review'"),
    ("wrong type", "sentiment", body_of({"instances": [3.5]}), 400, "must be strings"),
    ("bad base64", "sentiment", body_of({"instances": [{"b64": "%%%"}]}), 400, "not valid base64"),
    ("ragged strings", "sentiment", body_of({"instances": ["a", ["b"]]}), 400, "nested deeper than its shape"),
    ("deep nesting", "sentiment", b'{"instances": ' + b"[" * 900 + b"]" * 900 + b"}", 400, "nested deeper"),
    ("a number as the batch", "sentiment", body_of({"inputs": 3}), 400, "send a list of examples"),
    ("empty batch", "sentiment", body_of({"instances": []}), 400, "the batch is empty"),
    (
        "batch over the limit",
        "sentiment",
        body_of({"instances": ["a"] * (serving.MAX_BATCH + 1)}),
        400,
        f"at most {serving.MAX_BATCH} examples",
    ),
    ("text as numbers", "forecasting", body_of({"inputs": [["a"] * 3] * 24}), 400, "must be numbers"),
    ("ragged history", "forecasting", body_of({"inputs": [[[1.0, 2.0, 3.0]] * 23 + [[1.0]]]}), 400, "must be numbers"),
    ("wrong shape", "forecasting", body_of({"inputs": history(2, steps=20).tolist()}), 400, "takes [any, 24, 3]"),
    ("NaN literal", "forecasting", b'{"inputs": [[[NaN, 1, 2]]]}', 400, "Unrecognized request format"),
    ("infinite number", "forecasting", b'{"inputs": [[[1e999, 1, 2]]]}', 400, "number is infinity"),
    ("infinite in float32", "forecasting", body_of({"inputs": [[[1e39, 1.0, 2.0]] * 24]}), 400, "holds NaN or Inf"),
]


@pytest.mark.parametrize("what,app,body,status,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests_get_a_4xx_and_the_server_goes_on(servers, what, app, body, status, message):
    server = servers[app]
    answer_status, answer = server.request(f"/v1/models/{server.name}:predict", body)
    assert answer_status == status and message in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    valid = {"instances": ["fine"]} if app == "sentiment" else {"inputs": history(1).tolist()}
    assert server.predict(valid)[0] == 200


def test_the_model_repository_api_is_not_served(servers):
    server = servers["sentiment"]
    assert server.request(f"/v2/repository/models/{server.name}/unload", b"{}")[0] == 404
    assert server.predict({"instances": ["still here"]})[0] == 200


def test_a_whole_body_over_the_limit_gets_its_413(servers):
    """A client that writes its whole body before it reads (urllib, requests) reads the 413."""
    server = servers["sentiment"]
    status, answer = server.predict({"instances": ["x" * 1000] * 17_000})
    assert status == 413 and "request body is over" in answer["error"]
    assert server.predict({"instances": ["fine"]})[0] == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(servers):
    """A 413 as soon as the headers announce too many bytes; the server goes on."""
    server = servers["sentiment"]
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(
            f"POST /v1/models/{server.name}:predict HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {serving.MAX_BODY_BYTES + 1}\r\n\r\n".encode()
            + b'{"instances": ["'
            + b"x" * 65536
        )
        head, _, body = connection.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"request body is over" in body
    assert server.predict({"instances": ["fine"]})[0] == 200


def test_refuses_a_missing_or_wrong_export_with_one_line(tmp_path, capsys):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    for export, message in (
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "1" / "variables", "does not exist"),
        (tmp_path, "not a loadable SavedModel"),
    ):
        with pytest.raises(SystemExit) as exit_:
            serving.main([str(export)])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(SystemExit):
        serving.main([str(tmp_path), "--port", "70000"])
    assert "must be between 0 and 65535" in capsys.readouterr().err


def test_two_workers_serve_and_stop_on_sigterm(exports):
    with served(exports["sentiment"], "--workers", "2", "--name", "reviews") as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1/models/reviews:predict")
        # The first request waits in the socket's backlog while the workers load the model.
        assert server.predict({"instances": TEXTS})[0] == 200
        assert server.stop() == 0 and "Stopped serving" in server.output()
        assert "died" not in server.output()  # no worker was taken for hung while it loaded


def test_a_body_without_json_content_type_is_read_as_json_and_sigterm_stops_cleanly(exports):
    with served(exports["forecasting"]) as server:
        form = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d says
        path, body = f"/v1/models/{server.name}:predict", json.dumps({"inputs": history(1).tolist()}).encode()
        assert server.request(path, body, headers=form)[0] == 200
        assert server.stop() == 0 and "Stopped serving" in server.output()
