"""Influence over the last block plus the head (the Sec. 4.3 baselines' scope).

Oracles: a dense float64 Hessian and per-example gradients from nested-tape Jacobians written here,
solved by numpy; the general path (`block_weight_gradients`: every loss through the whole model, [U, P]
per-example gradient rows) for the split path (`block_hypergradient`), in the trainer too; and, through
the trainer, the closed-form head-only influence when the block is the head alone.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl import augment
from influence_ssl.data import SSLData, make_synthetic
from influence_ssl.influence import (
    BLOCK_METHOD_OPTIONS,
    BlockBatch,
    block_hypergradient,
    block_weight_gradients,
    normalize_hypergradient,
)
from influence_ssl.influence.block import hessian_vector_product_fn
from influence_ssl.models import Classifier, small_cnn, two_layer_mlp
from influence_ssl.pergrad import per_example_gradients
from influence_ssl.ssl import FixMatch, PseudoLabel
from influence_ssl.trainer import ConfigError, InMemorySource, TrainConfig, Trainer
from influence_ssl.trainer.image_source import AugmentedImageSource


def small_problem(seed=0, l2=2.0):
    """A float64 MLP (2 hidden layers of 6, 3 classes), weighted CE + l2 on the block, fixed targets."""
    keras.backend.set_floatx("float64")
    try:
        model = two_layer_mlp(num_classes=3, input_dim=4, hidden_units=6, seed=seed)
    finally:
        keras.backend.set_floatx("float32")
    rng = np.random.default_rng(seed)
    x_train, x_unl, x_val = (rng.normal(size=(n, 4)) for n in (12, 7, 9))
    y_train, y_val = rng.integers(0, 3, 12), rng.integers(0, 3, 9)
    t_unl = np.eye(3)[rng.integers(0, 3, 7)]
    lam = rng.uniform(0.5, 1.5, 7)
    params = model.last_block_variables() + [model.head.kernel, model.head.bias]

    def per_example_losses():
        return tf.nn.softmax_cross_entropy_with_logits(t_unl, model(x_unl))

    def train_loss():
        labeled = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y_train, model(x_train)))
        decay = tf.add_n([tf.reduce_sum(tf.square(v)) for v in params])
        return labeled + tf.reduce_sum(lam * per_example_losses()) / 7 + 0.5 * l2 * decay

    def val_loss():
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y_val, model(x_val)))

    return model, params, per_example_losses, train_loss, val_loss


def reference(params, per_example_losses, train_loss, val_loss):
    """-∇ℓ_uᵀ H⁻¹ ∇L_val with H, ∇ℓ_u and ∇L_val from nested-tape Jacobians and a numpy solve."""
    flat = lambda ts: np.concatenate([np.reshape(t, [-1]) for t in ts])
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            loss = train_loss()
        grads = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, params)], 0)
    hessian = np.concatenate([np.reshape(j, [len(grads), -1]) for j in
                              outer.jacobian(grads, params, experimental_use_pfor=False)], axis=1)
    with tf.GradientTape(persistent=True) as tape:
        losses = per_example_losses()
    jacobians = tape.jacobian(losses, params, experimental_use_pfor=False)
    rows = np.concatenate([np.reshape(j, [7, -1]) for j in jacobians], 1)
    with tf.GradientTape() as tape:
        v = val_loss()
    g_val = flat([g.numpy() for g in tape.gradient(v, params)])
    return hessian, rows, -rows @ np.linalg.solve(hessian, g_val)


def test_exact_cg_and_neumann_over_the_block_match_a_dense_float64_solve():
    model, params, per_example_losses, train_loss, val_loss = small_problem()
    hessian, rows, expected = reference(params, per_example_losses, train_loss, val_loss)
    eigenvalues = np.linalg.eigvalsh(hessian)
    assert eigenvalues.min() > 0  # the oracle's precondition: l2 makes the block's H positive definite
    per_example = [tf.constant(r) for r in np.split(rows, np.cumsum([v.shape.num_elements() for v in params])[:-1], 1)]
    per_example = [tf.reshape(r, [7, *v.shape]) for r, v in zip(per_example, params)]
    solve = lambda method, **kw: block_weight_gradients(train_loss, val_loss, params, per_example, method=method,
                                                        **({} if method == "identity" else {"damping": 0.0}), **kw)
    call = lambda method, **kw: solve(method, **kw).numpy()
    np.testing.assert_allclose(call("exact"), expected, rtol=1e-9)
    np.testing.assert_allclose(call("cg", max_iterations=500, tolerance=1e-12), expected, rtol=1e-7)
    # Neumann converges geometrically with rate 1 - λ_min/λ_max.
    # In a graph: 500 eager Hessian-vector products take ten times as long as the trace.
    neumann = lambda n: tf.function(lambda: solve("neumann", num_terms=n))().numpy()
    errors = [np.abs(neumann(n) - expected).max() for n in (5, 50, 500)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3 * np.abs(expected).max() + 1e-12, errors
    # The identity approximation is the plain gradient inner product.
    np.testing.assert_allclose(call("identity", scale=2.0), -2.0 * rows @ _g_val(params, val_loss), rtol=1e-9)


def _g_val(params, val_loss):
    with tf.GradientTape() as tape:
        v = val_loss()
    return np.concatenate([np.reshape(g.numpy(), [-1]) for g in tape.gradient(v, params)])


def test_block_method_and_option_errors_name_the_valid_ones():
    _, params, _, train_loss, val_loss = small_problem()
    with pytest.raises(ValueError, match="valid methods"):
        block_weight_gradients(train_loss, val_loss, params, [], method="lissa")
    with pytest.raises(ValueError, match="valid options"):
        block_weight_gradients(train_loss, val_loss, params, [], method="cg", num_terms=3)


def head_only_model(seed=0):
    """An MLP whose 'last block' is a parameter-free layer: the block scope is then the head alone."""
    init = keras.initializers.GlorotUniform
    backbone = keras.Sequential([keras.layers.InputLayer(input_shape=(2,)),
                                 keras.layers.Dense(8, activation="tanh", kernel_initializer=init(seed), name="hidden"),
                                 keras.layers.Activation("linear", name="last")])
    model = Classifier(backbone, 2, head_initializer=init(seed + 1), last_block=["last"])
    model.build((None, 2))
    return model


def moons_trainer(model, threshold=0.0, **overrides):
    data = make_synthetic("moons", 0, num_unlabeled=60, num_test=50)
    settings = dict(steps=30, labeled_batch=10, unlabeled_batch=60, validation_batch=30, inner_steps=10,
                    weight_warmup=0, lr=0.01, weight_decay=0.05, weight_decay_on="all", log_every=30,
                    eval_every=30, checkpoint_every=30)
    config = TrainConfig(**{**settings, **overrides})
    source = InMemorySource(data, 10, 60, 30, seed=0)
    return Trainer(model, PseudoLabel(threshold), source, config, verbose=False)


def test_last_block_restricted_to_the_head_equals_the_head_only_influence():
    """The block path (autodiff Hessian, pergrad rows) against the closed-form head path, same θ and batch."""
    model = head_only_model()
    moons_trainer(model, weighting="none").run()  # move away from the initialisation
    head = moons_trainer(model, influence="exact")
    ids_head, grads_head = head.hypergradient(1)
    for method, rtol in [("exact", 1e-4), ("cg", 1e-3)]:
        block = moons_trainer(model, influence=method, influence_scope="last_block")
        ids_block, grads_block = block.hypergradient(1)
        np.testing.assert_array_equal(ids_block, ids_head)
        np.testing.assert_allclose(grads_block, grads_head, rtol=rtol, atol=1e-3 * np.abs(grads_head).max())


def test_last_block_gives_masked_rows_exactly_zero_like_the_head():
    """Pseudo-Label at a confidence threshold masks rows to an all-zero target: ℓ_u ≡ 0, so its gradient and
    hypergradient are 0 in both scopes (tf.nn.softmax_cross_entropy_with_logits would give them p instead)."""
    model = head_only_model()
    moons_trainer(model, weighting="none").run()
    head = moons_trainer(model, threshold=0.6, influence="exact").hypergradient(1)[1]
    block = moons_trainer(model, threshold=0.6, influence="exact", influence_scope="last_block").hypergradient(1)[1]
    masked = head == 0
    assert 0 < masked.sum() < len(head)
    np.testing.assert_array_equal(block[masked], 0.0)
    np.testing.assert_allclose(block, head, rtol=1e-4, atol=1e-3 * np.abs(head).max())


def test_last_block_through_the_trainer_cg_converges_to_exact():
    """A ReLU block's Hessian is indefinite at small decay; 0.5 makes it positive definite here, so
    that the exact (Cholesky) answer exists and CG must reach it."""
    model = two_layer_mlp(hidden_units=8, seed=0)
    moons_trainer(model, weighting="none").run()
    exact = moons_trainer(model, influence="exact", influence_scope="last_block", weight_decay=0.5).hypergradient(1)[1]
    cg = moons_trainer(model, influence="cg", influence_scope="last_block", weight_decay=0.5).hypergradient(1)[1]
    assert np.all(np.isfinite(exact)) and np.abs(exact).max() > 0
    np.testing.assert_allclose(cg, exact, rtol=1e-2, atol=1e-2 * np.abs(exact).max())


def test_last_block_configurations_that_cannot_run_are_refused():
    with pytest.raises(ConfigError, match="dense"):
        moons_trainer(two_layer_mlp(hidden_units=200, seed=0), influence="exact", influence_scope="last_block")
    backbone = keras.Sequential([keras.layers.InputLayer(input_shape=(2,)), keras.layers.Dense(4, name="h")])
    unnamed = Classifier(backbone, 2)
    unnamed.build((None, 2))
    with pytest.raises(ConfigError, match="does not name a last block"):
        moons_trainer(unnamed, influence="cg", influence_scope="last_block")
    with pytest.raises(ConfigError, match="influence_scope"):
        moons_trainer(two_layer_mlp(seed=0), influence="cg", influence_scope="everything")


# ----- the split path: one trunk forward, HVPs over the block, rows by one forward-mode product -------


def soft_xent(targets, logits):
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits), axis=-1)


def test_hessian_vector_products_run_the_loss_once_and_match_the_dense_hessian():
    model, params, per_example_losses, train_loss, val_loss = small_problem()
    hessian = reference(params, per_example_losses, train_loss, val_loss)[0]
    calls = []

    def counted_loss():
        calls.append(1)
        return train_loss()

    hvp = hessian_vector_product_fn(counted_loss, params)
    rng = np.random.default_rng(3)
    vectors = [tf.constant(rng.normal(size=len(hessian))) for _ in range(3)]
    for v in vectors:
        np.testing.assert_allclose(hvp(v), hessian @ v.numpy(), rtol=1e-10, atol=1e-12)
    # Inside a compiled while loop too (how the solvers call it): H·H·v.
    twice = tf.function(lambda v: tf.while_loop(lambda i, u: i < 2, lambda i, u: (i + 1, hvp(u)), [0, v])[1])
    np.testing.assert_allclose(twice(vectors[0]), hessian @ hessian @ vectors[0].numpy(), rtol=1e-9)
    assert len(calls) == 1  # the forward and the first backward ran once, for every product


def split_problem(row_targets=None):
    """small_problem's data as a BlockBatch for the model's split (float64)."""
    model, params, per_example_losses, train_loss, val_loss = small_problem()
    rng = np.random.default_rng(0)  # the same draws as small_problem
    x_train, x_unl, x_val = (rng.normal(size=(n, 4)) for n in (12, 7, 9))
    y_train, y_val = rng.integers(0, 3, 12), rng.integers(0, 3, 9)
    t_unl = np.eye(3)[rng.integers(0, 3, 7)]
    lam = rng.uniform(0.5, 1.5, 7)
    batch = BlockBatch(*map(tf.constant, (x_train, np.eye(3)[y_train], x_unl, t_unl, lam / 7, x_val, y_val)))
    rows_targets = t_unl if row_targets is None else row_targets
    rows_losses = lambda: soft_xent(rows_targets, model(x_unl))
    return model, params, batch, tf.constant(rows_targets), (params, rows_losses, train_loss, val_loss)


@pytest.mark.parametrize("soft_rows", [False, True], ids=["rows_of_the_training_targets", "other_row_targets"])
def test_block_hypergradient_from_the_split_matches_a_dense_float64_solve(soft_rows):
    soft = np.random.default_rng(9).dirichlet(np.ones(3), size=7) if soft_rows else None
    model, params, batch, row_targets, oracle_args = split_problem(soft)
    hessian, rows, expected = reference(*oracle_args)
    trunk, block = model.last_block_split()

    def call(method, **kw):
        options = {} if method == "identity" else {"damping": 0.0}
        return tf.function(lambda: block_hypergradient(trunk, block, params, batch, row_targets, l2=2.0,
                                                       decayed=params, method=method, **options, **kw))()

    grads, norms = call("exact", with_norms=True)
    np.testing.assert_allclose(grads, expected, rtol=1e-9)
    np.testing.assert_allclose(norms, np.linalg.norm(rows, axis=1), rtol=1e-9)
    assert call("exact")[1] is None
    np.testing.assert_allclose(call("cg", max_iterations=500, tolerance=1e-12)[0], expected, rtol=1e-7)
    np.testing.assert_allclose(call("identity", scale=2.0)[0], -2.0 * rows @ _g_val(params, oracle_args[3]),
                               rtol=1e-9)


def float32_problem(model, seed=0):
    """Random inputs, targets (some masked rows), weights and validation labels for `model`."""
    rng = np.random.default_rng(seed)
    shape = model.backbone.input_shape[1:]
    num_classes = model.head.units
    x = lambda n: tf.constant(rng.normal(size=(n, *shape)), tf.float32)
    one_hot = lambda n: np.eye(num_classes)[rng.integers(0, num_classes, n)]
    batch = BlockBatch(labeled_x=x(6), labeled_targets=tf.constant(one_hot(6), tf.float32), unlabeled_x=x(9),
                       unlabeled_targets=tf.constant(one_hot(9) * (rng.uniform(size=(9, 1)) > 0.2), tf.float32),
                       unlabeled_weights=tf.constant(rng.uniform(0.5, 1.5, 9) / 9, tf.float32), val_x=x(10),
                       val_y=tf.constant(rng.integers(0, num_classes, 10)))
    row_targets = tf.constant(rng.dirichlet(np.ones(num_classes), size=9), tf.float32)
    return batch, row_targets


def whole_model_path(model, params, batch, row_targets, l2, decayed, method):
    """block_weight_gradients with every loss through the whole model and [U, P] per-example gradients."""
    def train_loss():
        return (tf.reduce_mean(soft_xent(batch.labeled_targets, model(batch.labeled_x)))
                + tf.reduce_sum(batch.unlabeled_weights * soft_xent(batch.unlabeled_targets, model(batch.unlabeled_x)))
                + l2 * tf.add_n([0.5 * tf.reduce_sum(tf.square(p)) for p in decayed]))

    def val_loss():
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch.val_y, model(batch.val_x)))

    rows = per_example_gradients(model, lambda logits, targets: soft_xent(targets, logits), batch.unlabeled_x,
                                 variables=params, targets=row_targets)
    options = {"check_factorization": False} if method == "exact" else {}
    return block_weight_gradients(train_loss, val_loss, params, rows, method=method, **options)


FLOAT32_MODELS = {
    "small_cnn": lambda: small_cnn(num_classes=5, input_shape=(6, 6, 1), width=2, seed=2),
    "mlp": lambda: two_layer_mlp(num_classes=3, input_dim=4, hidden_units=12, seed=2),
}


# Every solver on the CNN's block; the MLP's block (another layer structure, the same solvers) with exact only.
@pytest.mark.parametrize("name, method", [*(("small_cnn", m) for m in sorted(BLOCK_METHOD_OPTIONS)), ("mlp", "exact")])
def test_block_hypergradient_equals_the_whole_model_path_in_float32(name, method):
    """At the default options (terms, iterations, scale by power iteration, damping by trace probes)."""
    model = FLOAT32_MODELS[name]()
    for w in model.weights:  # inference BN that is not the identity
        if "moving" in w.name:
            w.assign(tf.random.stateless_uniform(w.shape, seed=(len(w.name), 1), minval=0.5, maxval=1.5))
    batch, row_targets = float32_problem(model)
    params = model.last_block_variables() + [model.head.kernel, model.head.bias]
    # exact: every parameter decayed, so that H is positive definite and Cholesky has an answer.
    decayed = params if method == "exact" else [p for p in params if "kernel" in p.name]
    l2 = 1.0 if method == "exact" else 0.05
    trunk, block = model.last_block_split()
    split = tf.function(lambda: block_hypergradient(trunk, block, params, batch, row_targets, l2=l2, decayed=decayed,
                                                    method=method, **({"check_factorization": False}
                                                                      if method == "exact" else {}))[0])()
    whole = tf.function(lambda: whole_model_path(model, params, batch, row_targets, l2, decayed, method))()
    assert np.all(np.isfinite(whole)) and np.abs(whole).max() > 0
    np.testing.assert_allclose(split, whole, rtol=1e-4, atol=1e-5 * np.abs(whole).max())


def digits_like_trainer(**overrides):
    """FixMatch (every row pseudo-labelled) on a small CNN over random 8x8 images; cutout stands in for
    RandAugment as the strong view (the hypergradient does not depend on which augmentation made the rows,
    and RandAugment's trace is most of the test's time)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(80, 8, 8, 1), dtype=np.uint8)
    y = np.tile(np.arange(10), 8).astype(np.int64)
    data = SSLData("tiny", 10, x[:20], y[:20], x[20:60], np.arange(40), y[20:60], x[60:80], y[60:80], x[60:80],
                   y[60:80])
    config = TrainConfig(**{**dict(steps=4, labeled_batch=10, unlabeled_batch=12, validation_batch=14, inner_steps=2,
                                   weight_warmup=0, optimizer="nesterov", lr=0.03, weight_decay=5e-3,
                                   unlabeled_rampup=10, influence_scope="last_block", influence="identity",
                                   log_every=4, eval_every=4, checkpoint_every=4), **overrides})
    weak = lambda images, seed: augment.weak_augment(images, seed, flip=False)
    strong = lambda images, seed: augment.cutout.cutout(images, seed, 4)
    source = AugmentedImageSource(data, 10, 12, 14, seed=0, weak=weak, strong=strong)
    return Trainer(small_cnn(10, (8, 8, 1), width=4, seed=0), FixMatch(0.0), source, config, verbose=False)


def former_trainer_hypergradient(trainer, outer_step):
    """The trainer's last-block hypergradient as it was computed before the split: the training loss re-run
    through the whole model by the algorithm, [U, P] per-example gradients of the whole model."""
    config, model = trainer.config, trainer.model
    batch = trainer.source.outer_batch(tf.constant(outer_step, tf.int64))
    params = model.last_block_variables() + [model.head.kernel, model.head.bias]
    out = trainer.algorithm.losses(model, batch, training=False, step=trainer.step)
    lam = trainer.weights.gather(batch["unlabeled_ids"])
    targets = out.unlabeled_targets
    if config.influence_target_temperature:
        mask = tf.reduce_sum(out.unlabeled_targets, axis=-1, keepdims=True)
        targets = tf.nn.softmax(out.unlabeled_target_logits / config.influence_target_temperature) * mask

    def train_loss():
        return trainer.training_loss(trainer.algorithm.losses(model, batch, training=False, step=trainer.step), lam)[0]

    def val_loss():
        logits = model(batch["val_x"], training=False)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["val_y"], logits))

    rows = per_example_gradients(model, lambda logits, t: soft_xent(t, logits), out.unlabeled_inputs,
                                 variables=params, targets=targets, method="layerwise",
                                 conv_impl="patches")
    options = {} if config.influence == "identity" else {"damping": config.influence_damping}
    grads = block_weight_gradients(train_loss, val_loss, params, rows, method=config.influence, **options)
    norms = tf.norm(tf.concat([tf.reshape(r, [tf.shape(r)[0], -1]) for r in rows], axis=1), axis=1)
    rampup = tf.minimum(1.0, tf.cast(trainer.step, tf.float32) / config.unlabeled_rampup)
    grads *= rampup / tf.cast(tf.shape(lam)[0], tf.float32)
    return normalize_hypergradient(grads, config.hypergradient_normalization, targets, norms)


def test_trainer_last_block_hypergradient_equals_the_former_whole_model_path():
    """Mid-run (λ no longer uniform, the unlabeled ramp-up below 1): the trainer's split path against the
    path it replaced, on the same θ, λ and batch, with every option that changes it (the target temperature,
    per-example normalisation, decay on all weights). The solver is passed through as named; CG through the
    trainer is checked against exact by test_last_block_through_the_trainer_cg_converges_to_exact."""
    trainer = digits_like_trainer(influence="neumann", influence_target_temperature=2.0,
                                  hypergradient_normalization="example", weight_decay_on="all")
    trainer.run()  # 4 θ steps and 2 Λ steps (identity over the block: cheap)
    assert np.ptp(trainer.weights.to_numpy()) > 0
    ids, split = trainer.hypergradient(3)
    former = tf.function(lambda: former_trainer_hypergradient(trainer, 3))().numpy()
    assert np.abs(former).max() > 0
    np.testing.assert_allclose(split, former, rtol=1e-4, atol=1e-5 * np.abs(former).max())
