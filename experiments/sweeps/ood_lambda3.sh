#!/usr/bin/env bash
# A follow-up the OOD sweep suggested (issue #12 part 3, "anything else the measurements suggest"): the single λ
# tuned on validation was 3 on most seeds (on every seed with noise images), and ours, which starts every λ_u at
# 1, lost to it. Here every method starts from λ = 3 (--weight_init=3): base is FixMatch with λ = 3, ours learns
# per-example weights from 3, reversed is its control; the tuned λ is chosen again from the same grid. Ours − base
# then asks whether per-example weights add anything on top of the scale validation prefers.
# 10 paired seeds per setting, saved under results/ood/ (tracked); a restart skips saved seeds.
# Run from the repository root of a worktree frozen at one commit:  bash experiments/sweeps/ood_lambda3.sh
set -u
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-10}
OUT=results/ood
mkdir -p "$OUT" out/logs
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2

compare() {  # compare NAME FLAGS...: one setting, every seed
  local name=$1; shift
  "$PY" -m experiments.compare --algorithm=fixmatch --dataset=digits --seeds="$SEEDS" --weight_init=3 \
    --tuned_lambda_grid=0.1,0.3,1,3 --json_out="$OUT/$name.json" --seed_dir="$OUT/${name}_seeds" "$@" \
    > "out/logs/$name.log" 2>&1
  echo "$(date +%T) $name rc=$?"
}

compare ood_noise_0.5_lambda3 --ood_noise --ood_fraction=0.5 &
compare ood_0.5_lambda3 --ood_classes=6,7,8,9 --ood_fraction=0.5 &
wait
