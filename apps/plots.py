"""The plots the apps write as PNG files."""

import numpy as np

# Figures straight from matplotlib.figure, not pyplot: files only, no GUI backend,
# nothing to close, on servers and CI alike.
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def subplots(*args, figsize=None, **kwargs):
    """`pyplot.subplots` without pyplot: a figure and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def save_figure(fig, path, dpi=100):
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)


def plot_history(history, path):
    """Learning curves: one panel per metric, training and validation together (not
    the learning rate, nor the examples counted under multi-worker)."""
    metrics = [key for key in history if not key.startswith("val_") and key not in ("learning_rate", "examples")]
    if not metrics:
        return
    fig, axes = subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        epochs = np.arange(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], "o-", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def plot_confusion_matrix(matrix, labels, path, title="Confusion matrix"):
    """`matrix[i][j]`: examples of true class i predicted as class j."""
    matrix = np.asarray(matrix)
    fig, ax = subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, f"{count:,}", ha="center", va="center", color=color)
    ax.set_title(title)
    save_figure(fig, path)


def plot_forecasts(history, actual, forecasts, targets, path, window_numbers, max_targets=3, split="test"):
    """Some windows of the `split`: history, actual future and each forecast.

    `history` (windows, lookback, targets), `actual` (windows, horizon, targets),
    `forecasts` name -> array shaped like `actual`; the first is drawn boldest.
    `window_numbers`: each window's place among the split's windows, for the titles.
    """
    rows = min(max_targets, len(targets))
    fig, axes = subplots(rows, len(actual), figsize=(5 * len(actual), 2.8 * rows), squeeze=False)
    lookback, horizon = history.shape[1], actual.shape[1]
    past, future = np.arange(-lookback, 0), np.arange(horizon)
    for row in range(rows):
        for window, number in enumerate(window_numbers):
            ax = axes[row][window]
            ax.plot(past, history[window, :, row], color="gray", lw=1, label="history")
            ax.plot(future, actual[window, :, row], color="black", lw=1.5, label="actual")
            for k, (name, forecast) in enumerate(forecasts.items()):
                ax.plot(future, forecast[window, :, row], lw=2 if k == 0 else 1, ls="-" if k == 0 else "--", label=name)
            ax.set_title(f"{targets[row]}, {split} window {number}")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize="small")
    save_figure(fig, path, dpi=90)


def plot_fan_chart(history, actual, quantiles, levels, targets, path, window_numbers, max_targets=3, split="test"):
    """Some windows of the `split`: history, actual future, the median forecast and its central
    intervals as bands (a fan chart).

    `quantiles` (windows, horizon, levels, targets) at `levels` (sorted, 0.5 among them).
    """
    rows = min(max_targets, len(targets))
    fig, axes = subplots(rows, len(actual), figsize=(5 * len(actual), 2.8 * rows), squeeze=False)
    lookback, horizon = history.shape[1], actual.shape[1]
    past, future = np.arange(-lookback, 0), np.arange(horizon)
    pairs = [(i, levels.index(1 - q)) for i, q in enumerate(levels) if q < 0.5 and 1 - q in levels]
    median = levels.index(0.5)
    for row in range(rows):
        for window, number in enumerate(window_numbers):
            ax = axes[row][window]
            ax.plot(past, history[window, :, row], color="gray", lw=1, label="history")
            for k, (low, high) in enumerate(pairs):  # outermost first, each band darker
                ax.fill_between(
                    future,
                    quantiles[window, :, low, row],
                    quantiles[window, :, high, row],
                    color="tab:blue",
                    alpha=0.15 + 0.15 * k,
                    lw=0,
                    label=f"{levels[high] - levels[low]:.0%} interval",
                )
            ax.plot(future, quantiles[window, :, median, row], color="tab:blue", lw=1.5, label="median")
            ax.plot(future, actual[window, :, row], color="black", lw=1, label="actual")
            ax.set_title(f"{targets[row]}, {split} window {number}")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize="small")
    save_figure(fig, path, dpi=90)


def plot_calibration(coverages, path, split="test"):
    """Observed against nominal coverage of central intervals; `coverages`: name ->
    {nominal share: observed share}. On the diagonal, the intervals say the truth."""
    fig, ax = subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--", label="calibrated")
    for name, points in coverages.items():
        nominal = sorted(points)
        ax.plot(nominal, [points[n] for n in nominal], "o-", label=name)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel(f"observed coverage ({split} windows)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, path)


def plot_error_by_horizon(errors, path, metric="MSE (standardised)"):
    """`errors`: name -> error per forecast step."""
    fig, ax = subplots(figsize=(7, 4))
    for k, (name, values) in enumerate(errors.items()):
        ax.plot(np.arange(1, len(values) + 1), values, lw=2 if k == 0 else 1, label=name)
    ax.set_xlabel("steps ahead")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def plot_trial_scores(rows, objective, importances, path):
    """A search: the score of each trial, coloured by cell, the defaults' (the first
    trial's) as a line, trials the budget stopped circled and failed trials marked on the
    axis; then a panel per hyperparameter of `importances` ([(name, share)]), the scores
    against its values."""
    width = max(6, 0.35 * len(rows))
    fig, axes = subplots(1, 1 + len(importances), figsize=(width + 4 * len(importances), 4), squeeze=False)
    ax = axes[0][0]
    cells = sorted({row["hyperparameters"].get("cell", "-") for row in rows})
    for cell in cells:
        done = [
            (i, row["score"])
            for i, row in enumerate(rows)
            if row["hyperparameters"].get("cell", "-") == cell and row["score"] is not None
        ]
        if done:
            ax.scatter(*zip(*done, strict=True), label=cell, s=40)
    if rows and rows[0]["score"] is not None:
        ax.axhline(rows[0]["score"], color="grey", linestyle="--", label="defaults")
    stopped = [(i, row["score"]) for i, row in enumerate(rows) if row["stopped_by_budget"] and row["score"] is not None]
    if stopped:
        ax.scatter(
            *zip(*stopped, strict=True), s=130, facecolors="none", edgecolors="black", label="stopped by the budget"
        )
    failed = [i for i, row in enumerate(rows) if row["score"] is None]
    if failed:
        ax.scatter(failed, [ax.get_ylim()[0]] * len(failed), marker="x", color="red", label="failed")
    ax.set_xticks(range(len(rows)), [row["trial"] for row in rows], rotation=90, fontsize="small")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    # Above the panel, not in it: inside, with a dozen trials, it hides some of them.
    ax.legend(fontsize="small", ncols=4, loc="lower left", bbox_to_anchor=(0, 1.02), frameon=False)
    done = [row for row in rows if row["score"] is not None]
    for ax, (name, share) in zip(axes[0][1:], importances, strict=True):
        values = [row["hyperparameters"].get(name) for row in done]
        scores = [row["score"] for row in done]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            ax.scatter(values, scores, s=40)
            if min(values) > 0 and max(values) / min(values) > 20:
                ax.set_xscale("log")
            else:  # few ticks: a learning rate's long labels run into each other
                ax.xaxis.set_major_locator(MaxNLocator(5))
        else:  # categories, in the order of their names
            names = sorted({str(v) for v in values})
            ax.scatter([names.index(str(v)) for v in values], scores, s=40)
            ax.set_xticks(range(len(names)), names, rotation=45, fontsize="small")
        ax.set_title(f"{name} (explains {share:.0%})")
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_attention(weights, source_words, target_words, path):
    """Heatmap of attention weights: one row per target word, one column per source word."""
    weights = np.asarray(weights)
    fig, ax = subplots(figsize=(1.5 + 0.45 * len(source_words), 1.2 + 0.4 * len(target_words)))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_words)), source_words, rotation=60, ha="right")
    ax.set_yticks(range(len(target_words)), target_words)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    fig.colorbar(image, ax=ax, fraction=0.05)
    save_figure(fig, path)
