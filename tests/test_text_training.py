"""The text recipe's pieces against hand / numpy references, the binary influence against the exact
oracle, and the whole pipeline through experiments.train and experiments.compare with --dataset=imdb on a tiny
BERT (in-process), the Table 2 flag files and the inputs refused before anything is read."""
import json
import math
import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from conftest import ROOT, config_of, refusal, run_main, run_module
from test_text_bert import VOCAB, tiny_bert, write_google_folder
from test_text_data import write_acl_imdb, write_paraphrases

from influence_ssl.data import text as text_data
from influence_ssl.models import Classifier
from influence_ssl.optimizers import BertAdam
from influence_ssl.runs import build, text
from influence_ssl.ssl import UDA
from influence_ssl.ssl.tsa import tsa_threshold
from influence_ssl.trainer import ConfigError, TrainConfig, Trainer
from influence_ssl.trainer.schedules import ThetaSchedule
from influence_ssl.trainer.text_source import PairedTextSource


# ------------------------------------------------------------------------------ optimizer and schedule
def test_bert_linear_schedule_matches_numpy():
    schedule = ThetaSchedule("bert_linear", 2e-5, 10_000, warmup_steps=1000)
    steps = np.array([0, 1, 500, 999, 1000, 5000, 9999, 10_000, 12_000])
    expected = np.where(steps < 1000, 2e-5 * steps / 1000, 2e-5 * np.maximum(1 - steps / 10_000, 0))
    np.testing.assert_allclose([float(schedule(s)) for s in steps], expected, rtol=1e-6, atol=1e-12)
    assert float(schedule(1000)) == pytest.approx(1.8e-5)  # the drop at the warm-up's end


def test_bert_adam_matches_numpy_no_bias_correction_decoupled_decay_and_clip():
    """BERT's AdamWeightDecayOptimizer: no bias correction, lr·wd·w on kernels only, global-norm clip 1."""
    rng = np.random.default_rng(0)
    kernel0, bias0 = rng.normal(size=(3, 2)), rng.normal(size=2)
    kernel = tf.Variable(kernel0, dtype=tf.float64, name="dense/kernel")
    bias = tf.Variable(bias0, dtype=tf.float64, name="dense/bias")
    lr = ThetaSchedule("bert_linear", 0.1, 10, warmup_steps=2)
    optimizer = BertAdam(lr, weight_decay=0.01, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["LayerNorm", "layer_norm", "bias"])
    w, b = kernel0.copy(), bias0.copy()
    m, v = [np.zeros_like(w), np.zeros_like(b)], [np.zeros_like(w), np.zeros_like(b)]
    for step in range(4):
        grads = [rng.normal(size=w.shape) * 3, rng.normal(size=b.shape) * 3]
        optimizer.apply_gradients(zip([tf.constant(g) for g in grads], [kernel, bias]))
        norm = math.sqrt(sum(np.sum(g ** 2) for g in grads))
        grads = [g * min(1.0, 1.0 / norm) for g in grads]
        rate = 0.1 * step / 2 if step < 2 else 0.1 * (1 - step / 10)
        for i, (param, decay) in enumerate([(w, 0.01), (b, 0.0)]):
            m[i] = 0.9 * m[i] + 0.1 * grads[i]
            v[i] = 0.999 * v[i] + 0.001 * grads[i] ** 2
            param -= rate * (m[i] / (np.sqrt(v[i]) + 1e-6) + decay * param)
        # rtol: the schedule's lr is float32.
        np.testing.assert_allclose(kernel.numpy(), w, rtol=1e-6)
        np.testing.assert_allclose(bias.numpy(), b, rtol=1e-6)


def test_adamw_config_keeps_decay_out_of_the_loss():
    config = TrainConfig(optimizer="adamw", weight_decay=0.01)
    assert config.loss_l2 == 0.0 and TrainConfig(weight_decay=0.01).loss_l2 == 0.01
    # A checkpoint written before clip_norm existed resumes (the field had its default then).
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k != "clip_norm"}
    TrainConfig().check_resumable_from(saved)


# --------------------------------------------------------------------------------- UDA's text loss
def identity_classifier():
    """logits = inputs [B, 2] (identity backbone, identity head)."""
    model = Classifier(keras.layers.Lambda(lambda x: x), 2, head_initializer="identity")
    model.build((None, 2))
    return model


def test_tsa_linear_and_uda_text_loss_by_hand():
    assert float(tsa_threshold("linear", 2500, 10_000, 2)) == pytest.approx(0.625)  # r/2 + 1/2
    assert float(tsa_threshold("linear", 0, 10_000, 2)) == pytest.approx(0.5)
    uda = UDA(1.0, 0.0, "linear", total_steps=10)
    batch = {"labeled_x": tf.constant([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), "labeled_y": tf.constant([0, 1, 1]),
             "unlabeled_weak": tf.constant([[1.0, 0.0]]), "unlabeled_strong": tf.constant([[0.0, 1.0]])}
    # Correct-class probabilities 0.881, 0.731, 0.5. Step 0 (η = 0.5): only the third is kept -> log 2.
    out = uda.losses(identity_classifier(), batch, training=True, step=0)
    assert float(tf.reduce_mean(out.labeled)) == pytest.approx(math.log(2), rel=1e-6)
    # Step 5 (η = 0.75): the second and third, averaged over the 2 kept.
    out = uda.losses(identity_classifier(), batch, training=True, step=5)
    assert float(tf.reduce_mean(out.labeled)) == pytest.approx((math.log(1 + math.exp(-1)) + math.log(2)) / 2, rel=1e-6)
    # KL(softmax(1, 0) ‖ softmax(0, 1)) = (p1 - p2)(1 - 0) = tanh(1/2); no sharpening, no mask.
    assert out.unlabeled.numpy() == pytest.approx([math.tanh(0.5)], rel=1e-6)


# -------------------------------------------------------------------- binary influence vs the oracle
def fake_text_data(seed=0, length=12, labeled=8, unlabeled=48, validation=8):
    from influence_ssl.data.text import TextSSLData

    rng = np.random.default_rng(seed)

    def ids(n):
        x = rng.integers(5, len(VOCAB), size=(n, length)).astype(np.int32)
        x[:, 0], x[:, -1] = 2, 3  # [CLS] ... [SEP]
        return x

    return TextSSLData(name="imdb", num_classes=2, labeled_x=ids(labeled), labeled_y=np.arange(labeled) % 2,
                       unlabeled_x=ids(unlabeled), unlabeled_ids=np.arange(unlabeled),
                       unlabeled_true_y=np.zeros(unlabeled, int),
                       val_x=ids(validation), val_y=np.arange(validation) % 2, test_x=ids(4), test_y=np.zeros(4, int),
                       unlabeled_aug_x=ids(unlabeled))


def test_binary_reparam_influence_matches_the_exact_full_hessian_oracle():
    from test_influence import Oracle

    from influence_ssl.models import bert_classifier

    data = fake_text_data()
    # A random BERT at init range 0.02 maps every input to nearly the same pooled output; at 0.3 the features
    # spread. Without an L2 term the Hessian's condition is still ~1e7, so float32 rounding (which differs
    # between CPUs) moves the hypergradient itself by percents: the unit L2 (the authors' code) makes it ~10.
    model = bert_classifier(tiny_bert(seed=5, initializer_range=0.3), seq_length=12, seed=0)
    config = TrainConfig(steps=10, labeled_batch=8, unlabeled_batch=48, validation_batch=8, inner_steps=1,
                         optimizer="adamw", weight_decay=0.01, binary_reparam=True, influence_damping=0.0,
                         influence_hessian_l2="unit", lr_schedule="bert_linear", clip_norm=1.0)
    source = PairedTextSource(data, 8, 48, 8, seed=0)
    trainer = Trainer(model, UDA(1.0, 0.0, "linear", total_steps=10), source, config, verbose=False)
    ids, ours = trainer.hypergradient(1)
    batch = source.outer_batch(tf.constant(1, tf.int64))
    out = trainer.algorithm.losses(model, batch, training=False, step=trainer.step)  # inference mode
    f64 = lambda t: np.asarray(t, np.float64)
    problem = {"labeled_features": f64(out.labeled_features), "labeled_targets": f64(out.labeled_targets),
               "unlabeled_features": f64(out.unlabeled_features), "unlabeled_targets": f64(out.unlabeled_targets),
               "unlabeled_weights": np.full(48, 1.0 / 48),  # λ = 1, the loss's 1/|U'|
               "val_features": f64(model.features(batch["val_x"], training=False)),
               "val_targets": np.eye(2)[batch["val_y"].numpy()],
               "kernel": f64(model.head.kernel), "bias": f64(model.head.bias)}
    # The unit L2 on the two-logit head (φ, -φ) is ½||(φ, -φ)||² = ||φ||²: l2 = 2 on the Oracle's one-logit φ.
    reference = Oracle(problem, l2=2.0, labeled_weights=1.0 / 8, binary=True).hypergradient() / 48
    np.testing.assert_array_equal(ids, batch["unlabeled_ids"].numpy())
    np.testing.assert_allclose(ours, reference, rtol=5e-4, atol=2e-5 * np.abs(reference).max())


# ------------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def text_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_cli")
    bert_dir = str(root / "bert")
    write_google_folder(tiny_bert(seed=1), bert_dir)
    return bert_dir, write_acl_imdb(root / "aclImdb"), str(root / "cache")


@pytest.fixture(scope="module")
def listed_inputs(tmp_path_factory):
    """A fake aclImdb with UDA's train_id_list.txt and a para_0.txt for it whose line i is "<name i> <review i>",
    except every 4th line (three times the review: refused by the length rule). (imdb_dir, bt_file, names)."""
    root = tmp_path_factory.mktemp("listed")
    imdb_dir = write_acl_imdb(root / "aclImdb", id_list=True)
    names = write_paraphrases(imdb_dir, root / "para_0.txt")
    return imdb_dir, str(root / "para_0.txt"), names


def tiny_text(text_inputs):
    bert_dir, imdb_dir, cache = text_inputs
    return ["--algorithm=uda", "--dataset=imdb", f"--bert_dir={bert_dir}", f"--imdb_dir={imdb_dir}",
            f"--text_cache_dir={cache}", "--aug=tf_idf-0.2", "--max_seq_length=32", "--batch=4", "--uratio=2",
            "--inner_steps=2", "--weight_warmup=2", "--binary_reparam", "--log_every=2", "--checkpoint_every=4",
            "--steps=4"]


def test_training_through_the_command_line_with_weights(text_inputs, listed_inputs, tmp_path):
    run_dir = tmp_path / "ours"
    imdb_dir, bt_file, _ = listed_inputs
    stdout = run_main("experiments.train", [*tiny_text(text_inputs), "--eval_every=2", "--seed=2",
                                            "--weighting=per_example", f"--train_dir={run_dir}",
                                            f"--imdb_dir={imdb_dir}", "--aug=bt-0.9", f"--bt_file={bt_file}"])
    assert "UDA's 20 labeled reviews" in stdout and "token ids" in stdout
    results = json.loads((run_dir / "results.json").read_text())
    # 17 of the 68 paraphrases (every 4th) are refused by the length rule: 75% of unsup_in replaced.
    assert results["augmentation"]["aug"] == "bt-0.9"
    assert results["augmentation"]["paraphrase_replaced_share_unsup_in"] == 0.75
    assert "of UDA's unsup_in" in stdout and '"paraphrase_replaced_share"' in stdout
    assert results["step"] == 4 and len(results["history"]) == 2
    assert {"test_accuracy", "median_last20_test_accuracy", "test_selected", "validation_loss"} <= set(results)
    config = results["config"]
    assert (config["optimizer"], config["lr_schedule"], config["clip_norm"], config["binary_reparam"]) == \
        ("adamw", "bert_linear", 1.0, True)
    assert (config["labeled_batch"], config["unlabeled_batch"], config["seed"]) == (4, 8, 2)
    weights = np.load(run_dir / "weights.npy")
    assert weights.shape == (68,) and np.any(weights != 1.0)  # 60 train + 8 long unsup; a Λ step at 4
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["labeled"]) == 20 and len(split["validation"]) == 20
    assert not (run_dir / "unlabeled_diagnostics.npz").exists()  # a text run's record would hold no pictures
    # what experiments.report needs to place the run in Table 2: the whole configuration and its provenance
    assert results["format"] == "influence_ssl.run/1"
    run_config = results["run_config"]
    assert (run_config["data"]["dataset"], run_config["train"]["weighting"], run_config["text"]["max_seq_length"]) == \
        ("imdb", "per_example", 32)
    assert run_config["train"] == config and run_config["algorithm"]["tsa"] == "linear"
    assert results["provenance"]["config"] == run_config
    assert {"commit", "command", "versions", "device", "threads", "date"} <= set(results["provenance"])


@pytest.fixture(scope="module")
def imdb_compare(text_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("imdb_compare")
    stdout = run_main("experiments.compare", [*tiny_text(text_inputs), "--eval_every=4", "--seeds=1",
                                              f"--json_out={out}/c.json", f"--run_cache={out}/cache",
                                              "--plot_dir="])
    return out, stdout


def test_compare_runs_base_ours_and_the_control_on_imdb(imdb_compare):
    tmp_path, stdout = imdb_compare
    data = json.loads((tmp_path / "c.json").read_text())
    assert set(data["methods"]) == {"base", "ours", "ours_reversed"} and data["config"]["data"]["dataset"] == "imdb"
    assert data["config"]["text"]["max_seq_length"] == 32 and "3 run(s) trained" in stdout
    # The diagnostics cover the unlabeled set's 40 reviews with a label (the 60 labeled-train reviews less the 20 of
    # the validation set), not its 8 unsup ones (no label).
    assert 0.0 <= data["weights"]["wrong_pseudo_label_rate_all"] <= 1.0
    for path in (tmp_path / "cache").glob("*.npz"):
        with np.load(path) as arrays:
            assert len(arrays["lambda"]) == 40


def test_report_places_the_imdb_comparison_in_table_2(imdb_compare):
    tmp_path, _ = imdb_compare
    report = run_module("experiments.report", [str(tmp_path)], timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    # Placed in Table 2, not Table 1, with its paired comparison (one seed: p = 1); the run cache is skipped.
    table2 = report.stdout.split("Table 2")[1].split("Table 3")[0]
    table1 = report.stdout.split("Table 1")[1].split("Table 2")[0]
    assert "IMDb, 32 tokens (compare)" in table2 and "IMDb" not in table1
    assert re.search(r"\nOurs\s+IMDb, 32 tokens \(compare\).*\s+base\s+[+-]\d+\.\d\d ± 0\.00\s+1\s+", table2)


def test_tokens_are_cached_and_the_unlabeled_text_exported(text_inputs, tmp_path, capsys):
    bert_dir, imdb_dir, _ = text_inputs
    config = config_of(["--dataset=imdb", f"--bert_dir={bert_dir}", f"--imdb_dir={imdb_dir}",
                        f"--text_cache_dir={tmp_path / 'cache'}", "--aug=tf_idf-0.5", "--max_seq_length=16",
                        "--seed=1"])
    first, split, _ = text.load_data(config)
    second, _, _ = text.load_data(config)
    out = capsys.readouterr().out
    assert "token ids cached" in out and "token ids from the cache" in out
    np.testing.assert_array_equal(first.unlabeled_aug_x, second.unlabeled_aug_x)
    assert first.unlabeled_x.shape == (48, 16) and first.test_x.shape == (12, 16)
    assert np.mean(first.unlabeled_x != first.unlabeled_aug_x) > 0.05  # TF-IDF replaced words
    path = tmp_path / "unlabeled.txt"
    stdout = run_main("experiments.train", ["--dataset=imdb", f"--bert_dir={bert_dir}", f"--imdb_dir={imdb_dir}",
                                            "--aug=tf_idf-0.5", f"--export_unlabeled_text={path}",
                                            f"--train_dir={tmp_path / 'run'}"])
    assert f"68 unlabeled reviews written to {path}" in stdout
    assert len(path.read_text().splitlines()) == 68
    assert not (tmp_path / "run" / "ckpt").exists()  # and nothing trained


def test_back_translation_pairs_line_i_with_unlabeled_id_i_and_reports_the_share(text_inputs, listed_inputs,
                                                                                  tmp_path, capsys):
    bert_dir, _, _ = text_inputs
    imdb_dir, bt_file, names = listed_inputs
    config = config_of(["--dataset=imdb", f"--bert_dir={bert_dir}", f"--imdb_dir={imdb_dir}", f"--bt_file={bt_file}",
                        f"--text_cache_dir={tmp_path / 'cache'}", "--aug=bt-0.9", "--max_seq_length=16", "--seed=1"])
    data, split, metadata = text.load_data(config)
    ids = data.unlabeled_ids
    # Line i (i % 4 != 0) replaced review i: 51 of 68 in unsup_in; of the unlabeled set (less the 20 validation
    # reviews), the ids not divisible by 4.
    assert metadata["paraphrase_replaced_share_unsup_in"] == 0.75
    assert metadata["paraphrase_replaced_share"] == pytest.approx(np.mean(ids % 4 != 0))
    assert "back-translation: " in capsys.readouterr().out
    tokenizer = text_data.WordPiece(f"{bert_dir}/vocab.txt")
    with open(bt_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for row, i in enumerate(ids):
        if i % 4:  # the augmented view of unlabeled ID i is the tail of line i, and line i is of review i
            assert lines[i].startswith(names[i] + " ")
            np.testing.assert_array_equal(data.unlabeled_aug_x[row], tokenizer.encode([lines[i]], 16)[0])
            review = lines[i][len(names[i]) + 1:]
            np.testing.assert_array_equal(data.unlabeled_x[row], tokenizer.encode([review], 16)[0])
        else:
            np.testing.assert_array_equal(data.unlabeled_aug_x[row], data.unlabeled_x[row])
    # A second load reads the cache, and still knows which reviews were replaced.
    again = text.load_data(config)[2]
    assert "token ids from the cache" in capsys.readouterr().out
    assert again["paraphrase_replaced_share"] == metadata["paraphrase_replaced_share"]


def test_back_translation_without_udas_order_is_refused(text_inputs, tmp_path):
    """TFDS, or an aclImdb folder without train_id_list.txt: the paraphrases would pair with other reviews."""
    bert_dir, imdb_dir, cache = text_inputs
    bt_file = tmp_path / "para_0.txt"
    bt_file.write_text("line\n" * 68)  # the right count: only the order check can catch it
    message = refusal("experiments.train", ["--dataset=imdb", f"--bert_dir={bert_dir}", f"--imdb_dir={imdb_dir}",
                                            "--aug=bt-0.9", f"--bt_file={bt_file}", f"--text_cache_dir={cache}",
                                            f"--train_dir={tmp_path / 'run'}"])
    assert f"--imdb_dir={imdb_dir!r} has no train_id_list.txt" in message and "--aug=bt-0.9" in message
    assert not (tmp_path / "run" / "ckpt").exists()
    tfds = config_of(["--dataset=imdb", f"--data_dir={tmp_path}", "--aug=bt-0.9", f"--bt_file={bt_file}"])
    with pytest.raises(ConfigError, match="which TFDS imdb_reviews cannot give"):
        text.check_paraphrase_order(tfds)
    # A corpus read without the list is refused too (a caller that skipped check_inputs).
    unlisted = config_of(["--dataset=imdb", f"--imdb_dir={imdb_dir}", "--aug=bt-0.9", f"--bt_file={bt_file}"])
    with pytest.raises(ConfigError, match="has no train_id_list.txt"):
        text.check_paraphrase_order(unlisted, text.read_corpus(unlisted))
    text.check_paraphrase_order(config_of(["--dataset=imdb", f"--imdb_dir={imdb_dir}", "--aug=tf_idf-0.2"]))


@pytest.mark.parametrize("name, weighting, uratio, tsa, needs_bt", [
    ("ours", "per_example", 4, "linear", True), ("uda", "none", 4, "linear", True),
    ("supervised", "none", 1, "none", False)])
def test_table2_flag_files(text_inputs, tmp_path, monkeypatch, name, weighting, uratio, tsa, needs_bt):
    bert_dir, imdb_dir, _ = text_inputs
    bt = [f"--bt_file={tmp_path / 'para_0.txt'}"] if needs_bt else []
    monkeypatch.chdir(ROOT)
    c = config_of([f"--flagfile={ROOT}/experiments/configs/table2/{name}_128.cfg", f"--bert_dir={bert_dir}",
                   f"--imdb_dir={imdb_dir}", *bt])
    t = c.train
    assert (t.steps, t.labeled_batch, t.unlabeled_batch, t.lr, t.lr_warmup) == (10_000, 8, 8 * uratio, 2e-5, 1000)
    assert (t.optimizer, t.weight_decay, t.clip_norm, t.lr_schedule) == ("adamw", 0.01, 1.0, "bert_linear")
    assert (t.weighting, c.algorithm.tsa, c.text.max_seq_length, t.eval_every) == (weighting, tsa, 128, 500)
    assert t.weight_init == (0.0 if name == "supervised" else 1.0)
    if weighting == "per_example":
        assert (t.inner_steps, t.weight_lr, t.weight_warmup, t.validation_batch, t.binary_reparam) == \
            (5, 0.01, 1000, 20, True)


@pytest.mark.parametrize("args, error, message", [
    ([], "ConfigError", "--dataset=imdb needs --bert_dir"),
    (["--bert_dir={tmp}"], "BertFolderError", "must hold vocab.txt and either a transformers TF BERT"),
    (["--bert_dir={bert}"], "DatasetNotFoundError", "--dataset=imdb needs --imdb_dir"),
    (["--bert_dir={bert}", "--imdb_dir={tmp}"], "DatasetNotFoundError", "is not an aclImdb folder: missing"),
    (["--bert_dir={bert}", "--imdb_dir={imdb}", "--algorithm=fixmatch"], "ConfigError", "runs --algorithm=uda only"),
    (["--bert_dir={bert}", "--imdb_dir={imdb}", "--aug=bt-0.9"], "ConfigError", "needs --bt_file"),
    (["--bert_dir={bert}", "--imdb_dir={imdb}", "--aug=eda"], "ConfigError", "--aug must be bt-<temperature>"),
    (["--bert_dir={bert}", "--imdb_dir={imdb}", "--max_seq_length=1024"], "ConfigError", "--max_seq_length"),
    (["--bert_dir={bert}", "--imdb_dir={imdb}", "--ood_fraction=0.5"], "ConfigError",
     "--ood_fraction does not apply to --dataset=imdb: remove it."),
])
def test_bad_or_missing_inputs_are_refused_before_reading(text_inputs, tmp_path, args, error, message):
    bert_dir, imdb_dir, _ = text_inputs
    args = [a.format(tmp=tmp_path, bert=bert_dir, imdb=imdb_dir) for a in args]
    if not any(a.startswith("--aug") for a in args):
        args.append("--aug=tf_idf-0.2")
    with pytest.raises(Exception) as caught:
        build.check_inputs(config_of(["--algorithm=uda", "--dataset=imdb", *args]))
    assert type(caught.value).__name__ == error and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("case, message", [
    ("no_bert", "--dataset=imdb needs --bert_dir"),
    ("bt_lines", "has 2 lines but the unlabeled set has 68 reviews"),
])
def test_missing_inputs_stop_the_run_in_one_line(text_inputs, listed_inputs, tmp_path, case, message):
    bert_dir, imdb_dir, cache = text_inputs
    bt_file = tmp_path / "para_0.txt"
    bt_file.write_text("one\ntwo\n")
    args = {"no_bert": [f"--imdb_dir={imdb_dir}", "--aug=tf_idf-0.2"],  # (the default --aug=bt-0.9 needs --bt_file)
            "bt_lines": [f"--bert_dir={bert_dir}", f"--imdb_dir={listed_inputs[0]}", f"--bt_file={bt_file}"]}[case]
    assert message in refusal("experiments.train", ["--dataset=imdb", *args, f"--text_cache_dir={cache}",
                                                    f"--train_dir={tmp_path / 'run'}"])
    assert not (tmp_path / "run" / "ckpt").exists()
