"""The paper's numbers (Ren, Yeh, Schwing, NeurIPS 2020), each with its table or figure and row.

The only numbers typed in by hand anywhere in the report; everything else is read from result JSONs.
Error rates in %, as printed in the paper ("mean ± std" kept as (mean, std); std None where none is given).
"""

SOURCE = "Ren, Yeh, Schwing, 'Not All Unlabeled Data are Equal', NeurIPS 2020"

# Table 1: test error (%) of WRN-28-2; ours over 5 runs. Keyed by (row, dataset, labels).
TABLE1_ROWS = ("UDA", "Ours (UDA)", "FixMatch (CTA)", "FixMatch* (CTA)", "Ours (FixMatch, CTA)")
TABLE1 = {
    ("UDA", "cifar10", 250): (8.76, 0.90), ("UDA", "cifar10", 500): (6.68, 0.24),
    ("UDA", "cifar10", 1000): (5.87, 0.13), ("UDA", "cifar10", 2000): (5.51, 0.21),
    ("UDA", "cifar10", 4000): (5.29, 0.25),
    ("UDA", "svhn", 250): (2.76, 0.17), ("UDA", "svhn", 500): (2.70, 0.09), ("UDA", "svhn", 1000): (2.55, 0.09),
    ("UDA", "svhn", 2000): (2.57, 0.09), ("UDA", "svhn", 4000): (2.47, 0.15),
    ("Ours (UDA)", "cifar10", 250): (5.53, 0.17), ("Ours (UDA)", "cifar10", 500): (5.38, 0.23),
    ("Ours (UDA)", "cifar10", 1000): (5.17, 0.16), ("Ours (UDA)", "cifar10", 2000): (5.14, 0.17),
    ("Ours (UDA)", "cifar10", 4000): (4.75, 0.28),
    ("Ours (UDA)", "svhn", 250): (2.45, 0.08), ("Ours (UDA)", "svhn", 500): (2.39, 0.04),
    ("Ours (UDA)", "svhn", 1000): (2.33, 0.06), ("Ours (UDA)", "svhn", 2000): (2.32, 0.06),
    ("Ours (UDA)", "svhn", 4000): (2.35, 0.05),
    ("FixMatch (CTA)", "cifar10", 250): (5.07, 0.33), ("FixMatch (CTA)", "cifar10", 4000): (4.31, 0.15),
    ("FixMatch (CTA)", "svhn", 250): (2.64, 0.64), ("FixMatch (CTA)", "svhn", 4000): (2.36, 0.19),
    ("FixMatch* (CTA)", "cifar10", 250): (5.23, 0.28), ("FixMatch* (CTA)", "cifar10", 1000): (4.82, 0.09),
    ("FixMatch* (CTA)", "cifar10", 4000): (4.48, 0.15),
    ("FixMatch* (CTA)", "svhn", 250): (2.77, 0.73), ("FixMatch* (CTA)", "svhn", 1000): (2.41, 0.14),
    ("FixMatch* (CTA)", "svhn", 4000): (2.17, 0.08),
    ("Ours (FixMatch, CTA)", "cifar10", 250): (5.05, 0.12), ("Ours (FixMatch, CTA)", "cifar10", 1000): (4.68, 0.14),
    ("Ours (FixMatch, CTA)", "cifar10", 4000): (4.35, 0.06),
    ("Ours (FixMatch, CTA)", "svhn", 250): (2.63, 0.23), ("Ours (FixMatch, CTA)", "svhn", 1000): (2.34, 0.15),
    ("Ours (FixMatch, CTA)", "svhn", 4000): (2.15, 0.03),
}

# Table 2: IMDb test error (%), max sequence length 128, 20 labels; UDA and ours over 3 runs.
TABLE2 = {"Supervised": (39.40, None), "UDA": (8.98, 0.26), "Ours": (8.51, 0.14)}

# Table 3: validation error (%) on CIFAR-10, 4000 labels, UDA, by (N, η).
TABLE3 = {(30, 0.01): 5.13, (300, 0.01): 4.59, (100, 0.01): 3.42, (100, 0.1): 6.16, (100, 0.001): 4.10}

# Fig. 3 (Sec. 4.3 text): final test error (%) on CIFAR-10 (UDA) per influence approximation. The paper gives
# no CG number.
FIG3 = {"exact_head": 4.43, "identity_last_block": 4.51, "neumann_last_block": 4.85}

# Fig. 4: the paper prints these only as plots; its text gives the ordering.
FIG4 = {
    "weighting": "per-example λ below a single learned λ at every label count (CIFAR-10, 3 runs)",
    "optimizer": "validation error: M-Adam best, then SGD, then Adam (CIFAR-10)",
    "validation_size": "test error falls from 64 to 5000 validation examples at 250 and 4000 labels (CIFAR-10, 3 runs)",
}

# Sec. 4.4: seconds (V100 16 GB), WRN-28-2, batches 64 / 256 (320 for the Λ step) / 320.
SEC44 = {
    "per_example_gradients_seconds": {"fast": 0.94, "loop": 18.17},  # vmap: out of memory on 16 GB
    "loop_vs_fast": 19.3,
    "lambda_step_seconds": {"exact": 0.455, "identity": 0.399},
    "neumann_last_block_vs_exact": 4.6,
    "lambda_step_memory_gb": {"exact": 9.0, "neumann_last_block": 15.8},
}
