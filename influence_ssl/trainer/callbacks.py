"""Callbacks of Trainer.run: checkpoints, the evaluation history, the progress line, TensorBoard, divergence.

Trainer.run calls each hook on every callback, in list order:
  restore(trainer)                  first of all: bring back saved state (the checkpoint of train_dir)
  on_train_begin(trainer)           the state is restored: trainer.step is the last step taken
  on_outer_step(trainer, k)         after the k-th Λ step (k = 1, 2, ...)
  on_step_end(trainer, step, logs)  after θ step `step` (1-based) and its Λ step; logs is {name: float} at a
                                    log or evaluation step (a callback may add to it), None at other steps
  on_train_end(trainer)             after the last step, before the results are made
"""
import json
import os

import tensorflow as tf

from influence_ssl.trainer.progress import ProgressLog


class TrainingDiverged(RuntimeError):
    """A loss or a hypergradient became NaN/Inf. The last checkpoint is left as it was."""


class CheckpointError(RuntimeError):
    """The checkpoint in the train directory cannot be read."""


def is_due(step, every, last_step):
    """Whether something done every `every` steps, and at the last step, is done after step `step`."""
    return step % every == 0 or step == last_step


class LoopCallback:
    """Does nothing at every hook; subclasses override the hooks they need (module docstring)."""

    def restore(self, trainer):
        pass

    def on_train_begin(self, trainer):
        pass

    def on_outer_step(self, trainer, k):
        pass

    def on_step_end(self, trainer, step, logs):
        pass

    def on_train_end(self, trainer):
        pass


class OuterStepCall(LoopCallback):
    """Calls fn(trainer, k) after the k-th Λ step: the Trainer's `callbacks` argument."""

    def __init__(self, fn):
        self.fn = fn

    def on_outer_step(self, trainer, k):
        self.fn(trainer, k)


def raise_if_diverged(trainer, kept_checkpoint):
    """TrainingDiverged if a θ or Λ step was not finite (trainer.bad_step >= 0)."""
    bad = int(trainer.bad_step.numpy())
    if bad >= 0:
        raise TrainingDiverged(
            f"A loss or hypergradient became NaN/Inf at step {bad} (for a hypergradient, the last-layer "
            "Hessian may also have failed to factorize: see --influence_damping); the step was not applied and "
            f"training stopped. Last good checkpoint: {kept_checkpoint or 'none (no --train_dir)'}. "
            "Lower the learning rates or check the data.")


class Checkpoints(LoopCallback):
    """Resumes from train_dir's latest checkpoint; saves trainer.checkpoint every checkpoint_every steps and
    at the last step (never after a non-finite step); the chief writes config.json.

    Under MultiWorkerMirroredStrategy every worker takes part in a save: the chief writes train_dir/ckpt,
    the others a scratch directory that is removed right after. Every worker restores from the chief's."""

    def __init__(self, train_dir):
        self.train_dir = train_dir
        self.manager = None

    @property
    def latest(self):
        """The path of the last checkpoint saved or restored, or None."""
        return self.manager.latest_checkpoint if self.manager else None

    def restore(self, trainer):
        os.makedirs(self.train_dir, exist_ok=True)
        config_path = os.path.join(self.train_dir, "config.json")
        self.manager = tf.train.CheckpointManager(trainer.checkpoint, os.path.join(self.train_dir, "ckpt"),
                                                  max_to_keep=3)
        if self.manager.latest_checkpoint:
            trainer.config.check_resumable_from(self._saved_config(config_path))
            try:
                trainer.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            except Exception as e:  # noqa: BLE001 -- TF raises OpError, IndexError, ValueError, ...
                raise CheckpointError(
                    f"Cannot restore {self.manager.latest_checkpoint}: {type(e).__name__}: {str(e).splitlines()[0]}. "
                    "The file may be corrupt or from another model; move it away or use a new "
                    "--train_dir.") from None
            if trainer.verbose:
                print(f"Resumed from {self.manager.latest_checkpoint} at step {int(trainer.step.numpy())}.",
                      flush=True)
        if not trainer.is_chief:
            self.manager = tf.train.CheckpointManager(trainer.checkpoint, self._scratch_dir(trainer), max_to_keep=1)
            return
        # Written whole (rename), as other workers may be reading it.
        with open(config_path + ".tmp", "w") as f:
            f.write(trainer.config.dumps())
        os.replace(config_path + ".tmp", config_path)

    def _saved_config(self, config_path):
        """The configuration a checkpoint in train_dir was written with; CheckpointError if there is none."""
        what = (f"{self.train_dir} holds a checkpoint ({self.manager.latest_checkpoint}) but {{}}: it is not a "
                "run of this project, or it is corrupt. Move it away or use a new --train_dir.")
        if not os.path.exists(config_path):
            raise CheckpointError(what.format("no config.json"))
        try:
            with open(config_path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(what.format(f"its config.json cannot be read ({e})")) from None
        if not isinstance(saved, dict) or "steps" not in saved:
            raise CheckpointError(what.format("its config.json is not a TrainConfig"))
        return saved

    def _scratch_dir(self, trainer):
        return os.path.join(self.train_dir, f"scratch_{trainer.task[0]}_{trainer.task[1]}")

    def on_step_end(self, trainer, step, logs):
        if is_due(step, trainer.config.checkpoint_every, trainer.config.steps):
            raise_if_diverged(trainer, self.latest)
            self.manager.save(checkpoint_number=step)
            if not trainer.is_chief:
                tf.io.gfile.rmtree(self._scratch_dir(trainer))


class DivergenceCheck(LoopCallback):
    """Stops the run with TrainingDiverged at the first log or evaluation step after a non-finite step, and at
    the end (checkpoints: the Checkpoints callback, for the message, or None)."""

    def __init__(self, checkpoints=None):
        self.checkpoints = checkpoints

    def _check(self, trainer):
        raise_if_diverged(trainer, self.checkpoints.latest if self.checkpoints else None)

    def on_step_end(self, trainer, step, logs):
        if logs is not None:
            self._check(trainer)

    def on_train_end(self, trainer):
        self._check(trainer)


class EvalHistory(LoopCallback):
    """Evaluates every eval_every steps and at the last (trainer.evaluate), keeps the evaluations in
    trainer.history ({"step", "<set>": accuracy, ...}) and adds "<set>_error" to the logs. With a train_dir
    the chief also appends them to eval_history.jsonl, so that they survive a resume."""

    def __init__(self, train_dir=None):
        self.path = os.path.join(train_dir, "eval_history.jsonl") if train_dir else None

    def on_train_begin(self, trainer):
        if self.path is None:
            return
        if not trainer.is_chief:
            trainer.history = []  # a non-chief's results hold its own evaluations only; the chief's are the run's
            return
        # Evaluations up to the restored step (later ones belong to steps that will be redone).
        restored_step = int(trainer.step.numpy())
        entries = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                entries = [e for e in map(json.loads, f) if e["step"] <= restored_step]
        with open(self.path + ".tmp", "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in entries)
        os.replace(self.path + ".tmp", self.path)
        trainer.history = entries

    def on_step_end(self, trainer, step, logs):
        if not is_due(step, trainer.config.eval_every, trainer.config.steps):
            return
        accuracy = trainer.evaluate()
        entry = {"step": step, **accuracy}
        trainer.history.append(entry)
        if self.path and trainer.is_chief:
            with open(self.path, "a") as f:
                f.write(json.dumps(entry) + "\n")
        logs.update({f"{k}_error": 1.0 - v for k, v in accuracy.items()})


class ProgressPrinter(LoopCallback):
    """Prints the progress line (step, speed, ETA, logs) every log_every steps and at the last."""

    def on_train_begin(self, trainer):
        self.progress = ProgressLog(trainer.config.steps, int(trainer.step.numpy()), enabled=trainer.verbose)

    def on_step_end(self, trainer, step, logs):
        if is_due(step, trainer.config.log_every, trainer.config.steps):
            self.progress.log(step, logs)


class TensorBoardLog(LoopCallback):
    """Writes the logs, and a histogram of λ when λ is learned, to train_dir/tb (the chief only)."""

    def __init__(self, train_dir):
        self.log_dir = os.path.join(train_dir, "tb")
        self.writer = None

    def on_train_begin(self, trainer):
        if trainer.is_chief:
            self.writer = tf.summary.create_file_writer(self.log_dir)

    def on_step_end(self, trainer, step, logs):
        if logs is None or self.writer is None:
            return
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                tf.summary.scalar(name, value)
            if trainer.config.weighting != "none":
                tf.summary.histogram("lambda", trainer.weights.values)
        self.writer.flush()


def standard_callbacks(train_dir):
    """The Trainer's own callbacks, in the order their hooks must run."""
    if not train_dir:
        return [DivergenceCheck(), EvalHistory(), ProgressPrinter()]
    checkpoints = Checkpoints(train_dir)
    # Saving comes last: a checkpoint is never ahead of the evaluation history it resumes with.
    return [DivergenceCheck(checkpoints), EvalHistory(train_dir), ProgressPrinter(), TensorBoardLog(train_dir),
            checkpoints]
