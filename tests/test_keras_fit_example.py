"""examples/keras_fit.py runs and reports the λ it learned; docs/library.md shows it as it is."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_keras_fit_example_runs_and_moves_lambda():
    # PYTHONPATH: this checkout's package, whichever one the environment has installed.
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, os.path.join("examples", "keras_fit.py")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    stats = re.search(r"λ over 1300 unlabeled examples: mean ([\d.]+), min ([\d.]+), max ([\d.]+); "
                      r"(\d+) moved by 10 Λ steps", result.stdout)
    assert stats, result.stdout[-2000:]
    mean, low, high, moved = float(stats[1]), float(stats[2]), float(stats[3]), int(stats[4])
    assert low < mean < high and low < 1.0 < high and moved > 0
    assert re.search(r"test accuracy: 0\.[5-9]", result.stdout), result.stdout[-2000:]


def test_the_library_document_shows_the_example_as_it_is():
    with open(os.path.join(ROOT, "docs", "library.md"), encoding="utf-8") as f:
        readme = f.read()
    with open(os.path.join(ROOT, "examples", "keras_fit.py"), encoding="utf-8") as f:
        example = f.read()
    assert f"```python\n{example}```\n" in readme
