"""`seqapps serve` under load: requests per second and latency of each app's export
behind KServe's model server on 127.0.0.1, against the same SavedModel called in
process (the server's overhead), and a soak at concurrency 8 (errors, server memory).

Each app's export is its default configuration trained briefly (`--epochs 1 --limit
N`): serving cost depends on the architecture and vocabulary, not on the weights.
Requests carry real inputs: IMDB test reviews, Spanish sentences of spa-eng, ETTh1
windows in raw units. The client is this process: one thread per concurrent client,
each with its own keep-alive HTTP connection, sending as fast as answers come, for
`--seconds` per row. Client and server share the machine's cores.

    python benchmarks/serving.py --data-dir ../shared/data [--apps sentiment translation forecasting]
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from report import RESULTS_DIR, save

SINGLE_CONCURRENCY = (1, 8, 32)
BATCH_CONCURRENCY = (1, 8)
BATCH = 64
WORK_DIR = RESULTS_DIR / "runs" / "serving"  # git-ignored


def app_inputs(app, data_dir, count=512):
    """`count` JSON-ready inputs of the app's signature, from the real test data."""
    if app == "sentiment":
        from seqapps.apps.sentiment.data import load_imdb

        texts = load_imdb(data_dir, splits=("test",))["test"][0]
        return [str(t) for t in np.random.default_rng(0).choice(texts, count, replace=False)]
    if app == "translation":
        from seqapps.apps.translation.data import load_pairs

        _, spanish, _ = load_pairs(data_dir)
        return [str(t) for t in np.random.default_rng(0).choice(spanish, count, replace=False)]
    from seqapps.apps.forecasting.data import read_table

    _, _, values, _ = read_table(Path(data_dir) / "ETTh1.csv")
    test = values[8640 + 2880 : 8640 + 2 * 2880]  # the test split: months 17-20
    starts = np.random.default_rng(0).integers(0, len(test) - 96, count)
    return [test[s : s + 96].tolist() for s in starts]


def exported(app, data_dir, limit):
    """The export of the app's defaults trained briefly, made once."""
    export_dir = WORK_DIR / app / "export"
    if not export_dir.exists():
        run_dir = WORK_DIR / app / "run"
        seqapps = [sys.executable, "-m", f"seqapps.apps.{app}"]
        train = [*seqapps, "train", "--data-dir", data_dir, "--run-dir", str(run_dir), "--verbose", "2"]
        subprocess.run([*train, "--epochs", "1", "--limit", str(limit)], check=True)
        subprocess.run([*seqapps, "export", "--run-dir", str(run_dir), "--export-dir", str(export_dir)], check=True)
    return export_dir


def rss_mib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


class Server:
    def __init__(self, export, name):
        command = [sys.executable, "-m", "seqapps.apps", "serve", str(export), "--port", "0", "--name", name]
        # Its output (an access log line per request) goes to a file: a pipe would fill and stop it.
        log = WORK_DIR / f"{name}-server.log"
        self.process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
        while not (line := next((x for x in log.read_text().splitlines() if x.startswith("Serving")), None)):
            if self.process.poll() is not None:
                sys.exit(f"the server did not start (see {log})")
            time.sleep(0.5)
        url = line.split(" at ")[-1].strip()
        self.host, rest = url.removeprefix("http://").split(":", 1)
        self.port, self.path = int(rest.split("/", 1)[0]), "/" + rest.split("/", 1)[1]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def load(server, bodies, concurrency, seconds):
    """Latencies (s) of the answered requests and the error count, `concurrency`
    clients sending `bodies` in turn for `seconds`."""
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(offset):
        connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
        k = offset
        while time.perf_counter() < deadline:
            body = bodies[k % len(bodies)]
            k += concurrency
            started = time.perf_counter()
            try:
                connection.request("POST", server.path, body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - started


def in_process(export, inputs, batch, seconds):
    """Latencies of the SavedModel's signature called directly, one call at a time."""
    import tensorflow as tf

    from seqapps.apps.export import load_serving_signature
    from seqapps.apps.serving import served_export

    signature = load_serving_signature(served_export(export))
    name = next(iter(signature.structured_input_signature[1]))
    to_tensor = (lambda x: tf.constant(x)) if isinstance(inputs[0], str) else (lambda x: tf.constant(x, tf.float32))
    signature(**{name: to_tensor(inputs[:batch])})  # warm up
    latencies, k, started = [], 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        chunk = [inputs[(k + i) % len(inputs)] for i in range(batch)]
        k += batch
        t = time.perf_counter()
        signature(**{name: to_tensor(chunk)})
        latencies.append(time.perf_counter() - t)
    return latencies, 0, time.perf_counter() - started


def row(app, where, batch, concurrency, result):
    latencies, errors, elapsed = result
    ms = sorted(1000 * t for t in latencies)
    return {
        "app": app,
        "where": where,
        "examples_per_request": batch,
        "concurrency": concurrency,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "examples_per_s": len(latencies) * batch / elapsed,
        "p50_ms": statistics.median(ms) if ms else None,
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None,
        "errors": errors,
    }


COLUMNS = [
    ("app", "app", "{}"),
    ("where", "served by", "{}"),
    ("examples_per_request", "examples/request", "{}"),
    ("concurrency", "concurrency", "{}"),
    ("requests", "requests", "{}"),
    ("requests_per_s", "requests/s", "{:.1f}"),
    ("examples_per_s", "examples/s", "{:.1f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("errors", "errors", "{}"),
    ("rss_start_mib", "server RSS start MiB", "{:.0f}"),
    ("rss_end_mib", "server RSS end MiB", "{:.0f}"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="directory of the datasets (e.g. ../shared/data)")
    parser.add_argument("--apps", nargs="+", default=["sentiment", "translation", "forecasting"])
    parser.add_argument("--seconds", type=float, default=15, help="per row (default: %(default)s)")
    parser.add_argument("--soak-seconds", type=float, default=120, help="(default: %(default)s; 0: none)")
    parser.add_argument("--soak-app", default="sentiment")
    parser.add_argument("--limit", type=int, default=2000, help="training examples (default: %(default)s)")
    args = parser.parse_args()

    rows = []
    settings = {
        "client": "threads, one keep-alive connection each, same machine",
        "server": "seqapps serve --workers 1: one uvicorn process, asyncio's default executor (6 threads here)",
        "seconds_per_row": args.seconds,
        "exports": f"each app's defaults trained with --epochs 1 --limit {args.limit}",
        "translation": "beam search, beam 4 (the export's default)",
    }
    for app in args.apps:
        export = exported(app, args.data_dir, args.limit)
        inputs = app_inputs(app, args.data_dir)
        single = [json.dumps({"instances": [x]}).encode() for x in inputs]
        batched = [json.dumps({"instances": inputs[i : i + BATCH]}).encode() for i in range(0, len(inputs), BATCH)]
        for batch in (1, BATCH):
            rows.append(row(app, "in process", batch, 1, in_process(export, inputs, batch, args.seconds)))
            print(rows[-1], flush=True)
        server = Server(export, app)
        try:
            for concurrency in SINGLE_CONCURRENCY:
                rows.append(row(app, "seqapps serve", 1, concurrency, load(server, single, concurrency, args.seconds)))
                print(rows[-1], flush=True)
            for concurrency in BATCH_CONCURRENCY:
                result = load(server, batched, concurrency, args.seconds)
                rows.append(row(app, "seqapps serve", BATCH, concurrency, result))
                print(rows[-1], flush=True)
            if app == args.soak_app and args.soak_seconds:
                start = rss_mib(server.process.pid)
                soak = row(app, "seqapps serve, soak", 1, 8, load(server, single, 8, args.soak_seconds))
                rows.append({**soak, "rss_start_mib": start, "rss_end_mib": rss_mib(server.process.pid)})
                print(rows[-1], flush=True)
        finally:
            server.stop()
        save("serving", rows, COLUMNS, {**settings, "soak_seconds": args.soak_seconds})


if __name__ == "__main__":
    main()
