"""The paper's per-example gradients (Ren et al. Sec. 3.1, App. B): one batched forward, one backward.

During the forward, every layer that owns a requested variable is instrumented: its instance `call`
is replaced by a wrapper that records what its registry rule needs (the input, or x_hat for BN) and
its (pre-activation) output z, which the tape watches. One tape.gradient of the *summed* loss w.r.t.
all recorded z then gives every example's dL_b/dz_b, and the rules turn those into per-example
parameter gradients. Calls of a layer used several times in one forward are summed. Layers are
restored on exit, also on error. Under tf.function the instrumentation is active while tracing, so
the concrete graph keeps it and holds no Python state.
"""
import contextlib
import inspect

import tensorflow as tf
import tf_keras as keras

from influence_ssl.pergrad.registry import check_layer


def walk_layers(model):
    """All layers of model, itself included, each once (nested models and custom layers recursed)."""
    seen, layers = set(), []
    # tf_keras' own traversal, the one it uses to collect a model's weights.
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if id(layer) not in seen:
            seen.add(id(layer))
            layers.append(layer)
    return layers


def _owned_variables(layer):
    """Variables created by `layer` itself, not by one of its sublayers."""
    nested = {v.ref() for sub in layer._flatten_layers(include_self=False, recursive=True) for v in sub.weights}
    return [v for v in layer.weights if v.ref() not in nested]


def plan_layers(model, variables):
    """Maps requested variables to the layers that own them.

    Returns a list of (layer, rule, {role: index into variables}). Raises ValueError naming a
    variable no layer of the model owns or one a rule does not differentiate (e.g. a moving mean),
    and UnsupportedLayerError naming an owning layer without a valid rule.
    """
    owner = {}
    for layer in walk_layers(model):
        for v in _owned_variables(layer):
            owner.setdefault(v.ref(), layer)
    plans = {}
    for index, v in enumerate(variables):
        layer = owner.get(v.ref())
        if layer is None:
            raise ValueError(f"variable {v.name!r} is not owned by any layer of model {model.name!r}")
        if id(layer) not in plans:
            rule = check_layer(layer)
            roles = {p.ref(): role for role, p in rule.params(layer).items()}
            plans[id(layer)] = (layer, rule, roles, {})
        _, rule, roles, wanted = plans[id(layer)]
        role = roles.get(v.ref())
        if role is None:
            raise ValueError(
                f"variable {v.name!r} of layer {layer.name!r} ({type(layer).__name__}) has no per-example "
                f"gradient rule; differentiable roles: {sorted(rule.params(layer))}"
            )
        wanted[role] = index
    return [(layer, rule, wanted) for layer, rule, _, wanted in plans.values()]


def _make_recording_call(layer, rule, original_call, activation, tape, records):
    """The wrapper that replaces layer.call: records (captured, z) and watches z."""
    signature = inspect.signature(original_call)
    first_arg = next(iter(signature.parameters))

    @tf.autograph.experimental.do_not_convert
    def recording_call(*args, **kwargs):
        call_args = dict(signature.bind(*args, **kwargs).arguments)
        x = call_args.pop(first_arg)
        captured = rule.capture(layer, x, call_args)
        z = original_call(*args, **kwargs)  # pre-activation: layer.activation is linear meanwhile
        tape.watch(z)
        records.append((captured, z))
        return activation(z) if activation is not None else z

    return recording_call


@contextlib.contextmanager
def instrumented(plans, tape):
    """Patches the instances in plans while active; yields {id(layer): [(captured, z), ...]}.

    object.__setattr__ bypasses Keras' attribute tracking, so restoring leaves the layer as it was.
    """
    records = {}
    restore = []
    try:
        for layer, rule, _ in plans:
            if getattr(layer, "_pergrad_instrumented", False):
                raise RuntimeError(f"layer {layer.name!r} is already instrumented (nested per_example_gradients?)")
            had_call = "call" in vars(layer)
            original_call = layer.call
            activation = None
            if rule.fused_activation:
                activation = layer.activation
                object.__setattr__(layer, "activation", keras.activations.linear)
            records[id(layer)] = []
            wrapper = _make_recording_call(layer, rule, original_call, activation, tape, records[id(layer)])
            object.__setattr__(layer, "call", wrapper)
            object.__setattr__(layer, "_pergrad_instrumented", True)
            restore.append((layer, had_call, original_call, activation))
        yield records
    finally:
        for layer, had_call, original_call, activation in reversed(restore):
            if had_call:
                object.__setattr__(layer, "call", original_call)
            else:
                object.__delattr__(layer, "call")
            if activation is not None:
                object.__setattr__(layer, "activation", activation)
            object.__delattr__(layer, "_pergrad_instrumented")


def fast_per_example_gradients(model, loss_fn, inputs, targets, variables, training, conv_impl):
    """Returns (grads, losses): grads[i] is [B, *variables[i].shape], losses is [B]."""
    plans = plan_layers(model, variables)
    # Only the recorded z are watched: the tape skips everything upstream of the first one.
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        with instrumented(plans, tape) as records:
            outputs = model(inputs, training=training)
        losses = loss_fn(outputs) if targets is None else loss_fn(outputs, targets)
        if losses.shape.rank is not None and losses.shape.rank != 1:
            raise ValueError(f"loss_fn must return one loss per example, shape [B]; got {losses.shape}")
        total = tf.reduce_sum(losses)
    calls = [(layer, rule, wanted, rec) for layer, rule, wanted in plans for rec in records[id(layer)]]
    dz = tape.gradient(total, [z for *_, (_, z) in calls], unconnected_gradients=tf.UnconnectedGradients.ZERO)

    grads = [None] * len(variables)
    for (layer, rule, wanted, (captured, _)), g in zip(calls, dz):
        per_role = rule.grads(layer, captured, g, conv_impl=conv_impl)
        for role, index in wanted.items():
            contribution = tf.cast(per_role[role], variables[index].dtype)
            grads[index] = contribution if grads[index] is None else grads[index] + contribution
    batch = tf.shape(losses)[0]
    for index, v in enumerate(variables):
        if grads[index] is None:  # owning layer not called in this forward: its gradient is zero
            grads[index] = tf.zeros(tf.concat([[batch], v.shape], axis=0), v.dtype)
    return grads, losses
