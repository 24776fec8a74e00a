#!/usr/bin/env bash
# The hypergradient variants on digits with half the unlabeled set out of distribution
# (FixMatch, classes 6-9 held out, F = 0.5): 10 paired seeds of ours and its reversed control per variant. Base
# and the single λ tuned on validation, which no variant changes (a run without learned weights hashes its Λ-step
# fields at their defaults), are the OOD sweep's runs in the run cache results/runs/ (experiments/sweeps/
# ood_digits.sh), so each seed trains 2 runs, not 6, once that sweep has run (without it, the variants train them).
# The study JSONs go to results/variants/ (tracked); a restart reads the finished runs from the cache.
# Run from the repository root of a worktree frozen at one commit:  bash experiments/sweeps/variants_ood.sh
# The table:  python -m experiments.variants_table results/ood/ood_0.5.json results/variants/ood_0.5_*.json
source "$(dirname "$0")/lib.sh"
variant() {  # variant NAME FLAGS...: ours and reversed with the variant's flags, every seed
  local name=ood_0.5_$1; shift
  digits_compare results/variants "$name" --ood_classes=6,7,8,9 --ood_fraction=0.5 "$@"
}

lane_a() {
  variant batch --hypergradient_normalization=batch
  variant example --hypergradient_normalization=example
  variant softplus --weight_parametrization=softplus
  variant temperature_2 --influence_target_temperature=2
  variant cg_last_block --influence=cg --influence_scope=last_block
}
lane_b() {
  variant class --hypergradient_normalization=class
  variant weak_view --influence_view=weak
  variant sigmoid --weight_parametrization=sigmoid
  variant temperature_0.5 --influence_target_temperature=0.5
}
lane_a & lane_b & wait
