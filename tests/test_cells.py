"""The cells against their published equations (written out here in NumPy), against
Keras' built-in layers, and as Keras layers (masks, Bidirectional, stateful, ...).
Backend-neutral: `.ci/run` also runs this file under JAX."""

import keras
import numpy as np
import pytest

from seqapps.layers import CELLS, CoupledLSTMCell, GatedRNN, GRUCell, LSTMCell, make_rnn

BATCH, STEPS, FEATURES, UNITS = 3, 5, 4, 6


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- NumPy references: one step each, straight from the papers' equations --------


def lstm_step(w, x, h, c):
    i, f, g, o = np.split(x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"], 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


# Greff et al. 2015's vanilla LSTM (V, peepholes) and its variants, each one change:
# name -> (gate blocks present, candidate activation, output activation, full gate recurrence).
VANILLA_AND_VARIANTS = {
    "peephole": ("ifco", True, True, False),
    "nig": ("fco", True, True, False),
    "nfg": ("ico", True, True, False),
    "nog": ("ifc", True, True, False),
    "niaf": ("ifco", False, True, False),
    "noaf": ("ifco", True, False, False),
    "fgr": ("ifco", True, True, True),
}


def vanilla_step(name, w, x, h, c, gates):
    """One step of the vanilla LSTM, with the change of variant `name`; `gates` are
    i, f, o of the previous step (full gate recurrence only)."""
    blocks, input_activation, output_activation, full_gate_recurrence = VANILLA_AND_VARIANTS[name]
    z = x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]
    z = dict(zip(blocks, np.split(z, len(blocks), axis=-1), strict=True))
    if full_gate_recurrence:
        recurrent = np.split(np.concatenate(gates, -1) @ w["gate_recurrent_kernel"], 3, axis=-1)
        for gate, extra in zip("ifo", recurrent, strict=True):
            z[gate] = z[gate] + extra
    i = sigmoid(z["i"] + w["peephole_i"] * c) if "i" in z else 1.0
    f = sigmoid(z["f"] + w["peephole_f"] * c) if "f" in z else 1.0
    c = f * c + i * (np.tanh(z["c"]) if input_activation else z["c"])
    o = sigmoid(z["o"] + w["peephole_o"] * c) if "o" in z else 1.0
    h = o * (np.tanh(c) if output_activation else c)
    return h, c, [i, f, o]


def cifg_step(w, x, h, c):
    i, g, o = np.split(x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"], 3, axis=-1)
    i = sigmoid(i)
    c = (1.0 - i) * c + i * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def gru_step(w, x, h, reset_after):
    u = h.shape[-1]
    W, U, b = w["kernel"], w["recurrent_kernel"], w["bias"]
    b_in, b_rec = (b[0], b[1]) if reset_after else (b, np.zeros_like(b))
    xz, xr, xh = np.split(x @ W + b_in, 3, axis=-1)
    rz, rr, rh = np.split(h @ U + b_rec, 3, axis=-1)
    z, r = sigmoid(xz + rz), sigmoid(xr + rr)
    if reset_after:
        candidate = np.tanh(xh + r * rh)
    else:
        candidate = np.tanh(xh + (r * h) @ U[:, 2 * u :])
    return z * h + (1.0 - z) * candidate


def reference(name, weights, xs):
    """Run a NumPy cell over `xs` (batch, time, d); return all h and the final states."""
    h = np.zeros((xs.shape[0], UNITS), np.float64)
    c = np.zeros_like(h)
    gates = [np.zeros_like(h)] * 3
    outputs = []
    for t in range(xs.shape[1]):
        x = xs[:, t].astype(np.float64)
        if name == "lstm":
            h, c = lstm_step(weights, x, h, c)
        elif name in VANILLA_AND_VARIANTS:
            h, c, gates = vanilla_step(name, weights, x, h, c, gates)
        elif name == "cifg":
            h, c = cifg_step(weights, x, h, c)
        else:
            h = gru_step(weights, x, h, reset_after=name == "gru_reset_after")
        outputs.append(h)
    if name.startswith("gru"):
        return np.stack(outputs, axis=1), [h]
    return np.stack(outputs, axis=1), [h, c] + (gates if name == "fgr" else [])


def randomize(layer, seed=0):
    """Give every weight of `layer` random non-zero values; return them by name."""
    rng = np.random.default_rng(seed)
    values = [rng.normal(0.0, 0.5, w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(values)
    return {w.name: v for w, v in zip(layer.weights, values, strict=True)}


def inputs(seed=1, steps=STEPS):
    return np.random.default_rng(seed).normal(size=(BATCH, steps, FEATURES)).astype("float32")


CELL_CASES = {
    "lstm": lambda: LSTMCell(UNITS),
    "cifg": lambda: CoupledLSTMCell(UNITS),
    "gru_paper": lambda: GRUCell(UNITS, reset_after=False),
    "gru_reset_after": lambda: GRUCell(UNITS, reset_after=True),
    **{name: lambda name=name: CELLS[name](UNITS) for name in VANILLA_AND_VARIANTS},
}


@pytest.mark.parametrize("rnn_class", [GatedRNN, keras.layers.RNN], ids=["GatedRNN", "keras.RNN"])
@pytest.mark.parametrize("name", list(CELL_CASES))
def test_cell_matches_published_equations(name, rnn_class):
    layer = rnn_class(CELL_CASES[name](), return_sequences=True, return_state=True)
    x = inputs()
    layer(x)
    weights = randomize(layer)
    outputs, *states = layer(x)
    expected_outputs, expected_states = reference(name, weights, x)
    np.testing.assert_allclose(outputs, expected_outputs, atol=1e-5, rtol=0)
    for state, expected in zip(states, expected_states, strict=True):
        np.testing.assert_allclose(state, expected, atol=1e-5, rtol=0)


def built_in_and_ours(name, reset_after=True, **kwargs):
    if name == "lstm":
        return keras.layers.LSTM(UNITS, **kwargs), make_rnn("lstm", UNITS, **kwargs)
    return (
        keras.layers.GRU(UNITS, reset_after=reset_after, **kwargs),
        make_rnn("gru", UNITS, reset_after=reset_after, **kwargs),
    )


@pytest.mark.parametrize("name,reset_after", [("lstm", True), ("gru", True), ("gru", False)])
def test_weights_of_keras_builtin_load_and_agree(name, reset_after):
    ours_kwargs = dict(return_sequences=True, return_state=True)
    builtin, ours = built_in_and_ours(name, reset_after, **ours_kwargs)
    x = inputs()
    builtin(x)
    ours(x)
    randomize(builtin)
    ours.set_weights(builtin.get_weights())
    for got, want in zip(ours(x), builtin(x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_peephole_with_zero_peepholes_is_lstm():
    x = inputs()
    lstm = make_rnn("lstm", UNITS, return_sequences=True)
    peephole = make_rnn("peephole", UNITS, return_sequences=True, peephole_initializer="zeros")
    lstm(x)
    peephole(x)
    weights = randomize(lstm)
    peephole.set_weights([weights["kernel"], weights["recurrent_kernel"], weights["bias"]] + [np.zeros(UNITS)] * 3)
    np.testing.assert_allclose(peephole(x), lstm(x), atol=1e-6)


def test_forget_bias_initialisation():
    lstm = make_rnn("lstm", 2)
    cifg = make_rnn("cifg", 2)
    lstm(inputs())
    cifg(inputs())
    np.testing.assert_array_equal(lstm.cell.bias.numpy(), [0, 0, 1, 1, 0, 0, 0, 0])
    # f = 1 - sigmoid(b_i) = sigmoid(-b_i): a forget bias of +1 is an input bias of -1.
    np.testing.assert_array_equal(cifg.cell.bias.numpy(), [-1, -1, 0, 0, 0, 0])
    nig, nfg = make_rnn("nig", 2), make_rnn("nfg", 2)
    nig(inputs())
    nfg(inputs())
    np.testing.assert_array_equal(nig.cell.bias.numpy(), [1, 1, 0, 0, 0, 0])  # blocks f, c, o
    np.testing.assert_array_equal(nfg.cell.bias.numpy(), [0, 0, 0, 0, 0, 0])  # no forget gate


@pytest.fixture
def float64():
    """Lets JAX compute in float64 (it computes float64 layers in float32 otherwise)."""
    if keras.backend.backend() != "jax":
        yield
        return
    import jax

    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("name", ["peephole", "cifg", "gru", "nig", "fgr"])
def test_gradients_match_finite_differences(name, gradients, float64):
    layer = make_rnn(name, 3, dtype="float64", return_sequences=True)
    x = np.random.default_rng(2).normal(size=(2, 4, 3))
    layer(x)
    randomize(layer, seed=3)
    grads = gradients(layer, x)

    def loss(x):
        return float(np.sum(np.sin(keras.ops.convert_to_numpy(layer(x)))))

    def shifted(value, index, shift):
        value = value.copy()
        value[index] += shift
        return value

    # On JAX (XLA's CPU tanh) and PyTorch the float64 forward pass is exact only to
    # about 1e-9, too coarse for a step of 1e-6: a larger step, and a looser tolerance.
    eps, tolerance = (1e-6, 1e-6) if keras.backend.backend() == "tensorflow" else (1e-3, 1e-3)
    rng = np.random.default_rng(4)
    for number, grad in enumerate(grads):  # x, then each weight
        var = None if number == 0 else layer.trainable_weights[number - 1]
        original = x if var is None else keras.ops.convert_to_numpy(var)
        for _ in range(3):  # a few random coordinates of each
            index = tuple(rng.integers(0, n) for n in original.shape)
            losses = []
            for shift in (eps, -eps):
                if var is None:
                    losses.append(loss(shifted(x, index, shift)))
                else:
                    var.assign(shifted(original, index, shift))
                    losses.append(loss(x))
            if var is not None:
                var.assign(original)
            numeric = (losses[0] - losses[1]) / (2 * eps)
            assert abs(numeric - grad[index]) < tolerance * max(1.0, abs(numeric)), (number, index)


@pytest.mark.parametrize("name,reset_after", [("lstm", True), ("gru", True), ("gru", False)])
def test_masked_steps_carry_outputs_and_states_like_keras(name, reset_after):
    builtin, ours = built_in_and_ours(name, reset_after, return_sequences=True, return_state=True)
    x = inputs(steps=6)
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
    builtin(x)
    ours(x)
    randomize(builtin)
    ours.set_weights(builtin.get_weights())
    for got, want in zip(ours(x, mask=mask), builtin(x, mask=mask), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("name", ["peephole", "cifg"])
def test_masked_steps_match_plain_keras_rnn(name):
    """The fast path (GatedRNN) and keras.layers.RNN agree on masked input."""
    x = inputs(steps=6)
    mask = np.array([[True] * 6, [True] * 3 + [False] * 3, [True] + [False] * 5])
    cell = CELLS[name](UNITS)
    ours = GatedRNN(cell, return_sequences=True, return_state=True)
    plain = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    ours(x)
    randomize(ours)
    for got, want in zip(ours(x, mask=mask), plain(x, mask=mask), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # A padded sequence ends where its mask ends.
    short, *_ = ours(x[2:, :1])
    np.testing.assert_allclose(ours(x, mask=mask)[0][2, -1], short[0, -1], atol=1e-6)


@pytest.mark.parametrize("name", list(CELLS))
def test_bidirectional_stacked_with_states(name):
    x = inputs()
    inputs_ = keras.Input((None, FEATURES))
    seq = make_rnn(name, UNITS, bidirectional=True, return_sequences=True)(inputs_)
    out, *states = make_rnn(name, UNITS, return_state=True)(seq)
    model = keras.Model(inputs_, [out, *states])
    outputs = model(x)
    assert seq.shape[-1] == 2 * UNITS
    assert outputs[0].shape == (BATCH, UNITS)
    assert len(states) == {"gru": 1, "fgr": 5}.get(name, 2)  # fgr: h, c and the gates i, f, o
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)  # output is h


@pytest.mark.parametrize("name", list(CELLS))
def test_stateful_carries_state_between_batches(name):
    x = inputs(steps=6)
    stateful = make_rnn(name, UNITS, stateful=True, return_sequences=True)
    whole = make_rnn(name, UNITS, return_sequences=True)
    keras.Sequential([keras.Input(batch_shape=(BATCH, 3, FEATURES)), stateful])
    whole(x)
    stateful.set_weights(randomize(whole).values())
    halves = np.concatenate([stateful(x[:, :3]), stateful(x[:, 3:])], axis=1)
    np.testing.assert_allclose(halves, whole(x), atol=1e-6)
    stateful.reset_state()
    np.testing.assert_allclose(stateful(x[:, :3]), whole(x[:, :3]), atol=1e-6)


@pytest.mark.parametrize("name", list(CELLS))
def test_dropout_only_in_training(name):
    x = inputs()
    noisy = make_rnn(name, UNITS, dropout=0.5, recurrent_dropout=0.5, seed=1)
    clean = make_rnn(name, UNITS)
    noisy(x)
    clean(x)
    clean.set_weights(randomize(noisy).values())
    np.testing.assert_allclose(noisy(x, training=False), clean(x), atol=1e-6)
    assert not np.allclose(noisy(x, training=True), clean(x), atol=1e-3)
    assert not np.allclose(noisy(x, training=True), noisy(x, training=True), atol=1e-3)


@pytest.mark.parametrize("name", list(CELLS))
def test_mixed_float16(name):
    x = inputs()
    full = make_rnn(name, UNITS, return_sequences=True)
    full(x)
    weights = randomize(full)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = make_rnn(name, UNITS, return_sequences=True)
        half(x)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    half.set_weights(weights.values())
    out = half(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert all(w.dtype == "float32" for w in half.weights)
    np.testing.assert_allclose(np.asarray(out, np.float32), full(x), atol=2e-2)


def small_model(name):
    model = keras.Sequential(
        [
            keras.Input((STEPS, FEATURES)),
            make_rnn(name, UNITS, bidirectional=True, return_sequences=True),
            make_rnn(name, UNITS, dropout=0.1),
            keras.layers.Dense(1),
        ]
    )
    return model


@pytest.mark.parametrize("name", list(CELLS))
def test_keras_file_round_trip(name, tmp_path):
    model = small_model(name)
    x = inputs()
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(restored.layers[1].cell) is CELLS[name]
    assert restored.layers[1].cell.dropout == 0.1


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_config_round_trip(name):
    cell = CELLS[name](5, dropout=0.2, recurrent_dropout=0.1, seed=7, kernel_regularizer="l2", use_bias=False)
    config = cell.get_config()
    assert type(cell).from_config(config).get_config() == config
    layer = make_rnn(name, 5, bidirectional=True)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CELLS))
def test_jit_compile(name):
    x, y = inputs(), np.ones((BATCH, 1), "float32")
    model = small_model(name)
    model.compile("adam", "mse", jit_compile=True)
    before = model.evaluate(x, y, verbose=0)
    for _ in range(3):
        model.train_on_batch(x, y)
    assert model.evaluate(x, y, verbose=0) < before
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x), atol=1e-5)


def test_unknown_cell_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown cell 'transformer'; valid names: lstm, peephole, cifg, gru"):
        make_rnn("transformer", 4)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_invalid_units(bad):
    with pytest.raises(ValueError, match="units"):
        LSTMCell(bad)


def test_mean_max_pooling_ignores_masked_steps():
    from seqapps.layers import GlobalMeanMaxPooling1D

    x = np.array([[[1.0], [3.0], [100.0]], [[-2.0], [-4.0], [50.0]], [[7.0], [8.0], [9.0]]], "float32")
    mask = np.array([[True, True, False], [True, True, False], [False, False, False]])
    pooled = np.asarray(GlobalMeanMaxPooling1D()(x, mask=mask))
    np.testing.assert_allclose(pooled, [[2.0, 3.0], [-3.0, -2.0], [0.0, 0.0]])
    np.testing.assert_allclose(GlobalMeanMaxPooling1D()(x[:1]), [[104 / 3, 100.0]], rtol=1e-6)
