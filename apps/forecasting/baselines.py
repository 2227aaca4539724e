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


def recentred_rows(history, future, target_index, scale):
    """One row per (window, target) of the linear baseline: its window re-centred on
    its last value, in standard deviations, plus a constant; and its future likewise."""
    last = history[:, -1:, target_index]
    x = np.transpose((history[:, :, target_index] - last) / scale, (0, 2, 1)).reshape(-1, history.shape[1])
    x = np.hstack([x, np.ones((len(x), 1))]).astype("float64")
    if future is None:
        return x, None
    y = np.transpose((future - last) / scale, (0, 2, 1)).reshape(-1, future.shape[1]).astype("float64")
    return x, y


PENALTIES = [0.0, *np.logspace(-6, 3, 10)]  # up to weights near 0, i.e. persistence


def fit_linear(train, validation, target_index, scale):
    """A linear map from a variable's re-centred window to its future, shared by all
    target variables (the NLinear baseline of Zeng et al. 2023), fitted by ridge
    regression on the `train` (history, future) windows with the penalty (relative
    to the mean squared input) that forecasts the `validation` windows best: plain
    least squares overfits, even diverges, when the windows are few. Both are
    iterables of (history, future) chunks, summed up one at a time."""
    gram = moment = 0.0
    for history, future in train:
        x, y = recentred_rows(history, future, target_index, scale)
        gram, moment = gram + x.T @ x, moment + x.T @ y
    # The penalty scales with the mean squared input; the constant goes unpenalised.
    ridge = np.trace(gram) / len(gram) * np.diag([1.0] * (len(gram) - 1) + [0.0])
    fits = [np.linalg.lstsq(gram + penalty * ridge, moment, rcond=None)[0] for penalty in PENALTIES]
    squared_errors = np.zeros(len(fits))
    for history, future in validation:
        x, y = recentred_rows(history, future, target_index, scale)
        squared_errors += [np.sum((x @ weights - y) ** 2) for weights in fits]
    return fits[int(np.argmin(squared_errors))]


def linear(history, target_index, weights, scale):
    x, _ = recentred_rows(history, None, target_index, scale)
    y = (x @ weights).reshape(len(history), len(target_index), -1)
    return np.transpose(y, (0, 2, 1)) * scale + history[:, -1:, target_index]
