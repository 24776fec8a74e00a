"""The pictures of Fig. 1 and 2: decision boundaries over Λ iterations, unlabeled points shaded by λ."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

from influence_ssl.data import synthetic  # noqa: E402

GRID_SIZE = 150
# Low weight = pink, high weight = black (the paper's shading).
WEIGHT_CMAP = LinearSegmentedColormap.from_list("weight", ["#ff3ea5", "#bbbbbb", "#000000"])


def bounds(data):
    points = np.concatenate([data.unlabeled_x, data.labeled_x, data.val_x])
    low, high = points.min(0), points.max(0)
    pad = 0.15 * (high - low)
    return low - pad, high + pad


def grid_points(data):
    """[GRID_SIZE², 2] float32 points covering the data."""
    low, high = bounds(data)
    xs = np.linspace(low[0], high[0], GRID_SIZE)
    ys = np.linspace(low[1], high[1], GRID_SIZE)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def ground_truth_prob(data, grid):
    """P(class 1) of the ground truth on the grid: exact for linear, 25-NN on the test set otherwise."""
    if data.name == "linear":
        return (grid @ synthetic.LINEAR_NORMAL > 0).astype(np.float64)
    knn = KNeighborsClassifier(25).fit(data.test_x, data.test_y)
    return knn.predict_proba(grid)[:, 1]


def draw_frame(ax, data, grid, frame, truth, title, vmax):
    shape = (GRID_SIZE, GRID_SIZE)
    gx, gy = grid[:, 0].reshape(shape), grid[:, 1].reshape(shape)
    ax.contourf(gx, gy, frame["grid_prob"].reshape(shape), levels=[0, 0.5, 1], colors=["#dbe9f6", "#fde8d4"],
                alpha=0.6)
    ax.contour(gx, gy, frame["grid_prob"].reshape(shape), levels=[0.5], colors="#1f5fbf", linewidths=2)
    ax.contour(gx, gy, truth.reshape(shape), levels=[0.5], colors="green", linewidths=1.5, linestyles="--")
    lam = frame["lambda"]
    # One absolute scale for every panel, 0 .. the largest λ of any panel, so that an early panel with λ
    # in [0.99, 1.01] looks as uniform as it is. Right pseudo-labels are dots, wrong ones crosses; low
    # weights are drawn last, on top.
    shade = {"cmap": WEIGHT_CMAP, "vmin": 0.0, "vmax": vmax}
    wrong = frame["unlabeled_pred"] != data.unlabeled_true_y
    for subset, marker, size in [(~wrong, "o", 9), (wrong, "x", 16)]:
        idx = np.flatnonzero(subset)
        idx = idx[np.argsort(-lam[idx])]
        ax.scatter(data.unlabeled_x[idx, 0], data.unlabeled_x[idx, 1], c=lam[idx], marker=marker, s=size,
                   linewidths=0.9 if marker == "x" else 0, **shade)
    for label, marker in [(0, "o"), (1, "s")]:
        pts = data.labeled_x[data.labeled_y == label]
        ax.scatter(pts[:, 0], pts[:, 1], c="orange", marker=marker, s=90, edgecolors="k", linewidths=1)
    ax.set_title(f"{title}\nλ in [{lam.min():.2f}, {lam.max():.2f}]", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_iterations(data, snapshots, path):
    """Fig. 1/2: one panel per snapshot (Λ iteration), ours on the first seed."""
    keys = sorted(k for k in snapshots.frames if k != "final") + ["final"]
    keys = [k for k in keys if k in snapshots.frames]
    truth = ground_truth_prob(data, snapshots.grid)
    vmax = max(max(float(snapshots.frames[k]["lambda"].max()) for k in keys), 1e-6)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 4.3))
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys):
        title = "final" if key == "final" else f"Λ iteration {key}"
        draw_frame(ax, data, snapshots.grid, snapshots.frames[key], truth, title, vmax)
    mappable = plt.cm.ScalarMappable(cmap=WEIGHT_CMAP, norm=plt.Normalize(0, vmax))
    fig.colorbar(mappable, ax=axes.tolist(), shrink=0.8, label="λ_u (one scale for every panel)")
    fig.suptitle(f"{data.name} (first seed): learned boundary (blue), ground truth (green, dashed), labeled "
                 "(orange), unlabeled shaded by λ (pink = lowest); × = wrong pseudo-label", fontsize=10, y=1.04)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_weight_vs_margin(data, extras, path):
    """λ_u against the final model's margin toward u's pseudo-label, wrong pseudo-labels in red."""
    logits = extras["logits"]
    pred = extras["final_pred"]
    margin = np.abs(logits[:, 1] - logits[:, 0])
    wrong = pred != data.unlabeled_true_y
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(margin[~wrong], extras["lambda"][~wrong], s=8, c="#444444", label="pseudo-label right")
    ax.scatter(margin[wrong], extras["lambda"][wrong], s=14, c="red", label="pseudo-label wrong")
    ax.set_xlabel("final margin |z_1 - z_0| (distance from the boundary in logits)")
    ax.set_ylabel("learned λ_u")
    ax.set_title(f"{data.name}: weight against margin (first seed)")
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_all(data, snapshots, extras, plot_dir):
    os.makedirs(plot_dir, exist_ok=True)
    return [draw_iterations(data, snapshots, os.path.join(plot_dir, f"{data.name}_iterations.png")),
            draw_weight_vs_margin(data, extras, os.path.join(plot_dir, f"{data.name}_weight_vs_margin.png"))]
