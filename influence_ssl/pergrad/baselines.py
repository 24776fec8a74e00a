"""The two baselines of Ren et al. Sec. 4.4: a serial loop and tf.vectorized_map, both over
whole-model forward+backward passes on batches of one example.

With BatchNormalization in training mode a batch of one normalizes with its own statistics, which is
a different model from the batched one, so both refuse training=True on a model with a trainable BN.
Dropout in training mode draws its own masks per example (not those of a batched forward).
"""
import tensorflow as tf
import tf_keras as keras


def _example_grads(model, loss_fn, x, t, variables, training):
    """x (and t): one example with a leading batch dim of 1. Returns (grads, loss scalar)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(variables)
        outputs = model(x, training=training)
        loss = tf.reduce_sum(loss_fn(outputs) if t is None else loss_fn(outputs, t))
    grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return grads, loss


def check_no_training_batch_norm(model, training, layers):
    """Raises ValueError if a batch-of-one pass would change BatchNormalization's statistics."""
    if training is None or training is False:
        return
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            raise ValueError(
                f"method 'loop'/'vmap' with training={training!r}: layer {layer.name!r} is a "
                "BatchNormalization in training mode, whose batch-of-one statistics differ from the batch's; "
                "use method='fast' (per-example contributions within the batch) or training=False"
            )


def loop_per_example_gradients(model, loss_fn, inputs, targets, variables, training):
    """Serial baseline: one forward+backward per example (tf.map_fn, parallel_iterations=1).

    Example 0 runs first outside the loop so the loop's output signature takes the real loss dtype.
    Returns (grads [B, *shape] each, losses [B]).
    """
    first = tf.nest.flatten(inputs)[0]
    batch = tf.shape(first)[0]

    def one(i):
        take = lambda a: tf.expand_dims(a[i], 0)  # noqa: E731 - batch of one, static shape kept
        t = None if targets is None else tf.nest.map_structure(take, targets)
        return _example_grads(model, loss_fn, tf.nest.map_structure(take, inputs), t, variables, training)

    grads0, loss0 = one(0)
    signature = (
        [tf.TensorSpec(g.shape, g.dtype) for g in grads0],
        tf.TensorSpec([], loss0.dtype),
    )
    rest_grads, rest_losses = tf.map_fn(one, tf.range(1, batch), fn_output_signature=signature, parallel_iterations=1)
    grads = [tf.concat([g0[None], g], axis=0) for g0, g in zip(grads0, rest_grads)]
    return grads, tf.concat([loss0[None], rest_losses], axis=0)


def vmap_per_example_gradients(model, loss_fn, inputs, targets, variables, training):
    """tf.vectorized_map of a batch-of-one forward+backward (pfor falls back to a while_loop for ops
    without a vectorized converter, e.g. Conv2DBackpropFilter in TF 2.21). Returns (grads, losses)."""
    add_batch = lambda a: a[None]  # noqa: E731

    def one(example):
        x, t = example
        t = None if t is None else tf.nest.map_structure(add_batch, t)
        return _example_grads(model, loss_fn, tf.nest.map_structure(add_batch, x), t, variables, training)

    if targets is None:
        return tf.vectorized_map(lambda x: one((x, None)), inputs)
    return tf.vectorized_map(one, (inputs, targets))
