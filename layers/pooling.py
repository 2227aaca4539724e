import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seqapps")
class GlobalMeanMaxPooling1D(keras.layers.Layer):
    """Mean and max over the unmasked time steps, concatenated: ``(batch, 2 * features)``.

    A sequence with no unmasked step (an empty text) pools to zeros, where
    ``GlobalAveragePooling1D`` would divide by zero.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        count = ops.sum(weights, axis=1)
        mean = ops.sum(inputs * weights, axis=1) / ops.maximum(count, 1.0)
        lowest = ops.min(inputs, axis=1, keepdims=True)  # stands in for masked steps
        maximum = ops.max(ops.where(weights > 0, inputs, lowest), axis=1)
        maximum = ops.where(count > 0, maximum, ops.zeros_like(maximum))
        return ops.concatenate([mean, maximum], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[2])
