#!/usr/bin/env bash
# A follow-up the OOD sweep suggested: the single λ
# tuned on validation was 3 on most seeds (on every seed with noise images), and ours, which starts every λ_u at
# 1, lost to it. Here every method starts from λ = 3 (--weight_init=3): base is FixMatch with λ = 3, ours learns
# per-example weights from 3, reversed is its control; the tuned λ is chosen again from the same grid. Ours − base
# then asks whether per-example weights add anything on top of the scale validation prefers.
# 10 paired seeds per setting; the study JSONs go to results/ood/, every run to the run cache results/runs/ (both
# tracked); a restart reads the finished runs from the cache.
# Run from the repository root of a worktree frozen at one commit:  bash experiments/sweeps/ood_lambda3.sh
source "$(dirname "$0")/lib.sh"
compare() { digits_compare results/ood "$@" --weight_init=3; }  # compare NAME FLAGS...: every seed from λ = 3

compare ood_noise_0.5_lambda3 --ood_noise --ood_fraction=0.5 &
compare ood_0.5_lambda3 --ood_classes=6,7,8,9 --ood_fraction=0.5 &
wait
