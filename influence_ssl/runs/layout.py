"""Where committed results live (no TensorFlow here: the study runner reads it before any run starts)."""

# Tracked by git but written by the runs themselves: a result rewritten there does not make a checkout dirty.
RESULTS_DIR = "results"
