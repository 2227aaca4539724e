"""Length-bucketed tf.data batches, for the apps that read texts."""

import numpy as np
import tensorflow as tf


def bucket_by_length(ds, element_length, lengths, boundaries, batch_sizes):
    """`ds` in batches of elements of similar length (tf.data's
    `bucket_by_sequence_length`), with its number of batches asserted: every bucket
    ends with one partial batch, whatever the order, so the count is known from the
    `lengths` of the elements (`element_length` of each), and Keras shows it."""
    ds = ds.bucket_by_sequence_length(element_length, boundaries, batch_sizes)
    return ds.apply(tf.data.experimental.assert_cardinality(batch_count(lengths, boundaries, batch_sizes)))


def batch_count(lengths, boundaries, batch_sizes):
    """How many batches `bucket_by_length` makes of elements of these `lengths`."""
    per_bucket = np.bincount(np.searchsorted(boundaries, lengths, side="right"), minlength=len(boundaries) + 1)
    return int(np.sum(-(-per_bucket // np.asarray(batch_sizes))))
