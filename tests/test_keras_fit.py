"""Keras' fit path (WeightedSSLModel): the Trainer's θ and λ on the same data, resumed by BackupAndRestore
as if never interrupted, TensorBoard events, and TerminateOnNaN on a diverged Λ step."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.data import make_synthetic
from influence_ssl.influence import InfluenceOptions
from influence_ssl.models import two_layer_mlp
from influence_ssl.optimizers import MaskedAdam
from influence_ssl.ssl import PseudoLabel, SoftMatchWeighting
from influence_ssl.trainer import ConfigError, WeightedSSLModel, ssl_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs at one TF thread (a subprocess: threading is fixed before TF starts), so that both paths reduce in the
# same order.
SAME_AS_TRAINER = r"""
import json
import numpy as np
import tensorflow as tf
import tf_keras as keras

from influence_ssl.data import make_synthetic
from influence_ssl.models import two_layer_mlp
from influence_ssl.optimizers import MaskedAdam
from influence_ssl.ssl import PseudoLabel
from influence_ssl.trainer import DataSource, TrainConfig, Trainer, WeightedSSLModel, ssl_dataset

data = make_synthetic("moons", 0, num_unlabeled=120, num_test=50)
config = TrainConfig(steps=40, labeled_batch=10, unlabeled_batch=40, validation_batch=30, inner_steps=10,
                     weight_warmup=10, lr=0.01, weight_lr=0.05, weight_decay=1e-3, unlabeled_rampup=25,
                     log_every=40, eval_every=40, checkpoint_every=40)
labeled = tf.data.Dataset.from_tensor_slices((data.labeled_x, data.labeled_y)).shuffle(10, seed=1).repeat().batch(10)
unlabeled = (tf.data.Dataset.from_tensor_slices((data.unlabeled_x, data.unlabeled_ids)).shuffle(120, seed=2)
             .repeat().batch(40))
batches = list(ssl_dataset(labeled, unlabeled).take(config.steps))
stacked = {key: tf.stack([b[key] for b in batches]) for key in batches[0]}


class SameBatches(DataSource):
    # θ batch k is the k-th batch fit sees; the Λ batch after θ step jN is that step's batch plus all of V,
    # as the fit path takes it.
    stateless = True
    num_unlabeled_ids = 120

    def train_batch(self, step):
        return {key: tf.gather(value, step) for key, value in stacked.items()}

    def outer_batch(self, outer_step):
        return {**self.train_batch(outer_step * config.inner_steps - 1), "val_x": data.val_x, "val_y": data.val_y}

    def eval_sets(self):
        return {"validation": (data.val_x, data.val_y)}

    def split_sizes(self):
        return 10, 120, 30


trainer = Trainer(two_layer_mlp(seed=0), PseudoLabel(), SameBatches(), config, verbose=False)
trainer.run()

model = WeightedSSLModel(two_layer_mlp(seed=0), PseudoLabel(), (data.val_x, data.val_y), 120, inner_steps=10,
                         weight_warmup=10, weight_optimizer=MaskedAdam(0.05), weight_decay=1e-3, unlabeled_rampup=25)
model.compile(optimizer=keras.optimizers.Adam(0.01))
model.fit(tf.data.Dataset.from_tensor_slices(stacked), epochs=1, verbose=0)

initial_head = two_layer_mlp(seed=0).head.kernel.numpy()
theta = [np.abs(a.numpy() - b.numpy()).max()
         for a, b in zip(trainer.model.trainable_variables, model.classifier.trainable_variables)]
print("RESULT " + json.dumps({
    "theta_max_abs_diff": float(max(theta)),
    "lambda_max_abs_diff": float(np.abs(trainer.weights.to_numpy() - model.example_weights.to_numpy()).max()),
    "lambda_moved": float(np.abs(model.example_weights.to_numpy() - 1.0).max()),
    "theta_moved": float(np.abs(model.classifier.head.kernel.numpy() - initial_head).max()),
    "lambda_steps": [int(trainer.weights.optimizer.iterations), int(model.example_weights.optimizer.iterations)],
    "theta_steps": [int(trainer.step.numpy()), int(model.step.numpy())]}))
"""


def test_fit_gives_the_trainers_theta_and_lambda_on_the_same_data():
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", SAME_AS_TRAINER], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads([line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    assert out["theta_steps"] == [40, 40]
    assert out["lambda_steps"] == [3, 3]  # after θ steps 20, 30 and 40
    assert out["lambda_moved"] > 1e-3 and out["theta_moved"] > 1e-3  # both did something ...
    assert out["theta_max_abs_diff"] < 1e-5  # ... and the same thing
    assert out["lambda_max_abs_diff"] < 1e-5


def moons_model(val_x=None, algorithm=None, **overrides):
    data = make_synthetic("moons", 0, num_unlabeled=60, num_test=10)
    settings = dict(inner_steps=5, weight_optimizer=MaskedAdam(0.05), weight_decay=1e-3)
    validation = (data.val_x if val_x is None else val_x, data.val_y)
    model = WeightedSSLModel(two_layer_mlp(hidden_units=16, seed=0), algorithm or PseudoLabel(), validation, 60,
                             **{**settings, **overrides})
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    labeled = tf.data.Dataset.from_tensor_slices((data.labeled_x, data.labeled_y)).repeat().batch(10)
    unlabeled = tf.data.Dataset.from_tensor_slices((data.unlabeled_x, data.unlabeled_ids)).repeat().batch(20)
    # 10 batches: Keras starts every epoch on the same ones, as a resumed epoch must.
    return model, ssl_dataset(labeled, unlabeled).take(10)


class Killed(Exception):
    pass


class KillAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise Killed()


class CountBatches(keras.callbacks.Callback):
    count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1


def state(model):
    """θ (and the θ optimizer's slots), λ, M-Adam's counter and moments, the step counter, the rule's statistics."""
    return {"theta": [w.numpy() for w in model.classifier.weights + model.optimizer.variables()],
            "lambda": model.example_weights.to_numpy(), "step": int(model.step.numpy()),
            "madam": [v.numpy() for v in model.example_weights.optimizer.variables()],
            "rule": [v.numpy() for v in model.alg1.algorithm.rule.variables]}


def softmatch_pseudo_label():
    """Pseudo-Label weighted by SoftMatch's rule: statistics that change every θ step and must be restored."""
    return PseudoLabel(rule=SoftMatchWeighting(2, momentum=0.9))


def test_backup_and_restore_resumes_theta_lambda_madam_and_the_rule_as_if_never_interrupted(tmp_path):
    whole, data = moons_model(algorithm=softmatch_pseudo_label())
    whole.fit(data, epochs=4, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "whole")),
                                                    keras.callbacks.TensorBoard(str(tmp_path / "tb"))])
    expected = state(whole)
    assert expected["step"] == 40 and int(whole.example_weights.optimizer.iterations) == 8
    assert np.abs(expected["lambda"] - 1.0).max() > 1e-3
    assert float(whole.alg1.algorithm.rule.mean.numpy()) != 0.5  # the rule's statistics moved from 1/C

    broken, data = moons_model(algorithm=softmatch_pseudo_label())
    with pytest.raises(Killed):  # in epoch 2: the backup holds the end of epoch 1
        broken.fit(data, epochs=4, verbose=0,
                   callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "resumed")), KillAt(2, 3)])
    resumed, data = moons_model(algorithm=softmatch_pseudo_label())
    counter = CountBatches()
    resumed.fit(data, epochs=4, verbose=0,
                callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "resumed")), counter])
    assert counter.count == 20  # epochs 2 and 3 only: it resumed
    got = state(resumed)
    assert got["step"] == expected["step"]
    np.testing.assert_array_equal(got["lambda"], expected["lambda"])
    for key in ("theta", "madam", "rule"):
        assert len(got[key]) == len(expected[key])
        for a, b in zip(got[key], expected[key]):
            np.testing.assert_array_equal(a, b, err_msg=key)

    # TensorBoard logged the fit path's own metrics.
    tags = set()
    for path in tf.io.gfile.glob(str(tmp_path / "tb" / "train" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_loss", "epoch_lambda_mean", "epoch_hypergradient_abs_mean"} <= tags, tags


def test_terminate_on_nan_stops_a_run_whose_hypergradient_diverged():
    # Infinite validation inputs: θ steps stay finite, the Λ step's validation gradient cannot (a NaN input
    # would not do: ReLU maps it to 0).
    inf = np.full_like(make_synthetic("moons", 0, num_unlabeled=60, num_test=10).val_x, np.inf)
    model, data = moons_model(val_x=inf, weight_warmup=5)
    history = model.fit(data, epochs=2, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert int(model.step.numpy()) == 10  # the first Λ step follows θ step 10; the run stops there
    assert int(model.bad_step.numpy()) == 10
    np.testing.assert_array_equal(model.example_weights.to_numpy(), 1.0)  # the bad step was not applied
    assert np.isnan(history.history["loss"][-1])


def test_an_influence_that_cannot_run_is_refused_before_training():
    with pytest.raises(ValueError, match="scope='everything' is not one of head, last_block"):
        InfluenceOptions(scope="everything")
    backbone = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(4)])  # names no last block
    head = keras.layers.Dense(2)
    head.build((None, 4))
    data = make_synthetic("moons", 0, num_unlabeled=10, num_test=10)
    with pytest.raises(ConfigError, match="does not name a last block"):
        WeightedSSLModel((backbone, head), PseudoLabel(), (data.val_x, data.val_y), 10,
                         influence=InfluenceOptions(method="cg", scope="last_block"))
