#!/usr/bin/env bash
# The OOD sweep of issue #12 part 2: FixMatch on digits, classes 6-9 held out of the labeled, validation and
# test sets and put into the unlabeled set at fraction F; 10 paired seeds of base, ours, reversed and a single
# λ tuned on validation per setting. Each finished seed is saved under results/ood/ (tracked: a sweep spans
# sessions, and a session's out/ does not survive it); a restart skips saved seeds.
# Run from the repository root (better: from a worktree frozen at one commit, since AutoGraph re-reads the
# source while a sweep runs):  bash experiments/sweeps/ood_digits.sh
# Two lanes run side by side with one TF thread each, so that one lane's single-threaded tracing (~10 s of a
# ~40 s digits run) overlaps the other's training; the measured time per seed is in BUILD_NOTES.md.
set -u
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-10}
OUT=results/ood
mkdir -p "$OUT" out/logs
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2

compare() {  # compare NAME FLAGS...: one setting, every seed
  local name=$1; shift
  "$PY" -m experiments.compare --algorithm=fixmatch --dataset=digits --seeds="$SEEDS" \
    --tuned_lambda_grid=0.1,0.3,1,3 --json_out="$OUT/$name.json" --seed_dir="$OUT/${name}_seeds" "$@" \
    > "out/logs/$name.log" 2>&1
  echo "$(date +%T) $name rc=$?"
}

lane_a() {
  compare ood_0.5 --ood_classes=6,7,8,9 --ood_fraction=0.5
  compare ood_0.25 --ood_classes=6,7,8,9 --ood_fraction=0.25
  compare ood_0 --ood_classes=6,7,8,9 --ood_fraction=0
}
lane_b() {
  compare ood_0.75 --ood_classes=6,7,8,9 --ood_fraction=0.75
  compare ood_noise_0.5 --ood_noise --ood_fraction=0.5
}
lane_a & lane_b & wait
