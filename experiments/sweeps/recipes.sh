#!/usr/bin/env bash
# The paper's recipe against the authors' code, switch by switch (experiments.ablate --study=recipe): moons
# (Pseudo-Label on the MLP) and digits (FixMatch with CTAugment, so that the frozen-CTA switch means something),
# 10 paired seeds each, with base, a tuned single λ and the reversed controls. The study JSONs go to
# results/recipes/, every run to the run cache results/runs/ (both tracked: see lib.sh).
# Run from a worktree frozen at one commit:  bash experiments/sweeps/recipes.sh
source "$(dirname "$0")/lib.sh"
mkdir -p results/recipes

recipe() {  # recipe NAME FLAGS...: the recipe study of one setting, every seed
  local name=$1; shift
  "$PY" -m experiments.ablate --study=recipe --seeds="$SEEDS" --json_out="results/recipes/$name.json" \
    --plot_dir=results/recipes --run_cache="$RUN_CACHE" "$@" > "out/logs/$name.log" 2>&1
  local rc=$?  # before any other command
  echo "$(date +%T) $name rc=$rc"
  return $rc
}

recipe recipe_moons --dataset=moons &
recipe recipe_digits --dataset=digits --algorithm=fixmatch --augment=cta &
wait
