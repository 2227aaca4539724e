"""The forecasting model: raw-unit history -> standardise -> segment-wise recurrent
forecaster -> raw-unit forecast."""

import math
import statistics

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from seqapps.apps.forecasting import DISTRIBUTION_LEVELS, NORMALIZATIONS
from seqapps.apps.forecasting.windows import window_starts
from seqapps.layers import make_rnn


@keras.saving.register_keras_serializable(package="seqapps")
class SegmentRecurrentForecaster(keras.layers.Layer):
    """Standardised history (batch, lookback, features) -> standardised forecast
    (batch, horizon, targets), one variable at a time with shared weights.

    Each window is normalised on its own (and the forecast mapped back): with
    `normalization="last"` re-centred on its last value, as SegRNN does; with
    `"revin"` standardised by its own mean and standard deviation, as RevIN does
    without its affine weights. It is then cut into segments of `segment` steps,
    embedded, and read by recurrent layers from `make_rnn`. Three decoders turn the final state into `horizon` steps:

    - `"parallel"`: SegRNN's parallel multi-step forecasting. Every output segment
      m of variable c is one step of the last encoder layer, started from the final
      state, whose input is a learned position embedding of m joined to a learned
      channel embedding of c (half of the units each); a dense head maps each step's
      output to the segment's `segment` values. All segments decode at once.
    - `"direct"`: a dense head maps the final state to all `horizon` steps.
    - `"autoregressive"`: a second recurrent layer decodes a segment at a time,
      feeding each back in.

    With `quantiles` (levels in (0, 1), sorted, 0.5 among them) the head gives every
    step one value per level, and the output is (batch, horizon, levels, targets):
    the median, and above and below it sums of positive (softplus) steps, so the
    quantiles never cross, from the first step of training on. With
    `distribution="normal"` it gives every step a mean and a standard deviation
    (softplus, at least 1e-3), and the output is (batch, horizon, 2, targets); with
    `"studentt"` a location, a scale and the degrees of freedom (2 plus softplus, so
    the variance is finite), (batch, horizon, 3, targets).
    """

    def __init__(
        self,
        lookback,
        horizon,
        segment,
        target_index,
        cell,
        units,
        layers,
        dropout,
        recurrent_dropout,
        decoder="direct",
        normalization="last",
        quantiles=None,
        distribution=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if (quantiles or distribution) and decoder == "autoregressive":
            raise ValueError("quantiles and distributions need the parallel or the direct decoder")
        if quantiles and distribution:
            raise ValueError("give quantiles or a distribution, not both")
        if distribution not in (None, *DISTRIBUTIONS):
            raise ValueError(f"Unknown distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}.")
        if lookback % segment or horizon % segment:
            raise ValueError(f"--segment {segment} must divide --lookback {lookback} and --horizon {horizon}")
        self.lookback, self.horizon, self.segment = lookback, horizon, segment
        self.target_index = list(target_index)
        self.cell, self.units, self.layers = cell, units, layers
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        self.decoder, self.normalization, self.seed = decoder, normalization, seed
        self.quantiles = list(quantiles) if quantiles else None
        self.distribution = distribution
        levels = len(self.quantiles) if self.quantiles else DISTRIBUTIONS[distribution] if distribution else 1
        self.values_per_step = levels
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}.")
        self.embed = keras.layers.Dense(units, activation="relu", name="segment_embedding")
        self.encoder = [
            make_rnn(
                cell,
                units,
                return_sequences=i < layers - 1,
                return_state=i == layers - 1,
                dropout=dropout if i else 0.0,
                recurrent_dropout=recurrent_dropout,
                seed=None if seed is None else seed + i,
                name=f"encoder_{i}",
            )
            for i in range(layers)
        ]
        self.head_dropout = keras.layers.Dropout(dropout, seed=seed)
        if decoder == "parallel":
            self.head = keras.layers.Dense(segment * levels, name="head")
        elif decoder == "direct":
            self.head = keras.layers.Dense(horizon * levels, name="head")
        elif decoder == "autoregressive":
            self.decoder_rnn = make_rnn(
                cell, units, return_state=True, recurrent_dropout=recurrent_dropout, seed=seed, name="decoder"
            )
            self.head = keras.layers.Dense(segment, name="head")
        else:
            raise ValueError(f"Unknown decoder {decoder!r}; valid: parallel, direct, autoregressive.")

    def build(self, input_shape):
        n_segments = self.lookback // self.segment
        self.embed.build((None, n_segments, self.segment))
        shape = (None, n_segments, self.units)
        for rnn in self.encoder:
            rnn.build(shape)
        if self.decoder == "parallel":
            # SegRNN draws both embeddings from a standard normal.
            normal = keras.initializers.RandomNormal(stddev=1.0, seed=self.seed)
            half = self.units // 2
            self.position_embedding = self.add_weight(
                shape=(self.horizon // self.segment, half), initializer=normal, name="position_embedding"
            )
            self.channel_embedding = self.add_weight(
                shape=(input_shape[-1], self.units - half), initializer=normal, name="channel_embedding"
            )
        if self.decoder == "autoregressive":
            self.decoder_rnn.build((None, 1, self.units))
        self.head.build((None, self.units))

    def call(self, history, training=False):
        if self.normalization == "last":
            shift, scale = history[:, -1:, :], 1.0
        else:
            shift = ops.mean(history, axis=1, keepdims=True)
            scale = ops.sqrt(ops.var(history, axis=1, keepdims=True) + 1e-5)
        x = ops.transpose((history - shift) / scale, (0, 2, 1))  # (batch, features, lookback)
        features = history.shape[-1]
        segments = ops.reshape(x, (-1, self.lookback // self.segment, self.segment))
        h = self.embed(segments)
        for rnn in self.encoder[:-1]:
            h = rnn(h, training=training)
        h, *states = self.encoder[-1](h, training=training)
        if self.decoder == "parallel":
            y = self.decode_in_parallel(states, ops.shape(history)[0], features, training)
        elif self.decoder == "direct":
            y = self.head(self.head_dropout(h, training=training))
        else:
            pieces, segment = [], segments[:, -1, :]
            for _ in range(self.horizon // self.segment):
                h, *states = self.decoder_rnn(self.embed(segment)[:, None, :], initial_state=states, training=training)
                segment = self.head(self.head_dropout(h, training=training))
                pieces.append(segment)
            y = ops.concatenate(pieces, axis=-1)
        if not self.quantiles and not self.distribution:
            y = ops.transpose(ops.reshape(y, (-1, features, self.horizon)), (0, 2, 1)) * scale + shift
            return ops.take(y, self.target_index, axis=-1)
        y = ops.transpose(ops.reshape(y, (-1, features, self.horizon, self.values_per_step)), (0, 2, 3, 1))
        if self.distribution:  # (batch, horizon, [location, scale(, degrees of freedom)], features)
            parameters = [y[:, :, 0] * scale + shift, (ops.softplus(y[:, :, 1]) + 1e-3) * scale]
            if self.distribution == "studentt":
                parameters.append(ops.softplus(y[:, :, 2]) + 2.0)
            y = ops.stack(parameters, axis=2)
        else:
            y = monotone_quantiles(y, self.quantiles.index(0.5))
            if self.normalization == "revin":
                scale = scale[:, :, None, :]
            y = y * scale + shift[:, :, None, :]  # (batch, horizon, levels, features)
        return ops.take(y, self.target_index, axis=-1)

    def decode_in_parallel(self, states, batch, features, training):
        """(batch * features, horizon): one step of the last encoder layer's cell per output segment."""
        n_out, half = self.horizon // self.segment, self.units // 2
        queries = ops.concatenate(
            [
                ops.broadcast_to(self.position_embedding[None], (features, n_out, half)),
                ops.broadcast_to(self.channel_embedding[:, None], (features, n_out, self.units - half)),
            ],
            axis=-1,
        )
        cell = self.encoder[-1].cell
        # A query is the same for every window, so its x W + b is computed once and
        # shared, which saves half of the decoder's work (SegRNN drops out nothing
        # before the decoder, so neither does this). Rows (window, variable, segment),
        # like the encoder's (window, variable).
        projected = cell.input_projection(ops.reshape(queries, (features * n_out, self.units)))
        width = projected.shape[-1]
        projected = ops.broadcast_to(
            ops.reshape(projected, (1, features, n_out, width)), (batch, features, n_out, width)
        )
        states = [ops.reshape(ops.repeat(state[:, None], n_out, axis=1), (-1, self.units)) for state in states]
        h, _ = cell.step(ops.reshape(projected, (-1, width)), states, training=training)
        cell.reset_recurrent_dropout_mask()  # one mask per call, as keras.layers.RNN keeps it
        y = self.head(self.head_dropout(h, training=training))  # (batch * features * n_out, segment * values)
        return ops.reshape(y, (-1, self.horizon * self.values_per_step))

    def compute_output_shape(self, input_shape):
        if self.quantiles or self.distribution:
            return (input_shape[0], self.horizon, self.values_per_step, len(self.target_index))
        return (input_shape[0], self.horizon, len(self.target_index))

    def get_config(self):
        return {
            **super().get_config(),
            "lookback": self.lookback,
            "horizon": self.horizon,
            "segment": self.segment,
            "target_index": self.target_index,
            "cell": self.cell,
            "units": self.units,
            "layers": self.layers,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "decoder": self.decoder,
            "normalization": self.normalization,
            "quantiles": self.quantiles,
            "distribution": self.distribution,
            "seed": self.seed,
        }


# Values per step of each distribution the forecaster can give: its parameters.
DISTRIBUTIONS = {"normal": 2, "studentt": 3}


def monotone_quantiles(raw, median):
    """Quantiles (..., levels, features) that never cross, from unconstrained `raw`
    values: level `median` is its raw value, each level above it the one below plus
    softplus of its raw value, each level below it the one above minus that."""
    center = raw[..., median : median + 1, :]
    above = center + ops.cumsum(ops.softplus(raw[..., median + 1 :, :]), axis=-2)
    below = center - ops.flip(ops.cumsum(ops.flip(ops.softplus(raw[..., :median, :]), axis=-2), axis=-2), axis=-2)
    return ops.concatenate([below, center, above], axis=-2)


class StandardizedError(keras.losses.Loss):
    """The mean of `error` over raw-unit forecast errors measured in standard
    deviations of each target, so that every variable weighs the same whatever its unit."""

    error = None

    def __init__(self, scale, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = [float(s) for s in scale]

    def call(self, y_true, y_pred):
        return ops.mean(self.error((y_true - y_pred) / ops.convert_to_tensor(self.scale)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="seqapps")
class StandardizedMeanSquaredError(StandardizedError):
    """MSE on the standardised scale: the benchmark's metric."""

    error = staticmethod(ops.square)

    def __init__(self, scale, name="standardized_mse", **kwargs):
        super().__init__(scale, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="seqapps")
class StandardizedMeanAbsoluteError(StandardizedError):
    """MAE on the standardised scale: a loss less swayed by the rare large errors."""

    error = staticmethod(ops.abs)

    def __init__(self, scale, name="standardized_mae", **kwargs):
        super().__init__(scale, name=name, **kwargs)


LOSSES = {"mse": StandardizedMeanSquaredError, "mae": StandardizedMeanAbsoluteError}


@keras.saving.register_keras_serializable(package="seqapps")
class StandardizedPinballLoss(keras.losses.Loss):
    """The pinball (quantile) loss on the standardised scale, averaged over the levels
    and targets: for level q and error e = y - y_q in standard deviations of the
    target, max(q e, (q - 1) e). Twice it is the CRPS of the quantile forecast
    (Gneiting & Raftery 2007), the quantile levels standing in for all levels.

    y_true is (batch, horizon, targets), y_pred (batch, horizon, levels, targets).
    """

    def __init__(self, scale, quantiles, name="pinball", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = [float(s) for s in scale]
        self.quantiles = [float(q) for q in quantiles]

    def call(self, y_true, y_pred):
        levels = ops.convert_to_tensor(self.quantiles)[:, None]
        error = (y_true[:, :, None, :] - y_pred) / ops.convert_to_tensor(self.scale)
        return ops.mean(ops.maximum(levels * error, (levels - 1.0) * error), axis=(-2, -1))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "quantiles": self.quantiles}


@keras.saving.register_keras_serializable(package="seqapps")
class StandardizedNLL(keras.losses.Loss):
    """The negative log-likelihood of the future under the forecast distribution per
    step and target (`kind` "normal" or "studentt"), on the standardised scale (in
    units of each target's standard deviation, so every variable weighs the same),
    averaged over the targets.

    y_true is (batch, horizon, targets); y_pred (batch, horizon, parameters, targets)
    in raw units: location and scale, and for Student's t the degrees of freedom.
    """

    def __init__(self, scale, kind, name="nll", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = [float(s) for s in scale]
        self.kind = kind

    def call(self, y_true, y_pred):
        location, spread = y_pred[:, :, 0], y_pred[:, :, 1]
        z = (y_true - location) / spread
        nll = ops.log(spread / ops.convert_to_tensor(self.scale))
        if self.kind == "normal":
            nll += 0.5 * z**2 + 0.5 * math.log(2 * math.pi)
        else:
            df = y_pred[:, :, 2]
            nll += (
                tf.math.lgamma(df / 2)
                - tf.math.lgamma((df + 1) / 2)
                + 0.5 * ops.log(df * math.pi)
                + (df + 1) / 2 * ops.log1p(z**2 / df)
            )
        return ops.mean(nll, axis=-1)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "kind": self.kind}


@keras.saving.register_keras_serializable(package="seqapps")
class StandardizedCRPS(StandardizedPinballLoss):
    """The CRPS as evaluate computes it: twice the pinball loss over the levels."""

    def __init__(self, scale, quantiles, name="crps", **kwargs):
        super().__init__(scale, quantiles, name=name, **kwargs)

    def call(self, y_true, y_pred):
        return 2 * super().call(y_true, y_pred)


def crps_metric(scale, levels):
    """The CRPS of the quantiles, logged as quantiles_crps: a tuning objective
    (`seqapps tune forecasting --objective val_quantiles_crps`)."""
    return keras.metrics.MeanMetricWrapper(StandardizedCRPS(scale, levels), name="crps")


def distribution_quantiles(distribution, kind, levels):
    """(batch, horizon, levels, targets) quantiles of the `distribution` (batch,
    horizon, parameters, targets) at `levels`: for the normal through the inverse
    error function, for Student's t by bisection on its CDF (the regularised
    incomplete beta function): core TensorFlow operations both, so the export needs
    nothing more."""
    location, spread = distribution[:, :, :1], distribution[:, :, 1:2]
    if kind == "normal":
        z = ops.convert_to_tensor([statistics.NormalDist().inv_cdf(q) for q in levels])[:, None]
        return location + spread * z
    return location + spread * student_t_quantiles(distribution[:, :, 2:3], levels)


@keras.saving.register_keras_serializable(package="seqapps")
class DistributionQuantiles(keras.layers.Layer):
    """`distribution_quantiles` as a layer: a distribution's quantiles at `levels`."""

    def __init__(self, kind, levels, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.levels = kind, [float(q) for q in levels]

    def call(self, distribution):
        return distribution_quantiles(distribution, self.kind, self.levels)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], len(self.levels), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "levels": self.levels}


def student_t_quantiles(df, levels, steps=40):
    """The standard Student's t quantiles at `levels` (shape (levels, 1)) for the degrees
    of freedom `df` (broadcast against them). For p >= 0.5 the quantile t solves
    I_x(df / 2, 1 / 2) = 2 (1 - p) with x = df / (df + t^2); the lower ones by symmetry."""
    p = np.array(levels, dtype="float32")[:, None]
    tail = tf.constant(2 * np.minimum(p, 1 - p))  # I_x(df/2, 1/2) at the quantile, increasing in x
    df = tf.broadcast_to(df, tf.broadcast_dynamic_shape(tf.shape(df), tf.shape(tail)))
    low, high = tf.zeros_like(df), tf.ones_like(df)
    for _ in range(steps):  # x within 2^-40 of the root
        middle = (low + high) / 2
        above = tf.math.betainc(df / 2, 0.5, middle) > tail
        low, high = tf.where(above, low, middle), tf.where(above, middle, high)
    x = (low + high) / 2
    t = tf.sqrt(df * (1 - x) / x)
    return tf.constant(np.sign(p - 0.5)) * t


def learning_rate(config, series):
    """The learning rate of each epoch, as a schedule where it changes: SegRNN's "type3"
    with `lr_decay` != 1 (constant for four epochs, then multiplied by `lr_decay` after
    each epoch), and with `lr_warmup` != 1 the first epoch at `lr_warmup` times the rate
    (SegRNN's code effectively trains its first epoch at 1/25 of it: the OneCycleLR
    scheduler it builds and never steps sets that rate until its first adjustment)."""
    rates = [
        config["learning_rate"] * (config["lr_warmup"] if epoch == 0 else 1.0) * config["lr_decay"] ** max(0, epoch - 3)
        for epoch in range(config["epochs"])
    ]
    if len(set(rates)) == 1:
        return config["learning_rate"]
    steps = math.ceil(len(window_starts(series, "train", config)) / config["batch_size"])
    return keras.optimizers.schedules.PiecewiseConstantDecay([steps * epoch for epoch in range(1, len(rates))], rates)


def build_model(config, series):
    """The compiled model for `config`, standardising with the statistics of `series` (`data.Series`)."""
    mean, var, index = series.mean, series.std**2, series.target_index
    history = keras.Input((config["lookback"], len(series.features)), name="history")
    # In and out of raw units in float32 whatever the dtype policy: float16 has 11 bits.
    x = keras.layers.Normalization(mean=mean, variance=var, name="standardize", dtype="float32")(history)
    x = SegmentRecurrentForecaster(
        lookback=config["lookback"],
        horizon=config["horizon"],
        segment=config["segment"],
        target_index=index,
        cell=config["cell"],
        units=config["units"],
        layers=config["layers"],
        dropout=config["dropout"],
        recurrent_dropout=config["recurrent_dropout"],
        decoder=config["decoder"],
        normalization=config["normalization"],
        quantiles=config.get("quantiles"),
        distribution=config.get("distribution"),
        seed=config["seed"],
        name="forecaster",
    )(x)
    to_raw_units = keras.layers.Normalization(
        mean=mean[index], variance=var[index], invert=True, name="forecast", dtype="float32"
    )
    scale = series.std[index]
    # The standardised MSE is also a metric, so that a model trained on another
    # loss is still measured (and its recipe chosen) on the benchmark's metric.
    mse = keras.metrics.MeanMetricWrapper(StandardizedMeanSquaredError(scale), name="standardized_mse")
    optimizer = keras.optimizers.Adam(
        learning_rate(config, series), beta_1=config["adam_beta_1"], epsilon=config["adam_epsilon"]
    )
    name = f"forecasting_{config['cell']}"
    if config.get("distribution"):
        kind = config["distribution"]
        # The location in raw units as the forecast layer maps it; the scale scaled alone.
        parameters = [to_raw_units(x[:, :, 0]), x[:, :, 1] * scale.astype("float32")]
        if kind == "studentt":
            parameters.append(x[:, :, 2])
        distribution = keras.ops.stack(parameters, axis=2)
        outputs = {
            "forecast": distribution[:, :, 0],
            "distribution": distribution,
            "quantiles": DistributionQuantiles(kind, DISTRIBUTION_LEVELS, name="quantiles")(distribution),
        }
        model = keras.Model(history, outputs, name=name)
        model.compile(
            optimizer=optimizer,
            loss={"distribution": StandardizedNLL(scale, kind)},
            # No CRPS metric: Student's t quantiles (40 bisection steps of betainc per value)
            # made each training step 10 times slower. evaluate scores the intervals.
            metrics={"forecast": ["mae", mse]},
        )
        return model
    forecast = to_raw_units(x)
    if not config.get("quantiles"):
        model = keras.Model(history, forecast, name=name)
        model.compile(optimizer=optimizer, loss=LOSSES[config["loss"]](scale), metrics=["mae", mse])
        return model
    # The quantiles, and the median as the point forecast.
    median = keras.ops.take(forecast, config["quantiles"].index(0.5), axis=2)
    model = keras.Model(history, {"forecast": median, "quantiles": forecast}, name=name)
    model.compile(
        optimizer=optimizer,
        loss={"quantiles": StandardizedPinballLoss(scale, config["quantiles"])},
        metrics={"forecast": ["mae", mse], "quantiles": [crps_metric(scale, config["quantiles"])]},
    )
    return model
