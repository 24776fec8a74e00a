"""The per-example weight table: gather, sparse M-Adam step, projection, checkpoint, export."""
import csv
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.optimizers import MaskedAdam
from influence_ssl.weights import ExampleWeights


def test_gather_and_initial_value():
    table = ExampleWeights(10, initial_value=5.0)
    np.testing.assert_array_equal(table.gather([0, 9, 3]).numpy(), [5.0, 5.0, 5.0])


def test_step_moves_only_the_batch_rows_by_m_adam():
    table = ExampleWeights(8, initial_value=1.0, optimizer=MaskedAdam(0.1))
    table.apply_gradients(tf.constant([2, 5]), tf.constant([1.0, -3.0]))
    expected = np.ones(8, np.float32)
    expected[2] -= 0.1  # first Adam step: lr * sign(g)
    expected[5] += 0.1
    np.testing.assert_allclose(table.to_numpy(), expected, rtol=1e-6)


def test_projection_keeps_lambda_non_negative():
    table = ExampleWeights(4, initial_value=0.05, optimizer=MaskedAdam(0.1))
    table.apply_gradients(tf.constant([1, 2]), tf.constant([1.0, -1.0]))
    values = table.to_numpy()
    assert values[1] == 0.0  # 0.05 - 0.1 projected to 0
    np.testing.assert_allclose(values[[0, 2, 3]], [0.05, 0.15, 0.05], rtol=1e-5)


def test_duplicate_ids_sum_like_a_single_shared_lambda():
    """|U| = 1 with every ID 0 is the single-λ ablation: the gradient is the sum."""
    shared = ExampleWeights(1, optimizer=keras.optimizers.SGD(0.1))
    shared.apply_gradients(tf.zeros([3], tf.int32), tf.constant([0.5, 1.0, -0.25]))
    np.testing.assert_allclose(shared.to_numpy(), [1.0 - 0.1 * 1.25], rtol=1e-6)


def test_huge_table_is_not_densified():
    """A step on a 5M-entry table only reads and writes the batch rows."""
    table = ExampleWeights(5_000_000)
    step = tf.function(table.apply_gradients)
    ids = tf.constant([7, 4_999_999], tf.int64)
    step(ids, tf.constant([1.0, -1.0]))
    graph = step.get_concrete_function(ids, tf.constant([1.0, -1.0])).graph
    for op in graph.get_operations():
        for out in op.outputs:
            # No intermediate tensor may have |U| elements (the variables themselves are
            # resources; the dense_shape argument is a 1-element vector).
            if out.shape.rank is not None and out.shape.rank > 0 and out.shape.is_fully_defined():
                assert out.shape.num_elements() < 1000, (op.type, op.name, out.shape)
    values = table.values
    assert values[7].numpy() < 1.0 < values[4_999_999].numpy()
    assert values[8].numpy() == 1.0


def test_checkpoint_restores_weights_and_optimizer_slots(tmp_path):
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 20, 6), rng.normal(size=6).astype(np.float32)) for _ in range(6)]
    table = ExampleWeights(20)
    for ids, g in batches[:3]:
        table.apply_gradients(ids, g)
    path = tf.train.Checkpoint(weights=table).save(str(tmp_path / "ckpt"))
    for ids, g in batches[3:]:
        table.apply_gradients(ids, g)

    restored = ExampleWeights(20)
    tf.train.Checkpoint(weights=restored).restore(path).assert_consumed()
    assert int(restored.optimizer.iterations.numpy()) == 3
    for ids, g in batches[3:]:
        restored.apply_gradients(ids, g)
    np.testing.assert_array_equal(restored.to_numpy(), table.to_numpy())


def test_export_npy_and_csv(tmp_path):
    table = ExampleWeights(5, initial_value=2.0)
    table.apply_gradients([3], [1.0])
    np.testing.assert_array_equal(np.load(table.export(str(tmp_path / "w.npy"))), table.to_numpy())
    with open(table.export(str(tmp_path / "sub" / "w.csv"))) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "weight", "nonzero_hypergradient_steps"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], table.to_numpy())
    assert [int(r[2]) for r in rows[1:]] == [0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match=".npy or .csv"):
        table.export(str(tmp_path / "w.txt"))


@pytest.mark.parametrize("kwargs", [{"num_examples": 0}, {"num_examples": 3, "initial_value": -1.0},
                                    {"num_examples": 3, "initial_value": float("nan")}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        ExampleWeights(**kwargs)


@pytest.mark.parametrize("optimizer", [lambda: keras.optimizers.Adam(0.05, weight_decay=None),
                                       lambda: keras.optimizers.SGD(0.05, momentum=0.9),
                                       lambda: MaskedAdam(0.05)], ids=["adam", "sgd_momentum", "madam"])
def test_no_optimizer_ever_leaves_a_negative_lambda(optimizer):
    """Plain Adam and SGD with momentum keep moving rows outside the batch on their old momentum;
    the projection must reach those rows too. 200 random sparse steps pushing λ down, checked after
    every step."""
    rng = np.random.default_rng(0)
    table = ExampleWeights(50, initial_value=0.3, optimizer=optimizer())
    step = tf.function(table.apply_gradients)
    for _ in range(200):
        ids = rng.choice(50, size=8, replace=False)
        step(tf.constant(ids), tf.constant(rng.normal(0.5, 1.0, size=8), tf.float32))
        assert table.to_numpy().min() >= 0.0
    assert np.mean(table.to_numpy() == 0.0) > 0.2  # the constraint was active


def test_hypergradient_counts_count_nonzero_gradients_per_row():
    rng = np.random.default_rng(1)
    table = ExampleWeights(30)
    expected = np.zeros(30, np.int64)
    for _ in range(20):
        ids = rng.integers(0, 30, size=10)  # duplicates included
        grads = rng.normal(size=10) * (rng.random(10) < 0.6)  # 40% exact zeros (masked examples)
        table.apply_gradients(tf.constant(ids), tf.constant(grads, tf.float32))
        np.add.at(expected, ids, grads != 0)
    np.testing.assert_array_equal(table.counts_numpy(), expected)
    restored = ExampleWeights(30)
    path = tf.train.Checkpoint(weights=table).save(os.path.join(tempfile.mkdtemp(), "ckpt"))
    tf.train.Checkpoint(weights=restored).restore(path).assert_consumed()
    np.testing.assert_array_equal(restored.counts_numpy(), expected)
