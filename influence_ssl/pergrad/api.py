"""Public entry points: per_example_gradients and make_per_example_gradients_fn."""
import tensorflow as tf

from influence_ssl.pergrad.baselines import (
    check_no_training_batch_norm,
    loop_per_example_gradients,
    vmap_per_example_gradients,
)
from influence_ssl.pergrad.conv import CONV_IMPLS
from influence_ssl.pergrad.fast import fast_per_example_gradients, walk_layers

METHODS = ("fast", "loop", "vmap")


def _resolve_variables(model, variables):
    if variables is None:
        if not model.built:
            raise ValueError(f"model {model.name!r} is not built; call it once or pass variables")
        return list(model.trainable_variables)
    return list(variables)


@tf.autograph.experimental.do_not_convert
def per_example_gradients(
    model,
    loss_fn,
    inputs,
    *,
    training=False,
    method="fast",
    variables=None,
    targets=None,
    conv_impl="auto",
    return_losses=False,
):
    """Gradients of each example's loss w.r.t. variables.

    Args:
      model: a built tf_keras model (see registry.REGISTRY for what method="fast" supports).
      loss_fn: loss_fn(outputs) -> [B], or loss_fn(outputs, targets) -> [B] when targets is given.
      inputs: a tensor [B, ...] or a structure of them (whatever model accepts).
      training: passed to model(...). With BatchNormalization in training mode, "fast" rows are
        per-example contributions that sum to the batch gradient; they are per-example gradients only
        for parameters downstream of the last BN. "loop"/"vmap" refuse this case.
      method: "fast" (one batched forward+backward, Ren et al.), "loop" (serial batch-of-one passes)
        or "vmap" (tf.vectorized_map of batch-of-one passes).
      variables: defaults to model.trainable_variables.
      targets: optional tensor/structure with leading dim B, sliced with inputs by the baselines.
      conv_impl: Conv2D filter-gradient implementation of "fast": "auto" (the fastest of the others for
        the layer's shapes on this device, measured once per process), "shifted", "patches" or "vmap".
      return_losses: also return the per-example losses [B] of the same forward.

    Returns:
      A list aligned with variables, each [B, *variable.shape]; with return_losses, (list, losses).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {conv_impl!r}; choose one of {CONV_IMPLS}")
    variables = _resolve_variables(model, variables)
    inputs = tf.nest.map_structure(tf.convert_to_tensor, inputs)  # numpy too: baselines slice by tensor index
    if targets is not None:
        targets = tf.nest.map_structure(tf.convert_to_tensor, targets)
    if method == "fast":
        grads, losses = fast_per_example_gradients(model, loss_fn, inputs, targets, variables, training, conv_impl)
    else:
        check_no_training_batch_norm(model, training, walk_layers(model))
        baseline = loop_per_example_gradients if method == "loop" else vmap_per_example_gradients
        grads, losses = baseline(model, loss_fn, inputs, targets, variables, training)
    return (list(grads), losses) if return_losses else list(grads)


def make_per_example_gradients_fn(
    model,
    loss_fn,
    *,
    training=False,
    method="fast",
    variables=None,
    conv_impl="auto",
    return_losses=False,
    jit_compile=None,
    reduce_retracing=False,
):
    """A compiled fn(inputs, targets=None) -> per_example_gradients(...) with these settings.

    The variables are fixed now (default: model.trainable_variables of the built model); tracing
    runs the instrumentation, so the graph holds no Python state and calls need no retracing.
    """
    variables = _resolve_variables(model, variables)

    @tf.function(jit_compile=jit_compile, reduce_retracing=reduce_retracing, autograph=False)
    def per_example_gradients_fn(inputs, targets=None):
        return per_example_gradients(
            model,
            loss_fn,
            inputs,
            training=training,
            method=method,
            variables=variables,
            targets=targets,
            conv_impl=conv_impl,
            return_losses=return_losses,
        )

    return per_example_gradients_fn
