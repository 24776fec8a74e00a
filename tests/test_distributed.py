"""tf.distribute: MirroredStrategy over two logical CPUs gives the single-device θ steps and the
single-device hypergradient. Runs in a subprocess: logical devices must be set before TF starts."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from influence_ssl.data import make_synthetic
from influence_ssl.models import two_layer_mlp
from influence_ssl.ssl import PseudoLabel
from influence_ssl.trainer import InMemorySource, TrainConfig, Trainer

data = make_synthetic("moons", 0, num_unlabeled=120, num_test=100)
config = TrainConfig(steps=30, labeled_batch=10, unlabeled_batch=40, validation_batch=30, inner_steps=10,
                     weight_warmup=0, lr=0.01, weight_decay=1e-3, ema_decay=0.9, log_every=30,
                     eval_every=30, checkpoint_every=30)

def make(strategy):
    if strategy is None:
        model = two_layer_mlp(seed=0)
    else:
        with strategy.scope():
            model = two_layer_mlp(seed=0)
    source = InMemorySource(data, 10, 40, 30, seed=0)
    return Trainer(model, PseudoLabel(), source, config, verbose=False, strategy=strategy)

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
single, multi = make(None), make(mirrored)
out = {"replicas": multi.num_replicas}

# One Λ step from the same θ: the same global batch, one Hessian, one update.
k = tf.constant(1, tf.int64)
single.outer_step(k)
multi.outer_step(k)
out["lambda_one_step_max_abs_diff"] = float(np.max(np.abs(single.weights.to_numpy() - multi.weights.to_numpy())))
out["lambda_moved"] = float(np.max(np.abs(single.weights.to_numpy() - 1.0)))

# Whole runs: θ steps split over the replicas, Λ steps every 10 θ steps, EMA.
single, multi = make(None), make(mirrored)
single.run()
multi.run()
out["theta_max_abs_diff"] = max(float(np.max(np.abs(a.numpy() - b.numpy())))
                                for a, b in zip(single.model.trainable_variables, multi.model.trainable_variables))
out["ema_max_abs_diff"] = max(float(np.max(np.abs(a.numpy() - b.numpy())))
                              for a, b in zip(single.ema.shadows, multi.ema.shadows))
out["lambda_run_max_abs_diff"] = float(np.max(np.abs(single.weights.to_numpy() - multi.weights.to_numpy())))
out["steps"] = [int(single.step.numpy()), int(multi.step.numpy())]
print("RESULT " + json.dumps(out))
"""


def test_mirrored_strategy_on_two_logical_cpus_matches_single_device():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["replicas"] == 2
    assert out["lambda_moved"] > 1e-3  # the Λ step did something ...
    assert out["lambda_one_step_max_abs_diff"] < 1e-6  # ... and the same thing
    assert out["steps"] == [30, 30]
    assert out["theta_max_abs_diff"] < 1e-4
    assert out["ema_max_abs_diff"] < 1e-4
    assert out["lambda_run_max_abs_diff"] < 1e-4
