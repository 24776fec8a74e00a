"""Where committed results live: one definition for provenance (a result rewritten there does not make the
checkout dirty) and for experiments.reproduce (which writes them there)."""

RESULTS_DIR = "results"  # tracked by git, but written by the runs themselves
