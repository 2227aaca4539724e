"""Decoding a `Translator`: greedy and beam search, as TensorFlow loops so that they
run eagerly, in `tf.function` and inside the exported SavedModel.

Both take source ids (batch, source_steps) and return the chosen target ids
(batch, steps) and the attention weights that produced them (batch, steps,
source_steps); both stop when every sentence has ended or after `max_length` steps.
"""

from typing import NamedTuple

import tensorflow as tf


def greedy_search(model, source_ids, max_length):
    """The most likely next word at every step."""
    encoded, source_mask, states = model.encode(source_ids)
    batch = tf.shape(source_ids)[0]

    def step(t, words, states, done, ids, attention):
        logits, states, weights = model.decode_step(words, encoded, source_mask, states)
        words = tf.where(done, 0, tf.argmax(logits, -1, output_type=tf.int32))
        done = done | (words == model.end_id)
        return t + 1, words, states, done, ids.write(t, words), attention.write(t, weights)

    _, _, _, _, ids, attention = tf.while_loop(
        lambda t, words, states, done, *_: (t < max_length) & ~tf.reduce_all(done),
        step,
        (
            0,
            tf.fill([batch], model.start_id),
            states,
            tf.zeros([batch], bool),
            tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None]),
            tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[None, None]),
        ),
    )
    return tf.transpose(ids.stack(), (1, 0)), tf.transpose(attention.stack(), (1, 0, 2))


class Beams(NamedTuple):
    """The state of beam search: k hypotheses for each of `batch` sentences."""

    step: tf.Tensor  # () the step being decoded
    words: tf.Tensor  # (batch * k,) each hypothesis's last word
    states: list  # the decoder states, each (batch * k, units)
    scores: tf.Tensor  # (batch, k) log-probability of each hypothesis
    done: tf.Tensor  # (batch, k) whether it has ended
    lengths: tf.Tensor  # (batch, k) its words, [END] included
    ids: tf.Tensor  # (batch, k, max_length) its words so far, 0 after the end
    attention: tf.Tensor  # (batch, k, max_length, source_steps)


def beam_search(model, source_ids, max_length, beam_size, length_penalty):
    """Beam search over `beam_size` hypotheses per sentence, ranked at the end by
    log-probability / ((5 + length) / 6) ** length_penalty (Wu et al. 2016)."""
    k = beam_size
    encoded, source_mask, states = model.encode(source_ids)
    batch, source_steps = tf.shape(source_ids)[0], tf.shape(source_ids)[1]
    vocab = len(model.target_vocabulary) + 2

    def per_beam(x):  # (batch, ...) -> (batch * k, ...), the k copies of a sentence adjacent
        return tf.repeat(x, k, axis=0)

    encoded, source_mask = per_beam(encoded), per_beam(source_mask)
    # A finished hypothesis continues with padding only, at no cost.
    pad_only = tf.concat([[0.0], tf.fill([vocab - 1], -1e9)], 0)

    def step(beams):
        logits, states, weights = model.decode_step(beams.words, encoded, source_mask, beams.states)
        log_probs = tf.reshape(tf.nn.log_softmax(logits), [batch, k, vocab])
        log_probs = tf.where(beams.done[..., None], pad_only, log_probs)
        scores, best = tf.math.top_k(tf.reshape(beams.scores[..., None] + log_probs, [batch, k * vocab]), k)
        beam, words = best // vocab, best % vocab

        def follow(x):  # reorder per-sentence beams after the winners
            return tf.gather(x, beam, batch_dims=1)

        states = [tf.reshape(follow(tf.reshape(s, [batch, k, s.shape[-1]])), [batch * k, s.shape[-1]]) for s in states]
        done = follow(beams.done)
        at_t = tf.one_hot(beams.step, max_length)
        ids = follow(beams.ids) + tf.cast(at_t, tf.int32)[None, None] * words[..., None]
        weights = follow(tf.reshape(weights, [batch, k, -1]))
        attention = follow(beams.attention) + at_t[None, None, :, None] * weights[:, :, None]
        return (
            Beams(
                step=beams.step + 1,
                words=tf.reshape(words, [-1]),
                states=states,
                scores=scores,
                done=done | (words == model.end_id),
                lengths=follow(beams.lengths) + tf.cast(~done, tf.int32),
                ids=ids,
                attention=attention,
            ),
        )

    start = Beams(
        step=tf.constant(0),
        words=tf.fill([batch * k], model.start_id),
        states=[per_beam(s) for s in states],
        # Only the first copy is live at the start, or the k beams would be k copies of one.
        scores=tf.tile(tf.concat([[0.0], tf.fill([k - 1], -1e9)], 0)[None], [batch, 1]),
        done=tf.zeros([batch, k], bool),
        lengths=tf.zeros([batch, k], tf.int32),
        ids=tf.zeros([batch, k, max_length], tf.int32),
        attention=tf.zeros([batch, k, max_length, source_steps]),
    )
    (beams,) = tf.while_loop(
        lambda beams: (beams.step < max_length) & ~tf.reduce_all(beams.done),
        step,
        (start,),
    )
    penalty = ((5.0 + tf.cast(beams.lengths, tf.float32)) / 6.0) ** length_penalty
    best = tf.argmax(beams.scores / penalty, -1, output_type=tf.int32)[:, None]
    return tf.gather(beams.ids, best, batch_dims=1)[:, 0], tf.gather(beams.attention, best, batch_dims=1)[:, 0]
