"""The damping study (influence_ssl.studies.damping, experiments.benchmarks.damping_study): the damped exact
hypergradient against a pseudo-inverse computed here by automatic differentiation, its comparison measures on
hand-made vectors, and the entry point end to end (its JSON, and the refusal of a --json_out it cannot write)."""
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_one_line_error, run_module

from influence_ssl import influence
from influence_ssl.studies import damping


def autodiff_pinv_hypergradient(prob, rcond=1e-8):
    """-G pinv(H) g_val [m] of an undecayed softmax head, from tf autodiff on the flat parameters and numpy's pinv:
    G [m, P] the unlabeled rows' CE gradients, H [P, P] the Hessian of the summed training CE, g_val [P] the
    gradient of the mean validation CE."""
    d, k = prob["kernel"].shape
    theta = tf.Variable(np.concatenate([prob["kernel"], prob["bias"][None]]).reshape(-1))

    def ce(x, t):
        logits = tf.concat([x, tf.ones_like(x[:, :1])], 1) @ tf.reshape(theta, [d + 1, k])
        return tf.nn.softmax_cross_entropy_with_logits(t, logits)

    x_train = np.concatenate([prob["labeled_features"], prob["unlabeled_features"]])
    t_train = np.concatenate([prob["labeled_targets"], prob["unlabeled_targets"]])
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            train = tf.reduce_sum(ce(x_train, t_train))
        grad = inner.gradient(train, theta)
    hessian = outer.jacobian(grad, theta).numpy()
    with tf.GradientTape(persistent=True) as tape:
        val = tf.reduce_mean(ce(prob["val_features"], prob["val_targets"]))
        per_example = ce(prob["unlabeled_features"], prob["unlabeled_targets"])
    g_val = tape.gradient(val, theta).numpy()
    rows = tape.jacobian(per_example, theta).numpy()
    return -rows @ np.linalg.pinv(hessian, rcond=rcond, hermitian=True) @ g_val


@pytest.fixture(scope="module")
def random_problem():
    prob = damping.problem_random()
    return prob, autodiff_pinv_hypergradient(prob)


def rel_err(out, ref):
    return np.linalg.norm(out - ref) / np.linalg.norm(ref)


def test_default_damping_matches_the_pseudo_inverse_and_the_error_grows_with_damping(random_problem):
    prob, ref = random_problem
    errors = {d: rel_err(influence.last_layer_weight_gradients(**prob, damping=d).numpy(), ref)
              for d in (1e-8, 1e-6, 1e-4, 1e-2)}
    assert errors[1e-8] < 1e-6
    # In proportion to the damping (the design note's claim): each factor 100 in damping, at least 10 in error.
    for smaller, larger in ((1e-8, 1e-6), (1e-6, 1e-4), (1e-4, 1e-2)):
        assert errors[larger] > 10 * errors[smaller], errors


def test_the_study_tables_measure_against_the_same_pseudo_inverse(random_problem):
    prob, ref = random_problem
    h, evals, refs = damping.eigh_references(prob)
    assert rel_err(refs[damping.REFERENCE_CUTOFF], ref) < 1e-9
    table = damping.damping_table("random", prob)
    assert table["params"] == len(evals) == 17 * 5 and table["live_rows"] == 200
    assert table["eigenvalue_counts"]["1e-12"] == 17  # the logit shift: one null direction per parameter row
    rows = {row["damping"]: row for row in table["dampings"]}
    assert [row["damping"] for row in table["dampings"]] == damping.DAMPINGS
    for d in (1e-6, 1e-4, 1e-2):
        out = influence.last_layer_weight_gradients(**prob, damping=d).numpy()
        assert rows[d]["cholesky"] == "ok"
        assert rows[d]["rel_err"] == pytest.approx(rel_err(out, ref), rel=1e-3)
        assert rows[d]["float32_drift"] < 1e-5


def test_compare_on_hand_made_vectors():
    out = np.array([1.0, -2.0, 3.0, 5.0, 9.0])
    ref = np.array([2.0, -1.0, 4.0, -0.5, 0.0])  # the last row is masked (zero reference): left out
    got = damping.compare(out, ref)
    # differences (-1, -1, -1, 5.5); ranks (1, 0, 2, 3) against (2, 0, 3, 1): sum of squared rank gaps 6
    assert got["rel_err"] == pytest.approx(np.sqrt(33.25 / 21.25))
    assert got["sign_agree"] == 0.75
    assert got["spearman"] == pytest.approx(1 - 6 * 6 / (4 * 15))


def test_the_entry_point_writes_a_table_per_problem_with_provenance(tmp_path):
    out = tmp_path / "damping.json"
    result = run_module("experiments.benchmarks.damping_study", ["--quick", f"--json_out={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["format"] == "influence_ssl.damping_study/1" and data["default_damping"] == 1e-8
    assert "experiments.benchmarks.damping_study --quick" in data["provenance"]["command"]
    assert set(data["problems"]) == {"random", "mlp_moons", "mlp_moons_binary"} and data["approximations"] == {}
    for table in data["problems"].values():
        assert f"### {table['problem']}:" in result.stdout
        assert [row["damping"] for row in table["dampings"]] == damping.DAMPINGS
        for row in table["dampings"]:
            assert (row["rel_err"] is None) == (row["cholesky"] == "failed")
        assert set(table["cutoff_agreement"]) == {f"{c:g}" for c in damping.CUTOFFS} - {"1e-12"}
    assert data["problems"]["mlp_moons_binary"]["options"] == {"binary_reparam": True}


def test_an_unwritable_json_out_is_refused_before_any_table(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_module("experiments.benchmarks.damping_study", ["--quick", f"--json_out={blocker}/x.json"])
    assert_one_line_error(result, f"Cannot write to --json_out={str(blocker)!r}")
    assert result.stdout == ""
