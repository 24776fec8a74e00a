#!/usr/bin/env bash
# The weighting rules against learned λ in a regime with headroom: FixMatch on digits, all 10 classes at 10,
# 20 and 40 labels, then 6 classes in distribution (0-5) at 12 and 24 labels with classes 6-9 in the unlabeled
# set at F = 0.5; 10 paired seeds each, every hyper-parameter chosen on validation. First the base algorithm's
# accuracy against the label count (its 10/20/40 runs are the study's base runs). The validation set holds 5
# examples per class (50, or 30 with 6 classes: docs/design/weighting_rules.md says why); V' is all of it.
# The study JSONs go to results/weighting_rules/, every run to the run cache results/runs/ (see lib.sh).
# Run from a worktree frozen at one commit:  bash experiments/sweeps/weighting_rules.sh
source "$(dirname "$0")/lib.sh"
OUT=results/weighting_rules
mkdir -p "$OUT"
TEN=(--dataset=digits --algorithm=fixmatch --num_validation=50 --validation_batch=50)
SIX=(--dataset=digits --algorithm=fixmatch --num_validation=30 --validation_batch=30 --ood_classes=6,7,8,9
     --ood_fraction=0.5)

study() {  # study NAME MODULE FLAGS...: one setting, every seed
  local name=$1 module=$2; shift 2
  "$PY" -m "$module" --seeds="$SEEDS" --json_out="$OUT/$name.json" --plot_dir="$OUT" --run_cache="$RUN_CACHE" \
    "$@" > "out/logs/$name.log" 2>&1
  local rc=$?  # before any other command
  echo "$(date +%T) $name rc=$rc"
  return $rc
}
rules() { local name=$1; shift; study "$name" experiments.weighting_rules "$@"; }

lane_a() {
  study label_curve_digits experiments.label_curve "${TEN[@]}" --label_counts=10,20,40,80,160
  rules weighting_rules_digits_10 "${TEN[@]}" --num_labeled=10
  rules weighting_rules_digits_40 "${TEN[@]}" --num_labeled=40
  rules weighting_rules_digits_ood_12 "${SIX[@]}" --num_labeled=12
}
lane_b() {
  rules weighting_rules_digits_20 "${TEN[@]}" --num_labeled=20
  rules weighting_rules_digits_ood_24 "${SIX[@]}" --num_labeled=24
}
case "${1:-both}" in
  a) lane_a ;;
  b) lane_b ;;
  *) lane_a & lane_b & wait ;;
esac
