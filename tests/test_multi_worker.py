"""MultiWorkerMirroredStrategy: two worker processes on localhost ports (CPU) end with the
θ and λ of a single-process run; only the chief writes the run directory; a run whose worker is killed resumes
from the chief's last checkpoint and ends where the uninterrupted run ends; experiments.train runs on two workers
end to end and refuses an unusable TF_CONFIG in one line."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import refusal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# argv: train_dir out.npz kill_at_lambda_step (-1: never) multi|single
WORKER = r"""
import os, signal, sys
import numpy as np
import tensorflow as tf

train_dir, out, kill_at, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
strategy = tf.distribute.MultiWorkerMirroredStrategy() if mode == "multi" else None  # before any other TF op

from influence_ssl.data import make_synthetic
from influence_ssl.models import two_layer_mlp
from influence_ssl.ssl import PseudoLabel
from influence_ssl.trainer import InMemorySource, TrainConfig, Trainer

data = make_synthetic("moons", 0, num_unlabeled=120, num_test=100)
config = TrainConfig(steps=30, labeled_batch=10, unlabeled_batch=40, validation_batch=30, inner_steps=5,
                     weight_warmup=0, lr=0.01, weight_decay=1e-3, ema_decay=0.9, log_every=10, eval_every=10,
                     checkpoint_every=10)
if strategy is None:
    model = two_layer_mlp(seed=0)
else:
    with strategy.scope():
        model = two_layer_mlp(seed=0)

seen = []

def fault(trainer, k):  # a worker dies in the middle of the run
    seen.append(k)
    if k == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

trainer = Trainer(model, PseudoLabel(), InMemorySource(data, 10, 40, 30, seed=0), config, train_dir=train_dir,
                  callbacks=[fault], verbose=False, strategy=strategy)
trainer.run()
np.savez(out, lam=trainer.weights.to_numpy(), chief=trainer.is_chief, first_lambda_step=min(seen),
         **{f"theta_{i}": v.numpy() for i, v in enumerate(model.trainable_variables)})
"""


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(args, task=None, ports=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if task is not None:
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                                       "task": {"type": "worker", "index": task}})
    return subprocess.Popen([sys.executable, "-c", WORKER, *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def two_workers(train_dir, outs, kill_at=(-1, -1), timeout=300):
    ports = free_ports(2)
    procs = [start([train_dir, outs[i], kill_at[i], "multi"], task=i, ports=ports) for i in range(2)]
    return procs, [p.communicate(timeout=timeout) for p in procs]


def load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a if k.startswith(("theta", "lam")))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("mw")
    single = start([d / "single", d / "single.npz", -1, "single"])
    _, err = single.communicate(timeout=300)
    assert single.returncode == 0, err[-3000:]
    procs, logs = two_workers(d / "run", [d / "w0.npz", d / "w1.npz"])
    for p, (_, err) in zip(procs, logs):
        assert p.returncode == 0, err[-3000:]
    return d, load(d / "single.npz"), load(d / "w0.npz"), load(d / "w1.npz")


def test_two_workers_end_with_the_single_process_theta_and_lambda(uninterrupted):
    _, single, w0, w1 = uninterrupted
    assert bool(w0["chief"]) and not bool(w1["chief"])
    assert max_diff(w0, w1) == 0.0  # both workers hold the same θ and λ
    assert float(np.max(np.abs(single["lam"] - 1.0))) > 1e-3  # the Λ steps moved λ ...
    assert max_diff(w0, single) < 1e-4  # ... as one process does, up to the all-reduce's rounding


def test_only_the_chief_writes_the_run_directory(uninterrupted):
    d = uninterrupted[0]
    names = sorted(os.listdir(d / "run"))
    assert not [n for n in names if n.startswith("scratch_")], names  # the other worker's saves are removed
    assert {"ckpt", "config.json", "results.json", "eval_history.jsonl", "tb", "weights.npy"} <= set(names)
    with open(d / "run" / "eval_history.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [10, 20, 30]  # one writer: no duplicates
    assert (d / "run" / "ckpt" / "ckpt-30.index").exists()


def test_a_killed_worker_resumes_from_the_chiefs_checkpoint_and_ends_the_same(uninterrupted, tmp_path):
    _, _, w0, _ = uninterrupted
    outs = [tmp_path / "w0.npz", tmp_path / "w1.npz"]
    ports = free_ports(2)
    # Worker 1 dies after the 3rd Λ step (step 15): the chief's last checkpoint is step 10.
    procs = [start([tmp_path / "run", outs[i], 3 if i == 1 else -1, "multi"], task=i, ports=ports) for i in range(2)]
    procs[1].communicate(timeout=300)
    assert procs[1].returncode == -signal.SIGKILL
    time.sleep(2)
    if procs[0].poll() is None:  # the chief waits for the dead worker in a collective: stop it too
        procs[0].kill()
    procs[0].communicate(timeout=60)
    assert not outs[0].exists() and (tmp_path / "run" / "ckpt" / "ckpt-10.index").exists()
    procs, logs = two_workers(tmp_path / "run", outs)  # start both again
    for p, (_, err) in zip(procs, logs):
        assert p.returncode == 0, err[-3000:]
    resumed = load(outs[0])
    assert int(resumed["first_lambda_step"]) == 3 and int(w0["first_lambda_step"]) == 1  # resumed at step 10
    assert max_diff(resumed, load(outs[1])) == 0.0
    assert max_diff(resumed, w0) < 1e-6


def test_experiments_train_runs_on_two_workers_and_the_chief_writes_a_complete_run(tmp_path):
    """Every worker takes part in the collectives up to the last one (the diagnostics read mirrored variables),
    then the other worker leaves: the chief must not wait for it in a collective."""
    ports = free_ports(2)
    run_dir = tmp_path / "run"
    args = ["--strategy=multi_worker", "--algorithm=fixmatch", "--dataset=digits", "--confidence=0", "--steps=6",
            "--inner_steps=3", "--weight_warmup=0", "--eval_every=6", "--log_every=6", "--checkpoint_every=6",
            f"--train_dir={run_dir}"]
    procs = []
    for task in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=json.dumps(
            {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": task}}))
        procs.append(subprocess.Popen([sys.executable, "-m", "experiments.train", *args], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        logs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, logs):
        assert p.returncode == 0, (out[-2000:], err[-3000:])
    assert "2 replica(s)" in logs[0][0] and "results:" in logs[0][0] and "worker done:" in logs[1][0]
    names = set(os.listdir(run_dir))
    assert {"results.json", "unlabeled_diagnostics.npz", "weights.npy", "config.json", "ckpt", "split.json",
            "eval_history.jsonl"} <= names, names
    assert not [n for n in names if n.startswith("scratch_")], names
    assert (run_dir / "ckpt" / "ckpt-6.index").exists()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["step"] == 6 and results["run_config"]["train"]["steps"] == 6
    assert "--strategy=multi_worker" in results["provenance"]["command"]
    assert results["lambda"]["lambda_step_abs_mean_over_run"] > 0  # two Λ steps moved λ (τ = 0: every example)
    with np.load(run_dir / "unlabeled_diagnostics.npz") as record:
        assert len(record["ids"]) == 1097 and record["low_images"].shape == (32, 8, 8, 1)
        np.testing.assert_array_equal(record["lambda"], np.load(run_dir / "weights.npy")[record["ids"]])


@pytest.mark.parametrize("tf_config, args, message", [
    (None, [], "needs the TF_CONFIG environment variable"),
    ('{"cluster": {}}', [], "TF_CONFIG is not a cluster and a task"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}', [], "task index 3"),
    (None, ["--tpu=grpc://x"], "--strategy=multi_worker and --tpu exclude each other."),
])
def test_train_refuses_multi_worker_without_a_usable_tf_config(tmp_path, monkeypatch, tf_config, args, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert message in refusal("experiments.train", ["--strategy=multi_worker", *args, f"--train_dir={tmp_path}/r"])
