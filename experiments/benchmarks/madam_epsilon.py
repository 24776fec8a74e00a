"""M-Adam's ε against the size of BERT's hypergradients, on the tiny-BERT text path.

Alg. 2 divides by √v̂ + ε with one global step counter t. An example seen for the first time at Λ step t has
v = (1 − β2)·g², so √v̂ = |g|·√((1 − β2)/(1 − β2^t)): |g| at t = 1, but only 0.035·|g| at t = 1800 (the last
Λ step of a Table 2 run). When that falls below ε, ε sets the step instead of √v̂, and λ moves by
η·m̂/ε ∝ |g| rather than by about η·sign(g).

This trains a tiny BERT (the tests' size: 2 layers, hidden 32) with UDA and per-example weights on synthetic
token ids with a class signal, the Table 2 flags otherwise (experiments/configs/table2/ours_128.cfg: binary
reparametrization, exact influence, Λ every N = 5 θ steps, η = 0.01, batches 8 / 32, 20 validation reviews).
At every Λ step it takes the batch's hypergradient g and steps shadow copies of λ with MaskedAdam at each ε,
and prints: mean |g|, mean √v̂ of the batch's rows (the same for every ε), the share of rows with √v̂ < ε, and
the mean |Δλ| at each ε (ε = 1e-30 standing for "no ε"). --t_offset starts the shadow optimizers' counter
there, to see Λ steps late in a run (e.g. 1700 of a Table 2 run's 1800) without training that long.

Run: python -m experiments.benchmarks.madam_epsilon [--t_offset=1700] [--steps=100]
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from influence_ssl.studies import results as study_results  # noqa: E402
from influence_ssl.studies.protocol import write_json  # noqa: E402

FORMAT = study_results.MADAM_EPSILON_FORMAT  # read by experiments.report
EPSILONS = (1e-7, 1e-8, 1e-30)  # the project's default, the authors' code's, and (almost) none
# The tests' tiny BERT (tests/test_text_bert.py).
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)
VOCAB_SIZE = 100
SPECIAL = 5  # [PAD], [UNK], [CLS], [SEP], [MASK]


def synthetic_text(seed, num_unlabeled, length, num_labeled=20, num_validation=20, signal=0.7):
    """A TextSSLData of token ids [N, length] ([CLS] ... [SEP]) whose words lean to one half of the vocabulary by
    class (a share `signal` of them), the augmented view a copy with 10% of the words redrawn."""
    from influence_ssl.data.text import TextSSLData

    rng = np.random.default_rng(seed)
    half = (VOCAB_SIZE - SPECIAL) // 2

    def reviews(labels):
        own = rng.random((len(labels), length - 2)) < signal
        low = SPECIAL + labels[:, None] * half  # the class's half of the vocabulary
        words = np.where(own, low + rng.integers(0, half, own.shape), rng.integers(SPECIAL, VOCAB_SIZE, own.shape))
        return np.concatenate([np.full((len(labels), 1), 2), words, np.full((len(labels), 1), 3)], 1).astype(np.int32)

    def labels(n):
        return np.arange(n) % 2

    unlabeled_y = rng.integers(0, 2, num_unlabeled)
    unlabeled = reviews(unlabeled_y)
    augmented = unlabeled.copy()
    redraw = np.zeros_like(unlabeled, bool)
    redraw[:, 1:-1] = rng.random((num_unlabeled, length - 2)) < 0.1
    augmented[redraw] = rng.integers(SPECIAL, VOCAB_SIZE, int(redraw.sum()))
    return TextSSLData(name="imdb", num_classes=2, labeled_x=reviews(labels(num_labeled)),
                       labeled_y=labels(num_labeled), unlabeled_x=unlabeled,
                       unlabeled_ids=np.arange(num_unlabeled), unlabeled_true_y=unlabeled_y,
                       val_x=reviews(labels(num_validation)), val_y=labels(num_validation),
                       test_x=reviews(labels(4)), test_y=labels(4), unlabeled_aug_x=augmented)


def table2_config(steps, length, seed):
    """The RunConfig of ours_128.cfg at this script's scale: Λ steps from the first N θ steps on."""
    from influence_ssl.runs import presets

    return presets.resolve({"dataset": "imdb", "weighting": "per_example", "binary_reparam": True,
                            "influence": "exact", "weight_optimizer": "madam", "steps": steps, "weight_warmup": 0,
                            "lr_warmup": max(1, steps // 10), "max_seq_length": length, "seed": seed})


def make_trainer(config, data):
    from transformers import BertConfig, TFBertModel

    from influence_ssl.models import bert_classifier
    from influence_ssl.runs import build
    from influence_ssl.trainer import Trainer
    from influence_ssl.trainer.text_source import PairedTextSource

    keras.utils.set_random_seed(config.seed)  # BERT's initializers are unseeded: seed every generator they may use
    bert = TFBertModel(BertConfig(vocab_size=VOCAB_SIZE, **TINY_BERT))
    bert(bert.dummy_inputs, training=False)
    model = bert_classifier(bert, seq_length=config.text.max_seq_length, seed=config.seed)
    t = config.train
    source = PairedTextSource(data, t.labeled_batch, t.unlabeled_batch, t.validation_batch, t.seed)
    return Trainer(model, build.make_algorithm(config), source, config.train, verbose=False)


class ShadowLambda:
    """λ [num] stepped by MaskedAdam(η, ε) on the run's hypergradients, apart from the run's own λ."""

    def __init__(self, num, learning_rate, epsilon, t_offset=0):
        from influence_ssl.optimizers.masked_adam import MaskedAdam

        self.values = tf.Variable(tf.ones([num]))
        self.optimizer = MaskedAdam(learning_rate, epsilon=epsilon)
        self.optimizer.build([self.values])
        self.optimizer.iterations.assign(t_offset)
        self.velocity = next(v for v in self.optimizer.variables if v.name.startswith("v/"))

    def step(self, ids, grads):
        """One M-Adam step on rows ids [U] with gradients grads [U]: (|Δλ| [U], √v̂ [U], t)."""
        ids = tf.constant(ids, tf.int64)
        before = tf.gather(self.values, ids).numpy()
        dense_shape = tf.constant([int(self.values.shape[0])], tf.int64)
        self.optimizer.apply_gradients([(tf.IndexedSlices(tf.constant(grads, tf.float32), ids, dense_shape),
                                         self.values)])
        t = int(self.optimizer.iterations.numpy())  # the t of this step (Alg. 2 counts before stepping)
        v_hat = tf.gather(self.velocity, ids).numpy().astype(np.float64) / (1 - self.optimizer.beta_2 ** t)
        return np.abs(tf.gather(self.values, ids).numpy() - before), np.sqrt(v_hat), t


def measure(args):
    """Train, and print one line per Λ step; returns the rows [{...}] printed."""
    config = table2_config(args.steps, args.length, args.seed)
    data = synthetic_text(args.seed, args.num_unlabeled, args.length)
    trainer = make_trainer(config, data)
    t = config.train
    shadows = {eps: ShadowLambda(args.num_unlabeled, t.weight_lr, eps, args.t_offset) for eps in EPSILONS}
    print(f"tiny BERT, {args.num_unlabeled} synthetic unlabeled reviews of {args.length} tokens; N = "
          f"{t.inner_steps}, |U'| = {t.unlabeled_batch}, η = {t.weight_lr}; M-Adam's t from {args.t_offset + 1}")
    header = (f"{'Λ step':>6} {'t':>5} {'mean|g|':>9} {'mean√v̂':>9} {'√v̂<1e-7':>9} {'√v̂<1e-8':>9} "
              f"{'|Δλ| ε=1e-7':>12} {'ε=1e-8':>9} {'ε→0':>9}")
    print(header)
    rows = []
    for k in range(t.steps):
        trainer.train_step(tf.constant(k, tf.int64))
        step = k + 1
        if not trainer.is_outer_step(step):
            continue
        outer = step // t.inner_steps
        ids, grads = trainer.hypergradient(outer)
        trainer.outer_step(tf.constant(outer, tf.int64))  # the run's own λ, as training does
        moved, sqrt_v, time = {}, None, None
        for eps, shadow in shadows.items():
            moved[eps], sqrt_v, time = shadow.step(ids, grads)
        row = {"outer_step": outer, "t": time, "mean_abs_g": float(np.mean(np.abs(grads))),
               "mean_sqrt_v_hat": float(np.mean(sqrt_v)),
               "share_below": {eps: float(np.mean(sqrt_v < eps)) for eps in EPSILONS[:2]},
               "mean_abs_step": {eps: float(np.mean(moved[eps])) for eps in EPSILONS}}
        rows.append(row)
        print(f"{outer:>6} {time:>5} {row['mean_abs_g']:>9.2e} {row['mean_sqrt_v_hat']:>9.2e} "
              f"{row['share_below'][1e-7]:>9.0%} {row['share_below'][1e-8]:>9.0%} "
              f"{row['mean_abs_step'][1e-7]:>12.2e} {row['mean_abs_step'][1e-8]:>9.2e} "
              f"{row['mean_abs_step'][1e-30]:>9.2e}", flush=True)
    return rows


def means(rows):
    """The per-step figures averaged over all Λ steps: {name: value}, by ε where they depend on it."""
    mean = lambda key, eps=None: float(np.mean([r[key] if eps is None else r[key][eps] for r in rows]))  # noqa: E731
    return {"lambda_steps": len(rows), "mean_abs_g": mean("mean_abs_g"), "mean_sqrt_v_hat": mean("mean_sqrt_v_hat"),
            "share_below": {str(eps): mean("share_below", eps) for eps in EPSILONS[:2]},
            "mean_abs_step": {str(eps): mean("mean_abs_step", eps) for eps in EPSILONS}}


def summary(figures):
    """One line of `means`."""
    below, step = figures["share_below"], figures["mean_abs_step"]
    return (f"over {figures['lambda_steps']} Λ steps: mean|g| {figures['mean_abs_g']:.2e}, mean √v̂ "
            f"{figures['mean_sqrt_v_hat']:.2e}, √v̂ < 1e-7 in {below['1e-07']:.0%} of rows, < 1e-8 in "
            f"{below['1e-08']:.0%}; mean |Δλ| {step['1e-07']:.2e} (ε=1e-7), {step['1e-08']:.2e} (ε=1e-8), "
            f"{step['1e-30']:.2e} (no ε)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="θ steps (a Λ step every 5)")
    parser.add_argument("--t_offset", type=int, default=0, help="M-Adam's step counter before the first Λ step")
    parser.add_argument("--num_unlabeled", type=int, default=4096, help="unlabeled reviews (most seen once)")
    parser.add_argument("--length", type=int, default=32, help="tokens per review")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json_out", default="", help="also write the figures to this JSON (with provenance)")
    args = parser.parse_args()
    if min(args.steps, args.num_unlabeled, args.length - 2) < 1 or args.t_offset < 0 or args.length > 64:
        parser.error("--steps, --num_unlabeled >= 1, 3 <= --length <= 64 and --t_offset >= 0.")
    rows = measure(args)
    figures = means(rows)
    print(summary(figures))
    if args.json_out:
        steps = [{**r, **{k: {str(e): v for e, v in r[k].items()} for k in r if isinstance(r[k], dict)}}
                 for r in rows]
        write_json(args.json_out, {"format": FORMAT, "settings": vars(args), "means": figures,
                                   "per_lambda_step": steps})
        print(f"results: {args.json_out}")


if __name__ == "__main__":
    main()
