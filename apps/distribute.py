"""Data-parallel training on tf.distribute: `seqapps <app> train --distribute NAME`.

    none          the default strategy: one device
    mirrored      tf.distribute.MirroredStrategy: every GPU of this machine (its CPU
                  when it has none), one replica each; Keras' own `fit`
    multi-worker  tf.distribute.MultiWorkerMirroredStrategy: the machines listed in the
                  standard TF_CONFIG environment variable; the same command runs on each

`--batch-size` is the global batch: every step takes one batch of that size from the
seeded pipeline, which every worker builds identically (preprocessing state included),
and splits it across the replicas (tf.data's DATA auto-sharding: each worker keeps its
own part of each batch). The step therefore sees the same examples as a single device
would, and leaves the same weights.

Keras 3's `fit` fails under MultiWorkerMirroredStrategy ("Attempt to convert a value
(PerReplica...) with an unsupported type to a Tensor"; keras-team/keras#20585), so
`fit` here drives that strategy itself: the model's own compiled step
(`model.train_step`, `model.test_step`: loss, metrics, optimizer) under `strategy.run`
over the distributed datasets, with the same Keras callbacks and progress bar. The
metric variables are synchronised across workers, so every worker sees the same logs
and early stopping stops them all at the same epoch.

Only the chief writes the run directory; every other worker trains in a temporary
directory, removed at the end (`run_directory`).
"""

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from seqapps.apps.cli import UsageError


def strategy(name: str, peer_timeout: float) -> tf.distribute.Strategy:
    """The tf.distribute strategy `name`: none, mirrored or multi-worker. Multi-worker
    first waits, at most `peer_timeout` seconds, for every other worker of TF_CONFIG."""
    if name == "mirrored":
        # Every GPU, else every CPU device: one, unless logical devices were configured (as tests do).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi-worker":
        wait_for_peers(tf_config(), peer_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def tf_config() -> dict:
    """TF_CONFIG, checked: {"cluster": {job: [host:port, ...]}, "task": {"type": job, "index": i}}."""
    example = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if not os.environ.get("TF_CONFIG"):
        raise UsageError(f"--distribute multi-worker needs the TF_CONFIG environment variable, e.g. {example}")
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        task, cluster = config["task"], config["cluster"]
        if task["index"] < 0:
            raise IndexError
        cluster[task["type"]][task["index"]]
        for address in (address for addresses in cluster.values() for address in addresses):
            int(address.rsplit(":", 1)[1])
    except (ValueError, KeyError, IndexError, TypeError):
        raise UsageError(
            f"TF_CONFIG must name a cluster of host:port addresses and this task in it, e.g. {example}"
        ) from None
    return config


def local_tf_configs(count: int) -> list[str]:
    """TF_CONFIG values for a cluster of `count` workers on this machine (127.0.0.1,
    on ports free now), one per worker: to try multi-worker training locally."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}) for index in range(count)]


def wait_for_peers(config: dict, timeout: float) -> None:
    """Return once every other task of the cluster accepts connections; raise after
    `timeout` seconds: TensorFlow itself waits for a missing peer in silence, with no
    limit that can be set through MultiWorkerMirroredStrategy. Until TensorFlow starts,
    this worker's own address accepts connections too (the kernel completes them;
    nothing need be read), so that peers starting in any order find each other."""
    task = config["task"]
    own = config["cluster"][task["type"]][task["index"]]
    peers = [address for addresses in config["cluster"].values() for address in addresses if address != own]
    try:
        listener = socket.create_server(("", int(own.rsplit(":", 1)[1])))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot listen on {own}, this worker's address in TF_CONFIG: {e}") from None
    deadline = time.monotonic() + timeout
    try:
        while True:
            peers = [address for address in peers if not _answers(address)]
            if not peers:
                return
            if time.monotonic() > deadline:
                raise UsageError(
                    f"{task['type']} {task['index']}: no answer from {', '.join(peers)} within {timeout:g} s "
                    "(--peer-timeout): start the same command on every machine of TF_CONFIG"
                )
            time.sleep(0.2)
    finally:
        listener.close()


def _answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def check_batch_size(strategy: tf.distribute.Strategy, batch_size: int) -> None:
    """The global batch must split into equal parts, one per replica."""
    if batch_size % strategy.num_replicas_in_sync:
        raise UsageError(
            f"--batch-size {batch_size} does not split evenly across {strategy.num_replicas_in_sync} replicas: "
            "give a multiple of the number of replicas"
        )


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run: always, but under multi-worker only the
    `chief` task, or worker 0 when the cluster has no chief (TensorFlow's convention)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


@contextlib.contextmanager
def run_directory(run_dir: Path, strategy: tf.distribute.Strategy):
    """The directory this process writes the run to: `run_dir` on the chief; on every
    other worker a temporary directory, removed at the end, that starts with a copy of
    the chief's checkpoints when there are some to resume from (so `run_dir` must be
    readable by every worker for --resume: one machine, or a shared file system).
    Every worker keeps the same files, because loading a model under the strategy is
    a collective operation that all of them take part in."""
    if is_chief(strategy):
        yield run_dir
        return
    with tempfile.TemporaryDirectory(prefix="seqapps-worker-") as tmp:
        for name in ("state.json", "last.keras", "best.keras"):
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, tmp)
        yield Path(tmp)


def fit(model: keras.Model, train_data, validation_data, *, epochs, initial_epoch, callbacks, verbose):
    """`model.fit` on the strategy in scope (the model's); under multi-worker, the same done by hand."""
    strategy = model.distribute_strategy
    if not is_multi_worker(strategy):
        model.fit(
            train_data,
            validation_data=validation_data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles, seeded
            verbose=verbose,
        )
        return
    replicas = strategy.num_replicas_in_sync
    train = strategy.experimental_distribute_dataset(equal_parts(train_data, replicas))
    validation = strategy.experimental_distribute_dataset(equal_parts(validation_data, replicas))

    def counted(step):
        """`step` on every replica; returns how many real examples the batch held."""

        def run(batch):
            strategy.run(step, args=(batch,))
            weights = strategy.run(lambda batch: tf.reduce_sum(batch[2]), args=(batch,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, weights, axis=None)

        # Length-bucketed batches come in many shapes: trace few functions.
        return tf.function(run, reduce_retracing=True)

    train_step, test_step = counted(model.train_step), counted(model.test_step)

    # Reading a metric sums its variables across the workers: a collective operation,
    # so every worker reads them at the same points (and gets the same logs).
    def metrics(prefix=""):
        return {prefix + name: float(value) for name, value in model.get_metrics_result().items()}

    callbacks = keras.callbacks.CallbackList(
        callbacks, add_progbar=verbose != 0, model=model, verbose=verbose, epochs=epochs, steps=None
    )
    model.stop_training = False
    callbacks.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        examples = 0  # counted, so that the history shows that every example took part
        for step, batch in enumerate(train):
            callbacks.on_train_batch_begin(step)
            examples += int(train_step(batch))
            callbacks.on_train_batch_end(step, metrics())
        logs = {**metrics(), "examples": examples}
        model.reset_metrics()
        examples = sum(int(test_step(batch)) for batch in validation)
        if not examples:
            raise UsageError("the validation split is empty")
        logs |= {**metrics("val_"), "val_examples": examples}
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)


def equal_parts(dataset: tf.data.Dataset, replicas: int) -> tf.data.Dataset:
    """`dataset` of (x, y) batches as (x, y, sample_weight), every batch padded with
    blank examples of weight 0 to a multiple of `replicas`, and sharded by batch parts
    (DATA auto-sharding): every replica gets an equal part of every batch.

    Keras' losses average over each replica's part and divide by the number of
    replicas, and a replica with an empty part would report a NaN loss; so no part
    may be empty or shorter than the others. The blanks weigh nothing in the metrics,
    and in the loss they only add to the count it divides by, and only in a batch
    whose size `replicas` does not divide (the last of each length bucket)."""

    def pad(x, y):
        size = tf.shape(tf.nest.flatten(x)[0])[0]
        blanks = (replicas - size % replicas) % replicas

        def padded(t):
            blank = tf.fill(tf.concat([[blanks], tf.shape(t)[1:]], 0), tf.zeros([], t.dtype))
            return tf.concat([t, blank], 0)

        weights = tf.concat([tf.ones([size]), tf.zeros([blanks])], 0)
        # One weight per example, broadcast over its losses: per step where a target has
        # steps and variables (forecasting: losses (batch, horizon), weights (batch, 1)).
        weights = tf.reshape(weights, [-1] + [1] * max(0, len(tf.nest.flatten(y)[0].shape) - 2))
        return tf.nest.map_structure(padded, x), tf.nest.map_structure(padded, y), weights

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.map(pad).with_options(options)
