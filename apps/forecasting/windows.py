"""Windows of a series: (history, future) pairs cut from each split, as arrays or
as a tf.data pipeline."""

import numpy as np
import tensorflow as tf

from seqapps.apps.forecasting.data import Series


def window_starts(series: Series, split, config):
    """First rows of the split's windows; --limit keeps a seeded sample of the training ones."""
    start, end = series.bounds(config["lookback"])[split]
    last = end - config["lookback"] - config["horizon"]
    starts = np.arange(start, last + 1, config["stride"] if split == "train" else 1)
    if split == "train" and config["limit"] and config["limit"] < len(starts):
        starts = np.sort(np.random.default_rng(config["seed"]).choice(starts, config["limit"], replace=False))
    return starts


def windows(series: Series, starts, config, history_length=None):
    """The (history, future) windows that start at `starts` as arrays, in raw units;
    each history is the `history_length` rows (default: the lookback) before its future."""
    lookback, horizon = config["lookback"], config["horizon"]
    length = history_length or lookback
    history = np.stack([series.values[s + lookback - length : s + lookback] for s in starts])
    future = np.stack([series.values[s + lookback : s + lookback + horizon][:, series.target_index] for s in starts])
    return history, future


CHUNK_ROWS = 50_000


def window_chunks(series: Series, starts, config, history_length=None, rows=None):
    """The windows that start at `starts`, as `windows` gives them, in chunks of about
    `rows` (window, target) pairs (default CHUNK_ROWS), so that memory stays flat in
    the number of windows: a wide series (321 variables, lookback 720) fits."""
    size = max(1, (rows or CHUNK_ROWS) // len(series.target_index))
    for i in range(0, len(starts), size):
        yield windows(series, starts[i : i + size], config, history_length)


def dataset(series: Series, split, config, shuffle_seed=None):
    """Windows of a split as a batched tf.data pipeline, cut on the fly from the series."""
    values = tf.constant(series.values)
    targets = tf.constant(series.target_index)
    lookback, horizon = config["lookback"], config["horizon"]
    starts = window_starts(series, split, config)

    def cut(start):
        history = values[start : start + lookback]
        future = tf.gather(values[start + lookback : start + lookback + horizon], targets, axis=1)
        return history, future

    ds = tf.data.Dataset.from_tensor_slices(starts)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(starts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE).batch(config["batch_size"]).prefetch(tf.data.AUTOTUNE)


def datasets(config, series: Series, model):
    train, validation = dataset(series, "train", config, shuffle_seed=config["seed"]), dataset(series, "val", config)
    if isinstance(model.output, dict):
        # Keras takes a target per output, and every output forecasts the future: the point
        # forecast is scored by its metrics, the quantiles or the distribution by the loss.
        def targets(history, future):
            return history, {name: future for name in model.output}

        train, validation = train.map(targets), validation.map(targets)
    return train, validation
