"""Public entry points: per_example_gradients and make_per_example_gradients_fn.

"fast" is the fastest exact method for the model, its variables, the input shapes and the device: the
paper's "layerwise" method (one batched forward and backward, then per-layer rules; Ren et al. App. B),
or tf.vectorized_map of batch-of-one passes where that measures at least 10% faster (medians of interleaved
calls; see docs/design/per_example_gradients.md). The choice is measured once per (device kind, model, variables,
shapes, training), outside any graph being traced, as cuDNN's autotuner does; both give the same numbers up
to rounding.
"""
import threading
import weakref

import tensorflow as tf

from influence_ssl.pergrad.baselines import (
    check_no_training_batch_norm,
    loop_per_example_gradients,
    vmap_per_example_gradients,
)
from influence_ssl.pergrad.conv import CONV_IMPLS
from influence_ssl.pergrad.fast import fast_per_example_gradients, plan_layers, walk_layers
from influence_ssl.pergrad.timing import median_seconds

METHODS = ("fast", "layerwise", "loop", "vmap")
# vmap replaces the paper's method only when it is clearly faster: on 2 CPU cores the two differ by up to
# ±20% from one process to the next, either way (docs/design/per_example_gradients.md), and a pick inside that
# noise is a coin toss.
_VMAP_MARGIN = 0.9
_chosen = weakref.WeakKeyDictionary()  # model -> {(device kind, variables, shapes, training, conv_impl): method}


def _stand_in(spec):
    """A tensor of the spec's static shape and dtype for timing: zeros for integer inputs (token ids),
    normal draws otherwise."""
    if spec.dtype.is_floating:
        return tf.random.stateless_normal(spec.shape, seed=[0, 3], dtype=spec.dtype)
    return tf.zeros(spec.shape, spec.dtype)


def _in_fresh_thread(fn):
    """fn() in a new thread, which starts eager and outside any graph being traced. Not tf.init_scope: it
    pauses gradient tapes, so every gradient timed under it would be zero (and vmap's nearly free)."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=target, name="pergrad-autotune")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def fastest_method(model, loss_fn, inputs, targets, variables, training, conv_impl):
    """"layerwise" or "vmap", whichever computes these per-example gradients faster here (cached).

    vmap is a candidate only where it is exact and runs: static shapes, no BatchNormalization in training
    mode, and no error or out-of-memory while timing it (e.g. a loss_fn that reads a tensor of the graph
    being traced cannot be timed outside it: "layerwise" is then kept without timing).
    """
    spec_of = lambda structure: tf.nest.map_structure(lambda a: tf.TensorSpec(a.shape, a.dtype), structure)
    specs = (spec_of(inputs), None if targets is None else spec_of(targets))
    if not all(spec.shape.is_fully_defined() for spec in tf.nest.flatten([s for s in specs if s is not None])):
        return "layerwise"
    device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    key = (device, tuple(v.name for v in variables), str(specs), repr(training), conv_impl)
    per_model = _chosen.setdefault(model, {})
    if key not in per_model:

        def measure():
            x, t = (None if s is None else tf.nest.map_structure(_stand_in, s) for s in specs)

            def timed(run, *extra):
                # Only a scalar leaves the function: no B×|θ| copy to the host is timed.
                return tf.function(lambda a, b: tf.add_n([tf.reduce_sum(tf.square(g)) for g in run(
                    model, loss_fn, a, b, variables, training, *extra)[0]]), autograph=False)

            check_no_training_batch_norm(model, training, walk_layers(model))
            return median_seconds({"layerwise": timed(fast_per_example_gradients, conv_impl),
                                    "vmap": timed(vmap_per_example_gradients)}, (x, t))

        try:
            seconds = _in_fresh_thread(measure)
        except (ValueError, TypeError, tf.errors.OpError):
            seconds = None  # vmap not exact here, or not timeable out of its graph (or out of memory)
        per_model[key] = "vmap" if seconds and seconds["vmap"] < _VMAP_MARGIN * seconds["layerwise"] else "layerwise"
    return per_model[key]


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
      method: "fast" (the faster of "layerwise" and "vmap" here, measured once: module docstring),
        "layerwise" (one batched forward+backward and per-layer rules, Ren et al. App. B), "loop" (serial
        batch-of-one passes) or "vmap" (tf.vectorized_map of batch-of-one passes).
      variables: defaults to model.trainable_variables.
      targets: optional tensor/structure with leading dim B, sliced with inputs by the baselines.
      conv_impl: Conv2D filter-gradient implementation of "layerwise": "auto" (the fastest of the others for
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
        plan_layers(model, variables)  # an unsupported layer is reported as before, whatever would be faster
        method = fastest_method(model, loss_fn, inputs, targets, variables, training, conv_impl)
    if method == "layerwise":
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
