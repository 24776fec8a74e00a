"""experiments.label_curve on the fake training: one base run per label count and seed, the labeled batch
unchanged, the runs shared with other studies through the cache, the JSON and the picture."""
import json

import pytest
from conftest import arrays, record, refusal, run_main

from influence_ssl.studies import report

MODULE = "experiments.label_curve"


def fake_curve(config):
    """Accuracy 0.5 + 0.001 · labels + 0.01 · seed."""
    return record(0.5, 0.5 + 0.001 * config.data.num_labeled + 0.01 * config.seed), arrays(config.seed)


def test_one_base_run_per_count_and_seed_with_the_batch_unchanged(tmp_path, fake_training):
    fake = fake_training(fake_curve)
    stdout = run_main(MODULE, ["--dataset=digits", "--algorithm=fixmatch", "--label_counts=40,10,20", "--seeds=2",
                               f"--json_out={tmp_path}/c.json", f"--plot_dir={tmp_path}/plots",
                               f"--run_cache={tmp_path}/cache"])
    data = json.loads((tmp_path / "c.json").read_text())
    assert (data["study"], data["label_counts"], data["seeds"]) == ("label_curve", [10, 20, 40], [0, 1])
    assert sorted((c.data.num_labeled, c.seed) for c in fake.trained) == [(n, s) for n in (10, 20, 40) for s in (0, 1)]
    assert {c.train.weighting for c in fake.trained} == {"none"}
    assert {c.train.labeled_batch for c in fake.trained} == {32}  # the digits preset's, at 10 labels too
    assert data["methods"]["base@20"]["values"] == pytest.approx([0.52, 0.53])
    assert list(data["paired"]) == ["base@20 - base@10", "base@40 - base@20"]
    assert data["paired"]["base@40 - base@20"]["mean"] == pytest.approx(0.02)
    assert report.kind_of("c.json", data) == "label_curve"
    assert "base@40" in stdout and (tmp_path / "plots" / "c.png").stat().st_size > 5_000
    # The same runs again come from the cache.
    run_main(MODULE, ["--dataset=digits", "--algorithm=fixmatch", "--label_counts=10", "--seeds=2",
                      f"--json_out={tmp_path}/d.json", "--plot_dir=", f"--run_cache={tmp_path}/cache"])
    assert len(fake.trained) == 6


@pytest.mark.parametrize("args, message", [
    (["--num_labeled=20"], "--label_counts sets the labeled-set sizes: remove --num_labeled."),
    (["--label_counts=10,0"], "--label_counts must hold finite values >= 1"),
])
def test_a_bad_flag_is_refused_in_one_line(tmp_path, fake_training, args, message):
    fake = fake_training(fake_curve)
    assert message in refusal(MODULE, [*args, f"--json_out={tmp_path}/x.json", f"--run_cache={tmp_path}/c"])
    assert not fake.trained


def test_the_label_counts_flag_is_shared_with_the_ablations_in_one_process(tmp_path, fake_training):
    """experiments.ablate defines --label_counts too: both entry points in one process (as in a test worker)
    must not define it twice; without a value the curve runs its default counts."""
    import experiments.ablate  # noqa: F401
    import experiments.label_curve  # noqa: F401

    fake = fake_training(fake_curve)
    run_main(MODULE, ["--dataset=digits", "--seeds=1", f"--json_out={tmp_path}/c.json", "--plot_dir=",
                      f"--run_cache={tmp_path}/cache"])
    assert sorted(c.data.num_labeled for c in fake.trained) == [10, 20, 40, 80, 160]
