"""experiments.variants_table: paired differences against the paper's method, by hand-computed values."""
import json

import pytest

from experiments import variants_table
from influence_ssl.trainer import ConfigError


def synthetic_json(path, seeds, ours, pl, tuned, reversed_, flags=None, auroc=0.7):
    methods = {name: {"test_accuracy": values} for name, values in [
        ("ours", ours), ("pseudo_label", pl), ("pseudo_label_tuned", tuned), ("ours_reversed", reversed_)]}
    path.write_text(json.dumps({"format": "influence_ssl.synthetic/1", "seeds": seeds, "methods": methods,
                                "weights": {"auroc_low_weight_vs_wrong": auroc,
                                            "auroc_low_weight_vs_wrong_per_seed": [auroc] * len(seeds)},
                                "flags": flags or {}}))
    return str(path)


def test_variants_are_paired_by_seed_against_the_papers_method(tmp_path):
    paper = synthetic_json(tmp_path / "paper.json", [0, 1, 2], [0.80, 0.90, 0.70], [0.78, 0.90, 0.71],
                           [0.79, 0.91, 0.70], [0.78, 0.89, 0.71],
                           flags={"hypergradient_normalization": "none", "influence_scope": "head"})
    # The variant's file lists its seeds in another order and has one seed more: only 0, 1, 2 are paired.
    variant = synthetic_json(tmp_path / "v.json", [2, 0, 1, 3], [0.72, 0.81, 0.93, 0.5], [0.71, 0.78, 0.90, 0.5],
                             [0.70, 0.79, 0.91, 0.5], [0.70, 0.78, 0.90, 0.5],
                             flags={"hypergradient_normalization": "class", "influence_scope": "head"}, auroc=0.8)
    header, rows, note = variants_table.table([paper, variant])
    assert note.startswith("3 paired seeds (0, 1, 2)")
    assert rows[1][0] == "hypergradient_normalization=class"
    # ours − paper's ours per seed: +1, +3, +2 points -> mean +2.00, sample std 1.00, 3 wins.
    assert rows[1][2] == "+2.00 ± 1.00 (3/0/0)"
    # ours − Pseudo-Label of the same file: +3, +3, +1 -> +2.33, sample std 1.15.
    assert rows[1][3] == "+2.33 ± 1.15 (3/0/0)"
    assert rows[1][6].startswith("0.800")
    assert rows[0][2] == "—" and rows[0][7] == "—"
    assert rows[1][8] == "—"  # seeds listed differently: per-seed AUROCs are not paired blindly
    same = synthetic_json(tmp_path / "s.json", [0, 1, 2], [0.8, 0.9, 0.7], [0.8, 0.9, 0.7], [0.8, 0.9, 0.7],
                          [0.8, 0.9, 0.7], auroc=0.75)
    assert variants_table.table([paper, same])[1][1][8] == "+0.050 ± 0.000 (higher on 3/3)"


def test_unknown_or_mixed_formats_are_refused(tmp_path):
    paper = synthetic_json(tmp_path / "p.json", [0], [0.8], [0.8], [0.8], [0.8])
    other = tmp_path / "o.json"
    other.write_text(json.dumps({"format": "influence_ssl.ablation/1", "seeds": [0], "methods": {}}))
    with pytest.raises(ConfigError, match="format"):
        variants_table.table([paper, str(other)])
