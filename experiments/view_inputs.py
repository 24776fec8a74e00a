r"""A picture of what the model sees: labeled (weak), unlabeled weak, unlabeled strong and validation
images of one θ step and one Λ step, exactly as the trainer's data source produces them.

  python -m experiments.view_inputs --algorithm=fixmatch --dataset=digits --out=out/inputs_fixmatch_digits.png

Takes the same flags as experiments.train (dataset, algorithm, augment, num_labeled, ...). Check
every augmentation and default against the data: no mirrored digits, sensible fill and cutout. With
--ood_classes or --ood_noise the unlabeled images out of distribution are framed in red.
"""
import os

import numpy as np
from absl import flags

from experiments import quiet_absl_info
from experiments.checks import run_main
from influence_ssl.data import DatasetNotFoundError
from influence_ssl.runs import build
from influence_ssl.runs import flags as run_flags
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
run_flags.define()
flags.DEFINE_integer("step", 0, "θ step (and Λ step) whose batches are drawn.")
flags.DEFINE_integer("per_row", 16, "Images per row.")
flags.DEFINE_string("out", "out/inputs_{algorithm}_{dataset}.png", "Where the PNG goes.")

ROWS = (("labeled_x", "labeled (weak)"), ("unlabeled_weak", "unlabeled, weak"),
        ("unlabeled_strong", "unlabeled, strong"), ("val_x", "validation"))


def ood_columns(unlabeled_ood, ids):
    """[len(ids)] bool: which unlabeled ids of a batch are out of distribution (all False without OOD data)."""
    ids = np.asarray(ids, np.int64)
    return np.zeros(len(ids), bool) if unlabeled_ood is None else np.asarray(unlabeled_ood, bool)[ids]


def to_display(images):
    """[N, H, W, C] in [-1, 1] -> [N, H, W, 3] in [0, 1]."""
    images = np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def main(argv):
    del argv
    quiet_absl_info()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = run_flags.from_flags()
    if config.family != "image":
        raise ConfigError(f"--dataset={config.data.dataset} has no images to show.")
    config = config.replace(weighting="none")
    data, _, _ = build.load_data(config)
    trainer = build.make_trainer(config, data, verbose=False)
    batches = {**{k: v.numpy() for k, v in trainer.source.train_batch(FLAGS.step).items()},
               **{k: v.numpy() for k, v in trainer.source.outer_batch(FLAGS.step).items() if k == "val_x"}}
    n = FLAGS.per_row
    ood = ood_columns(data.unlabeled_ood, batches["unlabeled_ids"][:n])
    fig, axes = plt.subplots(len(ROWS), n, figsize=(n * 0.8, len(ROWS) * 0.95))
    for row, (key, title) in enumerate(ROWS):
        images = to_display(batches[key][:n])
        for col in range(n):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(images):
                ax.imshow(images[col], interpolation="nearest")
            if key.startswith("unlabeled") and col < len(ood) and ood[col]:
                ax.add_patch(plt.Rectangle((-0.5, -0.5), images.shape[2], images.shape[1], fill=False,
                                           edgecolor="red", linewidth=2))
            if col == 0:
                ax.set_title(title, fontsize=7, loc="left")
    algorithm, dataset = config.algorithm.algorithm, config.data.dataset
    fig.suptitle(f"{algorithm} on {dataset}: inputs at step {FLAGS.step} (seed {config.seed}); "
                 f"unlabeled columns are the same images" + (", red: out of distribution" if ood.any() else ""),
                 fontsize=8)
    out = FLAGS.out.format(algorithm=algorithm, dataset=dataset)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"inputs: {out}" + (f" ({int(ood.sum())} of {len(ood)} unlabeled columns out of distribution)"
                               if data.unlabeled_ood is not None else ""))


def run():
    run_main(main, DatasetNotFoundError)


if __name__ == "__main__":
    run()
