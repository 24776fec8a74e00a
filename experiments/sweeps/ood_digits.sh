#!/usr/bin/env bash
# The OOD sweep: FixMatch on digits, classes 6-9 held out of the labeled, validation and
# test sets and put into the unlabeled set at fraction F; 10 paired seeds of base, ours, reversed and a single
# λ tuned on validation per setting. The study JSONs go to results/ood/, every run to the run cache results/runs/
# (both tracked: see lib.sh); a restart reads the finished runs from the cache.
# Run from the repository root (better: from a worktree frozen at one commit, since AutoGraph re-reads the
# source while a sweep runs):  bash experiments/sweeps/ood_digits.sh
# Two lanes run side by side (see lib.sh); each run's time is in its record in results/runs/ ("seconds").
source "$(dirname "$0")/lib.sh"
compare() { digits_compare results/ood "$@"; }  # compare NAME FLAGS...: one setting, every seed

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
