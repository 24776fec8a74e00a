# Sourced by the sweep scripts. One TF thread per process: a run then repeats exactly
# (docs/design/studies_and_statistics.md, "Reproducibility"), and two lanes side by side overlap one lane's
# single-threaded tracing with the other's training.
# Logs go to out/logs/NAME.log; each finished setting prints one line "TIME NAME rc=CODE".
# Every run is kept in the run cache results/runs/ (tracked: a sweep spans sessions, and a session's out/ does not
# survive it), one record per run named by the hash of its configuration: a restarted sweep reads the finished
# runs instead of training them again, and a run that two settings share (the base run of every hypergradient
# variant, which hashes its Λ-step fields at their defaults) is trained once.
set -u
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-10}
RUN_CACHE=${RUN_CACHE:-results/runs}
mkdir -p out/logs
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2

digits_compare() {  # digits_compare OUT_DIR NAME FLAGS...: FixMatch on digits, every seed, a tuned λ as control
  local out=$1 name=$2; shift 2
  mkdir -p "$out"
  "$PY" -m experiments.compare --algorithm=fixmatch --dataset=digits --seeds="$SEEDS" \
    --tuned_lambda_grid=0.1,0.3,1,3 --json_out="$out/$name.json" --run_cache="$RUN_CACHE" "$@" \
    > "out/logs/$name.log" 2>&1
  local rc=$?  # before any other command (a $(date) in the echo would reset $?)
  echo "$(date +%T) $name rc=$rc"
  return $rc
}
