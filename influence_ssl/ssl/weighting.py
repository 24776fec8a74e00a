"""Per-example weighting rules of the field, as pieces that replace the fixed confidence mask of FixMatch and
Pseudo-Label (`FixMatch(threshold, rule=...)`, `PseudoLabel(threshold, rule=...)`).

A rule maps the probabilities of the view the pseudo-labels come from, p [U, C] (held constant), and the batch's
unlabeled ids [U] to a weight w [U] in [0, ∞); the algorithm's targets become one_hot(argmax p) · w, the mask
folded into the targets as with the fixed threshold, so ℓ_U(u) = w_u · CE(argmax p_u, ·) and the learned λ_u
multiplies it on top. Each rule keeps its running statistics in tf.Variables (a tf.Module: checkpointed with the
run, usable inside tf.function and XLA) and updates them only when called with update_state=True: the θ step's
forward, never the Λ step's (influence_ssl.trainer.steps). Rules that update before weighting (SoftMatch,
FreeMatch) weight a θ batch with the statistics that include it, as USB does; in a Λ step they weight with the
statistics as they stand.

Only the weighting is taken from each method: no distribution / uniform alignment (SoftMatch), no fairness term
(FreeMatch), no soft self-distillation targets (UASD); the pseudo-labels stay FixMatch's hard arg-max.
Sources: USB (microsoft/Semi-supervised-learning) semilearn/algorithms/{softmatch,freematch,flexmatch}/ and
TorchSSL models/{softmatch,freematch}/ for the formulas and defaults; yanbeic/ssl-class-mismatch for UASD.
"""
import tensorflow as tf

from influence_ssl.ssl.base import SSLAlgorithm
from influence_ssl.ssl.losses import hard_pseudo_labels


def _confidence(probs):
    """(max p [U], argmax p [U] int64) of probabilities [U, C]."""
    return tf.reduce_max(probs, axis=-1), tf.argmax(probs, axis=-1)


class WeightingRule(tf.Module):
    """Base class. `needs_ids`: the rule keeps a record per unlabeled id and must be given the batch's ids."""

    needs_ids = False

    def __call__(self, probs, ids=None, update_state=False):
        """Weights w [U] (float32) of probabilities probs [U, C] of unlabeled ids [U] (int); with
        update_state the rule's statistics first (or afterwards, as its source does) take in this batch."""
        if self.needs_ids and ids is None:
            raise ValueError(f"{type(self).__name__} keeps a record per unlabeled example: give the batch's "
                             "unlabeled_ids.")
        probs = tf.cast(tf.stop_gradient(probs), tf.float32)
        return self.weights(probs, ids, update_state)

    def weights(self, probs, ids, update_state):
        raise NotImplementedError


class SoftMatchWeighting(WeightingRule):
    """SoftMatch's truncated Gaussian weight (Chen et al., ICLR 2023; USB softmatch/utils.py l. 34-76):

        w(p) = λmax · exp(-(max p - μ_t)² / (2 σ_t² / n_sigma²))   if max p < μ_t,   λmax otherwise;
        μ_t  = m μ_{t-1}  + (1 - m) · mean_b(max p),
        σ_t² = m σ²_{t-1} + (1 - m) · var_b(max p),   var_b unbiased (÷ (U - 1), as torch.var(unbiased=True)),

    μ_0 = 1/C, σ²_0 = 1 (utils.py l. 25-26), m = 0.999 (softmatch.py --ema_p, l. 143). The batch statistics
    enter before the batch is weighted (utils.py l. 66: update, then weight). n_sigma = 2 divides the variance
    by 4, as both reference implementations do (USB --n_sigma 2, utils.py l. 76; TorchSSL softmatch.py
    `2 * var / 4`), the code the paper's results were run with; n_sigma = 1 gives exp(-(max p - μ_t)²/(2σ_t²))
    exactly. The confidence is max softmax(z) of the weak logits, taken once: USB first passed
    already-softmaxed probabilities through a second softmax, which its maintainers called a bug and fixed
    (softmatch.py l. 90, masking(..., softmax_x_ulb=False)); this follows the fixed behaviour.
    Without uniform alignment, the statistics are those of the model's own probabilities (as TorchSSL, and as
    the paper describes; USB computes them on the aligned probabilities).

    Args: num_classes C; momentum m; n_sigma; lambda_max λmax (1: the loss weight stays FixMatch's λ_u).
    State: mean μ_t [], variance σ_t² [] (float32).
    """

    def __init__(self, num_classes, momentum=0.999, n_sigma=2.0, lambda_max=1.0, name="softmatch_weighting"):
        super().__init__(name=name)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SoftMatch momentum must be in [0, 1), got {momentum}.")
        self.momentum, self.n_sigma, self.lambda_max = momentum, n_sigma, lambda_max
        self.mean = tf.Variable(1.0 / num_classes, trainable=False, dtype=tf.float32, name="mean")
        self.variance = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="variance")

    def weights(self, probs, ids, update_state):
        confidence, _ = _confidence(probs)
        if update_state:
            m = self.momentum
            n = tf.cast(tf.size(confidence), tf.float32)
            batch_mean = tf.reduce_mean(confidence)
            # Unbiased; a batch of one has no spread (torch would give NaN).
            batch_var = tf.reduce_sum(tf.square(confidence - batch_mean)) / tf.maximum(n - 1.0, 1.0)
            self.mean.assign(m * self.mean + (1.0 - m) * batch_mean)
            self.variance.assign(m * self.variance + (1.0 - m) * batch_var)
        below = tf.minimum(confidence - self.mean, 0.0)  # 0 at or above μ_t: weight λmax
        return self.lambda_max * tf.exp(-tf.square(below) * self.n_sigma ** 2 / (2.0 * self.variance))


class FreeMatchThresholds(WeightingRule):
    """FreeMatch's self-adaptive thresholds (Wang et al., ICLR 2023; USB freematch/utils.py l. 14-65), with the
    self-adaptive fairness term off:

        τ_t     = m τ_{t-1}    + (1 - m) · mean_b(max p)          (global),
        p̃_t(c)  = m p̃_{t-1}(c) + (1 - m) · mean_b(p(c))           (local),
        w       = [max p >= MaxNorm(p̃_t)(argmax p) · τ_t],   MaxNorm(x) = x / max_c x,

    τ_0 = p̃_0(c) = 1/C (utils.py l. 19-21; TorchSSL freematch.py the same), m = 0.999 (freematch.py --ema_p,
    l. 149). Updated before the batch is weighted (utils.py l. 61). USB's switches that are off by default stay
    off (--use_quantile, --clip_thresh).

    Args: num_classes C; momentum m. State: global_threshold τ_t [], class_probs p̃_t [C] (float32).
    """

    def __init__(self, num_classes, momentum=0.999, name="freematch_thresholds"):
        super().__init__(name=name)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"FreeMatch momentum must be in [0, 1), got {momentum}.")
        self.momentum = momentum
        self.global_threshold = tf.Variable(1.0 / num_classes, trainable=False, dtype=tf.float32,
                                            name="global_threshold")
        self.class_probs = tf.Variable(tf.fill([num_classes], 1.0 / num_classes), trainable=False,
                                       name="class_probs")

    def weights(self, probs, ids, update_state):
        confidence, label = _confidence(probs)
        if update_state:
            m = self.momentum
            self.global_threshold.assign(m * self.global_threshold + (1.0 - m) * tf.reduce_mean(confidence))
            self.class_probs.assign(m * self.class_probs + (1.0 - m) * tf.reduce_mean(probs, axis=0))
        local = self.class_probs / tf.reduce_max(self.class_probs)
        return tf.cast(confidence >= tf.gather(local, label) * self.global_threshold, tf.float32)


class FlexMatchThresholds(WeightingRule):
    """FlexMatch's curriculum pseudo-labeling thresholds (Zhang et al., NeurIPS 2021), with the threshold warm-up
    and the convex mapping (USB flexmatch.py l. 138-139: --p_cutoff 0.95, --thresh_warmup True; utils.py l. 53):

        σ(c) = #{unlabeled ids whose recorded pseudo-label is c},
        β(c) = σ(c) / max(max_c σ, N - Σ_c σ)     (warm-up: the never-selected count N - Σσ competes),
        w    = [max p >= M(β(argmax p)) · τ],   M(x) = x / (2 - x),   τ = 0.95.

    The record holds each id's last pseudo-label whose confidence was >= τ (>=, as USB's code), -1 before
    (utils.py l. 20, 55-60); β is read before this batch enters the record (utils.py l. 53-61: mask, then
    update). At the start every β is 0, so the threshold is 0: every example is kept until the counts grow.
    Without warm-up the denominator is max_c σ alone. When every id holds the same class, β of that class is 1
    by the formula (USB's hook skips that update and keeps its previous values).

    Args: num_classes C; num_unlabeled N (ids 0 .. N - 1); threshold τ; warmup.
    State: pseudo_labels [N] int64 (-1: never selected).
    """

    needs_ids = True

    def __init__(self, num_classes, num_unlabeled, threshold=0.95, warmup=True, name="flexmatch_thresholds"):
        super().__init__(name=name)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"FlexMatch threshold must be in [0, 1], got {threshold}.")
        self.num_classes, self.threshold, self.warmup = num_classes, threshold, warmup
        self.pseudo_labels = tf.Variable(tf.fill([num_unlabeled], tf.constant(-1, tf.int64)), trainable=False,
                                         name="pseudo_labels")

    def learning_effect(self):
        """β [C] of the current record."""
        # Segment 0 counts the never-selected ids (-1), segment c + 1 class c.
        counts = tf.math.unsorted_segment_sum(tf.ones_like(self.pseudo_labels, tf.float32), self.pseudo_labels + 1,
                                              self.num_classes + 1)
        unused, sigma = counts[0], counts[1:]
        denominator = tf.maximum(tf.reduce_max(sigma), unused) if self.warmup else tf.reduce_max(sigma)
        return sigma / tf.maximum(denominator, 1.0)  # all 0 while nothing is selected

    def weights(self, probs, ids, update_state):
        confidence, label = _confidence(probs)
        beta = tf.gather(self.learning_effect(), label)
        weights = tf.cast(confidence >= beta / (2.0 - beta) * self.threshold, tf.float32)
        if update_state:
            ids = tf.cast(ids, tf.int64)
            kept = tf.where(confidence >= self.threshold, label, tf.gather(self.pseudo_labels, ids))
            with tf.control_dependencies([weights]):
                self.pseudo_labels.scatter_nd_update(ids[:, None], kept)
        return weights


class UASDFilter(WeightingRule):
    """UASD's out-of-distribution filter (Chen et al., AAAI 2020; yanbeic/ssl-class-mismatch train_model_uasd.py,
    the loop of train(), and lib/our_framework.py, conf_mask), without its soft self-distillation targets:

        q̄(u) = (1/n_u) Σ_{visits} p(u)      (each id's running mean prediction over its n_u earlier visits),
        w(u) = [max_c q̄(u)(c) >= τ],   τ = 0.9,

    the max of the averaged probability vector (not the average of the max), from the visits before this one
    (the code feeds the history in, then adds the batch's probabilities): an id never seen has q̄ = 0, hence
    w = 0 on its first visit. τ = 0.9 is the code's --threshold and the starting value of its threshold, which
    the code then sets every step to the mean of the same statistic over the validation examples seen so far;
    here τ is fixed (--uasd_threshold).

    Args: num_classes C; num_unlabeled N; threshold τ.
    State: probability_sums [N, C], visits [N] (float32).
    """

    needs_ids = True

    def __init__(self, num_classes, num_unlabeled, threshold=0.9, name="uasd_filter"):
        super().__init__(name=name)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"UASD threshold must be in [0, 1], got {threshold}.")
        self.threshold = threshold
        self.probability_sums = tf.Variable(tf.zeros([num_unlabeled, num_classes]), trainable=False,
                                            name="probability_sums")
        self.visits = tf.Variable(tf.zeros([num_unlabeled]), trainable=False, name="visits")

    def mean_confidence(self, ids):
        """max_c q̄(u)(c) [U] of ids [U] (0 for an id never visited)."""
        sums = tf.gather(self.probability_sums, ids)
        visits = tf.gather(self.visits, ids)
        return tf.reduce_max(sums / tf.maximum(visits, 1.0)[:, None], axis=-1)

    def weights(self, probs, ids, update_state):
        ids = tf.cast(ids, tf.int64)
        weights = tf.cast(self.mean_confidence(ids) >= self.threshold, tf.float32)
        if update_state:
            with tf.control_dependencies([weights]):
                self.probability_sums.scatter_nd_add(ids[:, None], probs)
                self.visits.scatter_nd_add(ids[:, None], tf.ones_like(probs[:, 0]))
        return weights


RULES = {"softmatch": SoftMatchWeighting, "freematch": FreeMatchThresholds, "flexmatch": FlexMatchThresholds,
         "uasd": UASDFilter}
WEIGHTING_RULES = ("none",) + tuple(RULES)


def pseudo_label_targets(logits, threshold, rule=None, ids=None, update_state=False):
    """Hard pseudo-label targets of FixMatch / Pseudo-Label: one_hot(argmax sg(softmax(logits))) · w, w the fixed
    mask [max p >= threshold] or, with a rule, the rule's weight (which then replaces the threshold).

    Args: logits [U, K]; threshold τ; rule a WeightingRule or None; ids [U] (for rules that keep a record);
      update_state: let the rule take in this batch (θ steps only).
    Returns: (targets [U, K], w [U]).
    """
    if rule is None:
        return hard_pseudo_labels(logits, threshold)
    probs = tf.nn.softmax(tf.stop_gradient(logits))
    weights = tf.cast(rule(probs, ids, update_state=update_state), probs.dtype)
    targets = tf.one_hot(tf.argmax(probs, axis=-1), tf.shape(logits)[-1], dtype=probs.dtype)
    return targets * weights[:, None], weights


class HardPseudoLabels(SSLAlgorithm):
    """What FixMatch and Pseudo-Label share: hard arg-max pseudo-labels weighted by the fixed mask [max p >= τ]
    (`threshold`) or, with `rule` (a WeightingRule), by the rule's weight; the rule is the algorithm's state."""

    title = "Hard pseudo-labels"

    def __init__(self, threshold, rule=None):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{self.title} confidence threshold must be in [0, 1], got {threshold}.")
        self.threshold, self.rule = threshold, rule

    @property
    def state(self):
        return self.rule

    def targets(self, logits, ids, update_state):
        """(targets [U, K], w [U]) of pseudo_label_targets for this algorithm's mask or rule."""
        return pseudo_label_targets(logits, self.threshold, self.rule, ids, update_state)

    def example_weights(self, logits, ids=None):
        return self.targets(logits, ids, update_state=False)[1]
