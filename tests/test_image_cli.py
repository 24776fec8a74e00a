"""experiments.train and experiments.compare on bad input: one line on stderr, exit code 2, no traceback."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(module, args, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("flag, message", [
    ("--num_labeled=-5", "--num_labeled must be >= 1"),
    ("--num_labeled=5000", "does not fit digits"),
    ("--num_validation=2000", "does not fit digits"),
    ("--confidence=1.5", "--confidence must be in [0, 1]"),
    ("--weight_lr=nan", "--weight_lr must be a finite number"),
    ("--lr=inf", "--lr must be a finite number"),
    ("--uda_softmax_temp=0", "--uda_softmax_temp must be > 0"),
    ("--batch=0", "--batch must be >= 1"),
    ("--with_extra", "--with_extra applies to --dataset=svhn only"),
    ("--train_dir={file}/run", "Cannot write to --train_dir"),
    ("--ood_fraction=1.5", "--ood_fraction must be in [0, 1)"),
    ("--ood_classes=6,x", "--ood_classes must be class numbers"),
    ("--ood_fraction=0.5", "--ood_fraction needs --ood_classes or --ood_noise"),
    ("--ood_classes=12", "OOD classes must be in 0..9"),
])
def test_train_refuses_bad_input_in_one_line(tmp_path, flag, message):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run("experiments.train", [flag.format(file=blocker), f"--train_dir={tmp_path / 'run'}"]
                 if "train_dir" not in flag else [flag.format(file=blocker)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr[-2000:]
    assert not os.path.exists(tmp_path / "run" / "ckpt")  # nothing written before the check


@pytest.mark.parametrize("flag, message", [
    ("--metric=best_test_accuracy", "best_test_accuracy"),  # a test-selected number is not offered
    ("--weight_lr_grid=0.01,abc", "--weight_lr_grid must be a list of numbers"),
    ("--weight_lr_grid=0.01,-1", "--weight_lr_grid must hold finite values > 0"),
    ("--tuned_lambda_grid=1,nan", "--tuned_lambda_grid must hold finite values >= 0"),
])
def test_compare_refuses_bad_input(tmp_path, flag, message):
    result = run("experiments.compare", [flag, "--seeds=1", f"--json_out={tmp_path / 'r.json'}"])
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert "cuInit" not in result.stderr


def test_step_size_is_chosen_on_validation_loss_never_test():
    from experiments.compare import choose_on_validation

    candidates = [({"weight_lr": 0.01}, None, {"validation_loss": 0.40, "test_accuracy": 0.99}),
                  ({"weight_lr": 0.04}, None, {"validation_loss": 0.30, "test_accuracy": 0.50}),
                  ({"weight_lr": 0.10}, None, {"validation_loss": 0.35, "test_accuracy": 0.98})]
    assert choose_on_validation(candidates)[0]["weight_lr"] == 0.04


def test_view_inputs_writes_the_grid_of_what_the_model_sees(tmp_path):
    out = tmp_path / "inputs.png"
    result = run("experiments.view_inputs", ["--algorithm=uda", "--dataset=digits", f"--out={out}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.stat().st_size > 10_000


def test_compare_with_ood_unlabeled_keeps_the_ood_rows_in_the_diagnostics(tmp_path):
    """OOD images have true label -1, as IMDb's unlabeled reviews do; they once fell out of the diagnostics with
    those, so ood_fraction read 0 and AUROC(-λ → OOD) was missing. A seed file saved that way is refused."""
    tiny = ["--steps=20", "--weight_warmup=10", "--inner_steps=10", "--log_every=20", "--eval_every=20",
            "--checkpoint_every=20", "--seeds=1", "--ood_classes=6,7,8,9", "--ood_fraction=0.5",
            f"--json_out={tmp_path / 'r.json'}"]
    first = run("experiments.compare", tiny)
    assert first.returncode == 0, first.stderr[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["ood_fraction"] == pytest.approx(0.5, abs=0.01)
    assert "auroc_low_weight_vs_ood" in results and len(results["auroc_low_weight_vs_ood_per_seed"]) == 1
    seed_file = tmp_path / "r_seeds" / "seed_0.npz"
    with np.load(seed_file) as f:
        saved = dict(f)
    assert saved["ood"].mean() == pytest.approx(0.5, abs=0.01) and saved["wrong"][saved["ood"]].all()
    np.savez(seed_file, **{**saved, "ood": np.zeros_like(saved["ood"])})
    stale = run("experiments.compare", tiny)
    assert stale.returncode == 2 and "no OOD rows" in stale.stderr


def test_compare_saves_each_seed_and_a_restart_loads_it(tmp_path):
    """A long sweep spans sessions: a finished seed is saved whole and not re-run; other settings are refused."""
    tiny = ["--steps=30", "--weight_warmup=10", "--inner_steps=10", "--log_every=30", "--eval_every=30",
            "--checkpoint_every=30", "--seeds=1", "--tuned_lambda_grid=0.5,1", f"--json_out={tmp_path / 'r.json'}"]
    first = run("experiments.compare", tiny)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "r_seeds" / "seed_0.npz").exists()
    tuned = json.loads((tmp_path / "r.json").read_text())["methods"]["tuned_single_lambda"]
    assert len(tuned["test_accuracy"]) == 1 and tuned["lambda_per_seed"][0] in (0.5, 1.0)
    again = run("experiments.compare", tiny)
    assert again.returncode == 0 and "[saved earlier]" in again.stdout
    table = lambda out: [line for line in out.splitlines() if line.startswith(("base ", "ours "))]
    assert table(again.stdout) == table(first.stdout)
    other = run("experiments.compare", [*tiny, "--weight_lr=0.5"])
    assert other.returncode == 2 and "saved under other settings" in other.stderr

    # A hypergradient variant reads base and the tuned λ from the paper-method seeds (marked here, to see them read).
    with np.load(tmp_path / "r_seeds" / "seed_0.npz") as f:
        saved = dict(f)
    os.makedirs(tmp_path / "marked")
    np.savez(tmp_path / "marked" / "seed_0.npz", **{**saved, "accuracy_base": np.float64(0.123)})
    variant = [*tiny[:-1], "--hypergradient_normalization=class", f"--baselines_from={tmp_path / 'marked'}",
               f"--json_out={tmp_path / 'v.json'}"]
    result = run("experiments.compare", variant)
    assert result.returncode == 0, result.stderr[-2000:]
    methods = json.loads((tmp_path / "v.json").read_text())["methods"]
    assert methods["base"]["test_accuracy"] == [0.123]
    assert methods["tuned_single_lambda"]["test_accuracy"] == tuned["test_accuracy"]
    mismatch = run("experiments.compare", [*variant[:-1], "--weight_lr=0.5", f"--json_out={tmp_path / 'w.json'}"])
    assert mismatch.returncode == 2 and "--baselines_from" in mismatch.stderr
    # So does another inverse Hessian over another scope: base and the fixed λ never compute an influence.
    scoped = run("experiments.compare", [*variant[:-1], "--influence=cg", "--influence_scope=last_block",
                                         f"--json_out={tmp_path / 'cg.json'}"])
    assert scoped.returncode == 0, scoped.stderr[-2000:]
    assert json.loads((tmp_path / "cg.json").read_text())["methods"]["base"]["test_accuracy"] == [0.123]
