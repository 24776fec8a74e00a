"""A one-line progress report: step, steps/s, ETA and the scalars of the moment."""
import sys
import time


class ProgressLog:
    def __init__(self, total_steps, start_step, enabled=True, stream=None):
        self.total_steps = total_steps
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self._last_step, self._last_time = start_step, time.perf_counter()

    def log(self, step, scalars):
        now = time.perf_counter()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        if not self.enabled:
            return
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        parts = [f"step {step}/{self.total_steps}", f"{rate:.0f} steps/s", f"ETA {eta:.0f}s"]
        parts += [f"{k} {v:.4g}" for k, v in scalars.items()]
        print(" | ".join(parts), file=self.stream, flush=True)
