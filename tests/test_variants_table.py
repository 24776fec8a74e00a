"""experiments.variants_table: hypergradient variants paired by seed against the paper's method, on hand-made
study JSONs with hand-computed values."""
import json
import os
import subprocess
import sys

import pytest

from experiments import variants_table
from influence_ssl.runs.config import RunConfig
from influence_ssl.studies.results import FORMAT
from influence_ssl.trainer import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_json(path, seeds, ours, pl, tuned, reversed_, config=None, auroc_per_seed=None, study="synthetic"):
    """A synthetic study JSON; its values listed in the order of `seeds` (AUROCs in sorted seed order)."""
    baseline, tuned_name = variants_table.BASELINES[study]
    methods = {name: {"values": values} for name, values in [
        ("ours", ours), (baseline, pl), (tuned_name, tuned), ("ours_reversed", reversed_)] if values is not None}
    auroc_per_seed = auroc_per_seed or [0.7] * len(seeds)
    path.write_text(json.dumps({
        "format": FORMAT, "study": study, "seeds": seeds, "methods": methods, "paired": {},
        "weights": {"auroc_low_weight_vs_wrong": sum(auroc_per_seed) / len(seeds),
                    "auroc_low_weight_vs_wrong_per_seed": auroc_per_seed},
        "config": json.loads(RunConfig().replace(dataset="moons", **(config or {})).dumps())}))
    return str(path)


def rows_of(table, variant):
    return {row[1]: row for row in table.rows if row[0] == variant}


def test_variants_are_paired_by_seed_against_the_papers_method(tmp_path):
    paper = synthetic_json(tmp_path / "paper.json", [0, 1, 2], [0.80, 0.90, 0.70], [0.78, 0.90, 0.71],
                           [0.79, 0.91, 0.70], [0.78, 0.89, 0.71], auroc_per_seed=[0.70, 0.60, 0.80])
    # The variant lists its seeds in another order and has one seed more: only 0, 1, 2 are paired, by seed.
    variant = synthetic_json(tmp_path / "v.json", [2, 0, 1, 3], [0.72, 0.81, 0.93, 0.5], [0.71, 0.78, 0.90, 0.5],
                             [0.70, 0.79, 0.91, 0.5], [0.70, 0.78, 0.90, 0.5],
                             config={"hypergradient_normalization": "class"},
                             auroc_per_seed=[0.80, 0.75, 0.90, 0.10])  # seeds 0, 1, 2, 3
    table = variants_table.build([paper, variant])
    assert table.notes[0].startswith("3 paired seeds (0, 1, 2)")
    assert "Holm across this table's 8 comparisons" in table.notes[-1]  # 3 for the paper's method, 5 for the variant
    first = rows_of(table, "paper's method (paper.json)")
    assert list(first) == ["ours: test error (%)", "ours − pseudo_label", "ours − pseudo_label_tuned",
                           "reversed − pseudo_label"]
    assert first["ours: test error (%)"][2] == "20.00 ± 10.00"
    rows = rows_of(table, "hypergradient_normalization=class")
    assert rows["ours: test error (%)"][2] == "18.00 ± 10.54"  # errors 19, 7, 28 on seeds 0, 1, 2
    # ours − paper's ours per seed: +1, +3, +2 points -> mean +2.00, sample std 1.00, 3 wins; p = 2/2^3.
    cells = rows["ours − paper's ours"][6:]
    assert cells[:4] == ["paper's ours", "+2.00 ± 1.00", "0.25", "3/0/0"]
    assert cells[4].startswith("no detectable difference (+2.00")
    # ours − Pseudo-Label of the same file: +3, +3, +1 -> +2.33, sample std 1.15.
    assert rows["ours − pseudo_label"][7:10] == ["+2.33 ± 1.15", "0.25", "3/0/0"]
    assert rows["reversed − pseudo_label"][7:10] == ["-0.33 ± 0.58", "1", "0/2/1"]  # 0, 0, -1
    # AUROC by seed: 0.80, 0.75, 0.90 against 0.70, 0.60, 0.80 -> +0.10, +0.15, +0.10: +0.117 ± 0.029.
    assert rows["AUROC(−λ → wrong) − paper's (AUROC, not points)"][7:10] == ["+0.117 ± 0.029", "0.25", "3/0/0"]


def test_a_study_without_a_tuned_lambda_has_no_row_for_it(tmp_path):
    paper = synthetic_json(tmp_path / "p.json", [0, 1], [0.8, 0.9], [0.7, 0.8], None, [0.7, 0.8], study="compare")
    cg = synthetic_json(tmp_path / "cg.json", [0, 1], [0.8, 0.9], [0.7, 0.8], None, [0.7, 0.8], study="compare",
                        config={"influence": "cg", "influence_scope": "last_block"})
    rows = rows_of(variants_table.build([paper, cg]), "influence=cg, influence_scope=last_block")
    assert list(rows) == ["ours: test error (%)", "ours − paper's ours", "ours − base", "reversed − base",
                          "AUROC(−λ → wrong) − paper's (AUROC, not points)"]


def test_unknown_mixed_or_unpaired_files_are_refused(tmp_path):
    paper = synthetic_json(tmp_path / "p.json", [0], [0.8], [0.8], [0.8], [0.8])
    old = tmp_path / "o.json"
    old.write_text(json.dumps({"format": "influence_ssl.synthetic/1", "seeds": [0], "methods": {}}))
    with pytest.raises(ConfigError, match="format 'influence_ssl.synthetic/1'"):
        variants_table.build([paper, str(old)])
    compare = synthetic_json(tmp_path / "c.json", [0], [0.8], [0.8], [0.8], [0.8], study="compare")
    with pytest.raises(ConfigError, match="Mixed studies"):
        variants_table.build([paper, compare])
    elsewhere = synthetic_json(tmp_path / "e.json", [5], [0.8], [0.8], [0.8], [0.8])
    with pytest.raises(ConfigError, match="share no seed"):
        variants_table.build([paper, elsewhere])


def test_the_command_line_prints_and_writes_markdown(tmp_path):
    paper = synthetic_json(tmp_path / "p.json", [0, 1], [0.8, 0.9], [0.7, 0.8], [0.7, 0.8], [0.7, 0.8])
    variant = synthetic_json(tmp_path / "v.json", [0, 1], [0.8, 0.9], [0.7, 0.8], [0.7, 0.8], [0.7, 0.8],
                             config={"influence_view": "weak"})
    r = subprocess.run([sys.executable, "-m", "experiments.variants_table", paper, variant,
                        f"--markdown={tmp_path}/t.md"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "influence_view=weak" in r.stdout
    assert "| influence_view=weak | ours − pseudo_label |" in (tmp_path / "t.md").read_text()
