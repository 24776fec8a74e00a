"""Learning-rate schedules of θ, as the original codebases define them (in iterations).

  constant          lr
  fixmatch_cosine   lr · cos(7πk / (16K))                        (FixMatch; no warm-up)
  uda_cosine        linear warm-up from 0 over W steps, then
                    lr · [(1 - a)·½(1 + cos(π r)) + a], r = (k - W)/(K - W), a = min_lr_ratio
                    (UDA June 2019 - Jan 2020, the setup of Ren et al.: W = 20k, a = 0.004)
  uda_current       linear warm-up over W, then lr · cos(7π r / 16)    (UDA HEAD)
  bert_linear       lr · k/W while k < W, then lr · (1 - k/K)           (BERT / UDA text: the decay
                    counts from step 0, so the lr falls from lr to lr·(1 - W/K) at the warm-up's end)
"""
import math

import tensorflow as tf
import tf_keras as keras

LR_SCHEDULES = ("constant", "fixmatch_cosine", "uda_cosine", "uda_current", "bert_linear")


class ThetaSchedule(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, kind, lr, total_steps, warmup_steps=0, min_lr_ratio=0.0):
        if kind not in LR_SCHEDULES:
            raise ValueError(f"Unknown learning-rate schedule {kind!r}; choose one of {LR_SCHEDULES}.")
        self.kind, self.lr, self.total_steps = kind, float(lr), int(total_steps)
        self.warmup_steps, self.min_lr_ratio = int(warmup_steps), float(min_lr_ratio)

    def __call__(self, step):
        k = tf.cast(step, tf.float32)
        total = float(self.total_steps)
        if self.kind == "constant":
            return tf.constant(self.lr)
        if self.kind == "fixmatch_cosine":
            return self.lr * tf.cos(7.0 * math.pi * k / (16.0 * total))
        warm = float(self.warmup_steps)
        r = tf.clip_by_value((k - warm) / max(total - warm, 1.0), 0.0, 1.0)
        if self.kind == "bert_linear":
            decayed = self.lr * tf.maximum(1.0 - k / total, 0.0)
        elif self.kind == "uda_cosine":
            a = self.min_lr_ratio
            decayed = self.lr * ((1.0 - a) * 0.5 * (1.0 + tf.cos(math.pi * r)) + a)
        else:
            decayed = self.lr * tf.cos(7.0 * math.pi * r / 16.0)
        if self.warmup_steps == 0:
            return decayed
        return tf.where(k < warm, self.lr * k / warm, decayed)

    def get_config(self):
        return {"kind": self.kind, "lr": self.lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr_ratio": self.min_lr_ratio}
