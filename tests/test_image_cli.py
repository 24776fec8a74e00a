"""experiments.train, experiments.compare and experiments.view_inputs: bad input refused in one line before
anything is written (in-process; once per entry point through a real process: exit code 2, one stderr line, no
traceback), the comparison's run cache, and OOD rows kept in the diagnostics."""
import glob
import json
import os
import re
import sys

import numpy as np
import pytest
from absl import flags
from conftest import assert_one_line_error, parsed, refusal, run_main, run_module

from influence_ssl.data import DatasetNotFoundError


@pytest.mark.parametrize("args, message", [
    (["--num_labeled=-5"], "--num_labeled must be >= 1"),
    (["--num_labeled=5000"], "does not fit digits"),
    (["--num_validation=2000"], "does not fit digits"),
    (["--confidence=1.5"], "--confidence must be in [0, 1]"),
    (["--weight_lr=nan"], "--weight_lr must be a finite number"),
    (["--lr=inf"], "--lr must be a finite number"),
    (["--algorithm=uda", "--uda_softmax_temp=0"], "--uda_softmax_temp must be > 0"),
    (["--uda_softmax_temp=0.5"], "--uda_softmax_temp does not apply to --algorithm=fixmatch: remove it."),
    (["--num_unlabeled=30"], "--num_unlabeled does not apply to --dataset=digits: remove it."),
    (["--batch=0"], "--batch must be >= 1"),
    (["--ema=1"], "--ema must be in [0, 1)"),
    (["--with_extra"], "--with_extra applies to --dataset=svhn only"),
    (["--train_dir={file}/run"], "Cannot write to --train_dir"),
    (["--ood_fraction=1.5"], "--ood_fraction must be in [0, 1)"),
    (["--ood_classes=6,x"], "--ood_classes must be class numbers"),
    (["--ood_fraction=0.5"], "--ood_fraction needs --ood_classes or --ood_noise"),
    (["--ood_classes=12"], "OOD classes must be in 0..9"),
    (["--export_unlabeled_text={tmp}/u.txt"], "--export_unlabeled_text applies to --dataset=imdb only."),
    (["--dataset=imdb", "--aug=tf_idf-0.2"], "--dataset=imdb needs --bert_dir"),
])
def test_train_refuses_bad_input_in_one_line_before_writing(tmp_path, args, message):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    args = [a.format(file=blocker, tmp=tmp_path) for a in args]
    if not any(a.startswith("--train_dir") for a in args):
        args.append(f"--train_dir={tmp_path / 'run'}")
    assert message in refusal("experiments.train", args)
    assert not os.path.exists(tmp_path / "run" / "ckpt")  # nothing written before the check


def test_a_missing_dataset_is_its_own_error_with_instructions(tmp_path):
    """Not one line: how to prepare the dataset elsewhere (nothing is downloaded)."""
    message = refusal("experiments.train", ["--dataset=svhn", f"--data_dir={tmp_path}", f"--train_dir={tmp_path}/r"],
                      errors=DatasetNotFoundError, one_line=False)
    assert "svhn_cropped" in message and "Nothing is downloaded" in message
    assert not os.path.exists(tmp_path / "r" / "ckpt")


def test_a_flag_value_absl_cannot_parse_is_one_line_and_exit_code_2(capsys, monkeypatch):
    """A value out of a flag's choices (or not a number) is refused by the entry points' flag parser like every
    other bad input: one line, exit code 2 (absl's own parser prints two lines and exits with 1). Every entry
    point's run_main hands absl's app.run this parser, so the program ends there before main runs."""
    from absl.testing import flagsaver

    from experiments import train  # noqa: F401  (its flags)
    from experiments.checks import parse_flags, run_main

    called = []
    monkeypatch.setattr(sys, "argv", ["train", "--madam_rows=bogus"])
    for refuse in (lambda: parse_flags(list(sys.argv)), lambda: run_main(called.append)):
        with flagsaver.flagsaver(), pytest.raises(SystemExit) as caught:
            refuse()
        assert caught.value.code == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "--madam_rows" in lines[0], lines
    assert not called


def test_train_refuses_bad_input_through_a_real_process(tmp_path):
    result = run_module("experiments.train", ["--confidence=1.5", f"--train_dir={tmp_path / 'run'}"])
    assert_one_line_error(result, "--confidence must be in [0, 1]")
    assert not (tmp_path / "run").exists()


COMPARE = "experiments.compare"


@pytest.mark.parametrize("args, message", [
    (["--weight_lr_grid=0.01,abc"], "--weight_lr_grid must be a list of numbers"),
    (["--weight_lr_grid=0.01,-1"], "--weight_lr_grid must hold finite values > 0"),
    (["--tuned_lambda_grid=1,nan"], "--tuned_lambda_grid must hold finite values >= 0"),
    (["--seeds=0"], "--seeds must be >= 1"),
    (["--json_out=/proc/version/r.json"], "Cannot write to --json_out"),
    (["--run_cache=/proc/version/runs"], "Cannot write to --run_cache"),
    (["--dataset=moons", "--batch=8"], "--batch does not apply to --dataset=moons: remove it."),
])
def test_compare_refuses_bad_input_in_one_line(tmp_path, args, message):
    common = ["--seeds=1", f"--json_out={tmp_path / 'r.json'}", f"--run_cache={tmp_path / 'cache'}"]
    assert message in refusal(COMPARE, common + args)
    assert not (tmp_path / "r.json").exists()


def test_compare_offers_no_test_selected_metric():
    with pytest.raises(flags.IllegalFlagValueError, match="best_test_accuracy"):
        with parsed(COMPARE, ["--metric=best_test_accuracy"]):
            pass


def test_compare_refuses_bad_input_through_a_real_process(tmp_path):
    result = run_module(COMPARE, ["--seeds=1", "--weight_lr_grid=0.01,-1", f"--json_out={tmp_path / 'r.json'}",
                                  f"--run_cache={tmp_path / 'cache'}"])
    assert_one_line_error(result, "--weight_lr_grid must hold finite values > 0")


def test_view_inputs_writes_the_grid_of_what_the_model_sees(tmp_path):
    out = tmp_path / "inputs.png"
    stdout = run_main("experiments.view_inputs", ["--algorithm=uda", "--dataset=digits", f"--out={out}"])
    assert f"inputs: {out}" in stdout and out.stat().st_size > 10_000
    assert "has no images to show" in refusal("experiments.view_inputs", ["--dataset=moons", f"--out={out}"])
    stdout = run_main("experiments.view_inputs", ["--dataset=digits", "--ood_classes=6,7,8,9", "--ood_fraction=0.5",
                                                  f"--out={out}"])
    counted = re.search(r"\((\d+) of 16 unlabeled columns out of distribution\)", stdout)
    assert counted and 0 < int(counted.group(1)) < 16  # about half of a batch drawn from a half-OOD set


def test_view_inputs_frames_the_ood_columns_of_the_batch_by_id():
    from experiments.view_inputs import ood_columns

    assert ood_columns(np.array([False, True, False, True]), [3, 0, 1]).tolist() == [True, False, True]
    assert ood_columns(None, [3, 0]).tolist() == [False, False]


TINY = ["--steps=20", "--weight_warmup=10", "--inner_steps=10", "--log_every=20", "--eval_every=20",
        "--checkpoint_every=20", "--seeds=1"]


def test_compare_keeps_ood_rows_caches_every_run_and_a_restart_trains_none(tmp_path):
    """OOD images have true label -1, as IMDb's unlabeled reviews do; they once fell out of the diagnostics with
    those, so ood_fraction read 0 and AUROC(-λ → OOD) was missing. A long sweep spans sessions: every finished run
    is kept under its configuration's hash with its per-example arrays, and not trained again. (What a changed
    setting or a hypergradient variant trains again is tests/test_studies.py's, on a fake training.)"""
    cache = tmp_path / "cache"
    tiny = [*TINY, "--ood_classes=6,7,8,9", "--ood_fraction=0.5", "--tuned_lambda_grid=0.5,1", f"--run_cache={cache}"]
    first = run_main(COMPARE, [*tiny, f"--json_out={tmp_path / 'r.json'}", f"--plot_dir={tmp_path / 'plots'}"])
    assert re.findall(r"(\d+) run\(s\) trained", first) == ["4"]  # the tuned λ = 1 is the base run
    assert (tmp_path / "plots" / "r.png").stat().st_size > 10_000  # its picture, named as its JSON
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["ood_fraction"] == pytest.approx(0.5, abs=0.01)
    assert "auroc_low_weight_vs_ood" in results and len(results["auroc_low_weight_vs_ood_per_seed"]) == 1
    assert results["config"]["data"]["ood_classes"] == [6, 7, 8, 9]
    tuned = results["methods"]["tuned_single_lambda"]
    assert len(tuned["values"]) == 1 and tuned["lambda_per_seed"][0] in (0.5, 1.0)
    if tuned["lambda_per_seed"][0] == 1.0:
        assert tuned["values"] == results["methods"]["base"]["values"]
    saved = [np.load(path) for path in sorted(glob.glob(str(cache / "*.npz")))]
    assert len(saved) == 4 and len(list(cache.glob("*.json"))) == 4  # every run keeps its per-example arrays
    for arrays in saved:
        assert arrays["ood"].mean() == pytest.approx(0.5, abs=0.01) and arrays["wrong"][arrays["ood"]].all()

    again = run_main(COMPARE, [*tiny, f"--json_out={tmp_path / 'again.json'}", "--plot_dir="])
    assert re.findall(r"(\d+) run\(s\) trained", again) == ["0"]
    assert json.loads((tmp_path / "again.json").read_text())["methods"] == results["methods"]
    table = lambda out: [line for line in out.splitlines() if line.startswith(("base ", "ours "))]
    assert table(again) == table(first) and len(table(first)) == 2
