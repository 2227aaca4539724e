"""Baselines the model is measured against, on the same windows: persistence,
seasonal naive and linear (NLinear)."""

import numpy as np

from seqapps.apps.cli import UsageError


def persistence(history, target_index, horizon):
    return np.repeat(history[:, -1:, target_index], horizon, axis=1)


def seasonal_naive(history, target_index, horizon, season):
    """Each step repeats the value one season earlier (from the last season seen)."""
    lookback = history.shape[1]
    if season > lookback:
        raise UsageError(f"--season {season} is longer than --lookback {lookback}")
    steps = lookback - season + np.arange(horizon) % season
    return history[:, steps][:, :, target_index]


def fit_linear(history, future, target_index):
    """Least-squares linear map from a variable's re-centred window to its future,
    shared by all target variables (the NLinear baseline of Zeng et al. 2023)."""
    x = history[:, :, target_index] - history[:, -1:, target_index]
    y = future - history[:, -1:, target_index]
    x = np.transpose(x, (0, 2, 1)).reshape(-1, x.shape[1])
    y = np.transpose(y, (0, 2, 1)).reshape(-1, y.shape[1])
    x = np.hstack([x, np.ones((len(x), 1))])
    weights, *_ = np.linalg.lstsq(x.astype("float64"), y.astype("float64"), rcond=None)
    return weights


def linear(history, target_index, weights):
    last = history[:, -1:, target_index]
    x = np.transpose(history[:, :, target_index] - last, (0, 2, 1))
    y = np.concatenate([x, np.ones(x.shape[:2] + (1,))], axis=-1) @ weights
    return np.transpose(y, (0, 2, 1)) + last
