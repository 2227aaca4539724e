"""GatedRNN's fused path (cuDNN on a GPU), tested on the CPU: the GPU is simulated by
switching on Keras' availability check and putting the generic math, with cuDNN's
behaviour, in place of the fused kernels. Backend-neutral: `.ci/run` also runs this
file under JAX."""

import importlib

import keras
import numpy as np
import pytest
from keras import ops, tree

from seqapps.layers import make_rnn
from seqapps.layers import rnn as rnn_module
from seqapps.layers.keras_internals import rnn as backend_rnn
from seqapps.layers.rnn import generic_loops

BATCH, STEPS, FEATURES, UNITS = 3, 5, 4, 6
FUSED = {"lstm": {}, "cifg": {}, "gru": {"reset_after": True}}
AVAILABILITY = {  # where each backend asks whether cuDNN is there
    "tensorflow": ("keras.src.backend.tensorflow.rnn", "_is_gpu_available"),
    "jax": ("keras.src.backend.jax.rnn", "_is_gpu_available"),
    "torch": ("keras.src.backend.torch.rnn", "_is_cuda_cudnn_available"),
}


def cudnn_like(step, inputs, states, mask, go_backwards, return_sequences):
    """The generic loop with what cuDNN does differently: zero outputs at masked
    steps, the last output is the final h, and a row with no step is refused (here
    poisoned with NaN, so that a test sees it; in a tf.function it is an error)."""
    _, outputs, states = backend_rnn(
        step,
        inputs,
        states,
        go_backwards=go_backwards,
        mask=mask,
        zero_output_for_mask=True,
        return_all_outputs=return_sequences,
    )
    if mask is not None:
        refused = ops.expand_dims(ops.logical_not(ops.any(mask, axis=1)), -1)
        states = [ops.where(refused, np.nan, state) for state in states]
    return states[0], outputs, states


class FakeKernels:
    """Stand-ins for Keras' backend `lstm` and `gru`, recording their arguments."""

    def __init__(self):
        self.calls = []

    def record(self, mode, inputs, mask, kernel, recurrent_kernel, bias, go_backwards):
        self.calls.append(
            dict(
                mode=mode,
                inputs=inputs,
                mask=mask,
                kernel=kernel,
                recurrent_kernel=recurrent_kernel,
                bias=bias,
                go_backwards=go_backwards,
            )
        )

    def lstm(self, inputs, h, c, mask, kernel, recurrent_kernel, bias, activation, recurrent_activation, **kwargs):
        self.record("lstm", inputs, mask, kernel, recurrent_kernel, bias, kwargs["go_backwards"])

        def step(x, states):
            h, c = states
            z_i, z_f, z_c, z_o = ops.split(ops.matmul(x, kernel) + ops.matmul(h, recurrent_kernel) + bias, 4, axis=-1)
            c = recurrent_activation(z_f) * c + recurrent_activation(z_i) * activation(z_c)
            h = recurrent_activation(z_o) * activation(c)
            return h, [h, c]

        return cudnn_like(step, inputs, [h, c], mask, kwargs["go_backwards"], kwargs["return_sequences"])

    def gru(self, inputs, h, mask, kernel, recurrent_kernel, bias, activation, recurrent_activation, **kwargs):
        assert kwargs["reset_after"]
        self.record("gru", inputs, mask, kernel, recurrent_kernel, bias, kwargs["go_backwards"])

        def step(x, states):
            (h,) = states
            x_z, x_r, x_h = ops.split(ops.matmul(x, kernel) + bias[0], 3, axis=-1)
            h_z, h_r, h_h = ops.split(ops.matmul(h, recurrent_kernel) + bias[1], 3, axis=-1)
            z, r = recurrent_activation(x_z + h_z), recurrent_activation(x_r + h_r)
            h = z * h + (1 - z) * activation(x_h + r * h_h)
            return h, [h]

        return cudnn_like(step, inputs, [h], mask, kwargs["go_backwards"], kwargs["return_sequences"])


@pytest.fixture
def fake_gpu(monkeypatch):
    """A simulated GPU: layers made from here on take the fused path, which runs
    the recording stand-ins. Returns them."""
    module, name = AVAILABILITY[keras.backend.backend()]
    monkeypatch.setattr(importlib.import_module(module), name, lambda: True)
    kernels = FakeKernels()
    monkeypatch.setattr(rnn_module, "backend_lstm", kernels.lstm)
    monkeypatch.setattr(rnn_module, "backend_gru", kernels.gru)
    return kernels


def inputs(seed=1):
    return np.random.default_rng(seed).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")


# Right-padded, as cuDNN wants it; row 2 has no step at all (an empty text).
MASK = np.array([[True] * STEPS, [True] * 3 + [False] * 2, [False] * STEPS])


def fused_and_generic(name, **kwargs):
    """The same layer twice with the same random weights: fused (under `fake_gpu`) and generic."""
    fused = make_rnn(name, UNITS, **FUSED[name], **kwargs)
    generic = make_rnn(name, UNITS, **FUSED[name], use_cudnn=False, **kwargs)
    x = inputs()
    fused(x)
    generic(x)
    rng = np.random.default_rng(0)
    weights = [rng.normal(0.0, 0.5, w.shape).astype("float32") for w in fused.weights]
    fused.set_weights(weights)
    generic.set_weights(weights)
    return fused, generic


def fused_layers(layer):
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def assert_results_agree(fused_result, generic_result):
    for got, want in zip(tree.flatten(fused_result), tree.flatten(generic_result), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


CASES = {
    "plain": dict(return_sequences=True, return_state=True),
    "last_output": dict(),
    "backwards": dict(return_sequences=True, return_state=True, go_backwards=True),
    "bidirectional": dict(return_sequences=True, bidirectional=True),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("name", list(FUSED))
def test_fused_path_computes_the_generic_loop(fake_gpu, name, case, masked, gradients):
    fused, generic = fused_and_generic(name, **CASES[case])
    assert all(layer.fused for layer in fused_layers(fused))
    assert not any(layer.fused for layer in fused_layers(generic))
    x = inputs()
    mask = MASK if masked else None
    for layer in fused_layers(generic):
        # The fused kernel's outputs at masked steps are zero; ask the same of the
        # generic loop (as Bidirectional does), so that whole outputs compare.
        layer.zero_output_for_mask = layer.return_sequences
    assert_results_agree(fused(x, mask=mask), generic(x, mask=mask))
    assert len(fake_gpu.calls) == len(fused_layers(fused)) * 2  # the build call and this one
    assert_gradients_agree(gradients, fused, generic, x, mask)


def assert_gradients_agree(gradients, fused, generic, x, mask):
    for got, want in zip(gradients(fused, x, mask=mask), gradients(generic, x, mask=mask), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(FUSED))
def test_fused_kernel_gets_the_cells_weights_mask_and_direction(fake_gpu, name):
    fused, _ = fused_and_generic(name, go_backwards=True)
    fused(inputs(), mask=MASK)
    call = fake_gpu.calls[-1]
    assert call["mode"] == {"cifg": "lstm"}.get(name, name)
    assert call["go_backwards"] is True
    np.testing.assert_array_equal(call["inputs"], inputs())
    cell = fused.cell
    for weight in ("kernel", "recurrent_kernel", "bias"):
        own = np.asarray(getattr(cell, weight))
        if name == "cifg":  # blocks i, c, o as an LSTM's i, f = -i, c, o
            w_i, w_c, w_o = np.split(own, 3, axis=-1)
            own = np.concatenate([w_i, -w_i, w_c, w_o], axis=-1)
        np.testing.assert_array_equal(call[weight], own)
    # The empty row runs its first step (cuDNN refuses a row with none), the others as given.
    expected_mask = MASK.copy()
    expected_mask[2, 0] = True
    np.testing.assert_array_equal(call["mask"], expected_mask)


@pytest.mark.parametrize("name", list(FUSED))
def test_fused_kernel_gets_the_dropout_masked_inputs(fake_gpu, name):
    fused, generic = fused_and_generic(name, return_sequences=True, dropout=0.5, seed=3)
    x = inputs()
    # The same seed draws the same dropout mask on both paths.
    assert_results_agree(fused(x, training=True), generic(x, training=True))
    scale = np.asarray(fake_gpu.calls[-1]["inputs"]) / x
    np.testing.assert_allclose(scale, np.broadcast_to(scale[:, :1], scale.shape), atol=1e-6)  # one mask per sequence
    assert set(np.round(np.unique(scale), 5)) == {0.0, 2.0}


@pytest.mark.parametrize("name", list(FUSED))
def test_fused_path_trains_like_the_generic_loop_inside_fit(fake_gpu, name):
    """Stacked layers, a masked batch with an empty row, inside `fit` (a traced
    function): the same weights after training."""

    def model(use_cudnn):
        keras.utils.set_random_seed(5)
        return keras.Sequential(
            [
                keras.Input((STEPS, FEATURES)),
                keras.layers.Masking(0.0),
                make_rnn(name, UNITS, **FUSED[name], return_sequences=True, bidirectional=True, use_cudnn=use_cudnn),
                make_rnn(name, UNITS, **FUSED[name], use_cudnn=use_cudnn),
                keras.layers.Dense(1),
            ]
        )

    x = inputs() * MASK[:, :, None]  # the Masking layer turns the zero steps into MASK
    y = np.array([[1.0], [0.0], [0.5]], "float32")
    trained = []
    for use_cudnn in ("auto", False):
        net = model(use_cudnn)
        net.compile(keras.optimizers.SGD(0.1), "mse")
        net.fit(x, y, epochs=3, batch_size=BATCH, shuffle=False, verbose=0)
        trained.append(net.get_weights())
    assert fake_gpu.calls, "the fused path never ran"
    for got, want in zip(*trained, strict=True):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("lstm", dict(recurrent_dropout=0.2)),
        ("gru", dict(reset_after=True, recurrent_dropout=0.2)),
        ("gru", dict(reset_after=False)),
        ("lstm", dict(activation="relu")),
        ("cifg", dict(use_bias=False)),
        ("peephole", {}),
        ("nig", {}),
        ("fgr", {}),
    ],
)
def test_cells_the_fused_kernel_cannot_compute_keep_the_generic_loop(fake_gpu, name, kwargs):
    layer = make_rnn(name, UNITS, return_sequences=True, **kwargs)
    plain = keras.layers.RNN(layer.cell, return_sequences=True)
    x = inputs()
    np.testing.assert_allclose(layer(x, mask=MASK), plain(x, mask=MASK), atol=1e-6)
    assert not layer.fused and layer.supports_jit
    assert fake_gpu.calls == []


def test_without_a_gpu_nothing_is_fused():
    layer = make_rnn("lstm", UNITS)
    layer(inputs())
    assert not layer.fused and layer.supports_jit
    with pytest.raises(ValueError, match="use_cudnn='auto' to fall back"):
        make_rnn("lstm", UNITS, use_cudnn=True)(inputs())


def test_xla_is_off_only_where_tensorflow_runs_cudnn(fake_gpu):
    fused, other = make_rnn("cifg", UNITS), make_rnn("peephole", UNITS)
    assert fused.fused and not other.fused
    assert fused.supports_jit is (keras.backend.backend() != "tensorflow")
    assert other.supports_jit


def test_generic_loops_switches_the_fused_path_off_and_back(fake_gpu):
    model = keras.Sequential([keras.Input((STEPS, FEATURES)), make_rnn("lstm", UNITS, bidirectional=True)])
    rnns = fused_layers(model.layers[0])
    with generic_loops(model):
        assert not any(layer.fused for layer in rnns)
        model(inputs())
    assert fake_gpu.calls == []
    assert all(layer.fused and layer.use_cudnn == "auto" for layer in rnns)


def test_use_cudnn_is_saved(tmp_path):
    model = keras.Sequential([keras.Input((STEPS, FEATURES)), make_rnn("gru", UNITS, use_cudnn=False)])
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").layers[0].use_cudnn is False
    with pytest.raises(ValueError, match="`use_cudnn` must be 'auto', True or False"):
        make_rnn("gru", UNITS, use_cudnn="yes")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel exports are TensorFlow's")
def test_export_of_a_model_trained_on_the_fused_path_has_no_cudnn_op(fake_gpu, tmp_path):
    import tensorflow as tf

    from seqapps.apps.export import export_savedmodel

    model = keras.Sequential(
        [keras.Input((STEPS, FEATURES)), make_rnn("cifg", UNITS, bidirectional=True), keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    model.fit(inputs(), np.ones((BATCH, 1), "float32"), epochs=1, verbose=0)
    calls_in_training = len(fake_gpu.calls)
    assert calls_in_training

    def serve(history):
        return {"forecast": model(history)}

    x = inputs(seed=2)
    with generic_loops(model):
        expected = keras.ops.convert_to_numpy(model(x))
    path = export_savedmodel(
        model, serve, examples={"history": x}, expected={"forecast": expected}, export_dir=tmp_path, atol=1e-5
    )  # which runs the export alone, in a process that imports only TensorFlow
    assert len(fake_gpu.calls) == calls_in_training
    graph = tf.saved_model.load(str(path)).signatures["serving_default"].graph.as_graph_def()
    ops_used = {node.op for node in graph.node} | {
        node.op for function in graph.library.function for node in function.node_def
    }
    assert "While" in ops_used or "StatelessWhile" in ops_used  # the generic loop
    assert not [op for op in ops_used if op.startswith("Cudnn")]
