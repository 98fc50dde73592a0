"""Which image patches and sound tokens a trained ``dmc`` model puts in which cluster.

    python scripts/figure_dmc_clusters.py RUN_DIR [--out PNG] [--examples N]

RUN_DIR is a run of a ``dmc`` recipe (``recipes/dmc_mhd.yaml``, ``recipes/dmc_pendulum.yaml``).
Each test example is encoded to the token features the loss reads (``model.encoder(x).features``)
and clustered per sample exactly as the loss clusters it: :func:`mmkeras.losses.dmc.soft_kmeans`
with the recipe's ``clusters``, ``iterations`` and ``temperature``. The figure shows, for N test
examples, the image with the argmax cluster of each patch overlaid (the token grid upsampled) and
the sound with the argmax cluster of each token as coloured bars; cluster k has one colour in both
modalities, since the loss aligns centre k of the image with centre k of the sound.

Numbers over the whole test split go to a JSON file beside the figure (and to stdout). On the
pendulum: the patch holding the rod tip (from the true angle) and how often it falls in each
sample's smaller cluster (the one with the least assignment mass) against that cluster's share
of the patches (chance), the share of rod and background patches in it, and how the smaller
cluster's assignment-weighted centroid follows the tip. On MHD: the share of ink and background
patches in each cluster.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

#: a patch of an MHD image holds ink when its brightest pixel is above this (pixels in [0, 1])
INK_THRESHOLD = 0.5
#: the pendulum's sound tokens under recipes/dmc_pendulum.yaml (kernel 3, stride 3 over 12 values)
PENDULUM_SOUND_TOKENS = ("previous: frequencies", "previous: amplitudes", "current: frequencies", "current: amplitudes")
PENDULUM_SOUND_VALUES = ("f1", "f2", "f3", "a1", "a2", "a3") * 2
#: points along the pendulum's rod, as fractions of the way from the pivot to the tip
ALONG_ROD = (0.0, 0.25, 0.5, 0.75, 1.0)


# -- the clustering, as the loss does it ------------------------------------------------------
def cluster_settings(recipe: Any) -> dict[str, Any]:
    """``clusters``, ``iterations`` and ``temperature`` of the run's ``dmc`` objective (its defaults
    for what the recipe leaves out)."""
    from mmkeras.objectives.dmc import DMC

    if recipe.objective.name != "dmc":
        raise SystemExit(f"the run's objective is {recipe.objective.name!r}, not dmc")
    objective = DMC(**recipe.objective.params)
    return {"clusters": objective.clusters, "iterations": objective.iterations, "temperature": objective.temperature}


def assignments(tokens: Any, clusters: int, iterations: int, temperature: float) -> np.ndarray:
    """Each sample's soft k-means assignments [B, T, K] of its tokens [B, T, d], as the loss computes them."""
    from keras import ops

    from mmkeras.losses.dmc import soft_kmeans

    return ops.convert_to_numpy(soft_kmeans(tokens, clusters, iterations, temperature)[0])


def encode_and_cluster(
    model: Any, inputs: dict[str, np.ndarray], settings: dict[str, Any], batch_size: int = 200
) -> dict[str, np.ndarray]:
    """{modality: assignments [N, T, K]} of the token features the loss reads, in batches."""
    n = len(next(iter(inputs.values())))
    out: dict[str, list[np.ndarray]] = {m: [] for m in inputs}
    for start in range(0, n, batch_size):
        record = model.encoder({m: x[start : start + batch_size] for m, x in inputs.items()}, training=False)
        for m in inputs:
            out[m].append(assignments(record.features[m], **settings))
    return {m: np.concatenate(parts) for m, parts in out.items()}


# -- geometry ---------------------------------------------------------------------------------
def patch_grid(tokens: int, image_size: int) -> tuple[int, float]:
    """(g, pixels per patch) of a square image whose tokens are a g x g grid in row-major order."""
    g = math.isqrt(tokens)
    if g * g != tokens:
        raise SystemExit(f"the image has {tokens} tokens: not a square grid")
    return g, image_size / g


def tip_pixel(theta: np.ndarray, fraction: float = 1.0) -> np.ndarray:
    """[..., 2] (row, column) in image pixels (continuous, row 0 at the top) of the pendulum's rod
    tip, or of the point ``fraction`` of the way from the pivot to it, as
    :func:`mmkeras_pendulum.env.render` draws the rod: the tip at x = -l sin(theta), y = l cos(theta)."""
    from mmkeras_pendulum import env

    theta = np.asarray(theta, dtype=np.float64)
    centre = env.IMAGE_SIZE / 2
    column = centre - fraction * env.LENGTH * np.sin(theta) / env.PIXEL
    row = centre - fraction * env.LENGTH * np.cos(theta) / env.PIXEL
    return np.stack([row, column], axis=-1)


def tip_patch(theta: np.ndarray, grid: int, fraction: float = 1.0) -> np.ndarray:
    """[..., 2] (row, column) of the patch of a ``grid`` x ``grid`` token grid holding the rod tip
    (or the point ``fraction`` of the way to it)."""
    from mmkeras_pendulum import env

    patch = np.floor(tip_pixel(theta, fraction) / (env.IMAGE_SIZE / grid)).astype(np.int64)
    return np.clip(patch, 0, grid - 1)


def patches_holding(mask: np.ndarray, grid: int) -> np.ndarray:
    """[N, grid * grid] bool: the patches where ``mask`` [N, H, W] is set anywhere."""
    n, h, w = mask.shape
    return mask.reshape(n, grid, h // grid, grid, w // grid).any(axis=(2, 4)).reshape(n, grid * grid)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; 0.0 when either is constant (r undefined)."""
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def smaller_cluster(assign: np.ndarray) -> np.ndarray:
    """[N] each sample's cluster with the least assignment mass over its tokens."""
    return np.argmin(assign.sum(axis=1), axis=1)


def initial_block_agreement(assign: np.ndarray) -> float:
    """The fraction of tokens whose argmax cluster is the contiguous block its centre started from
    (:func:`mmkeras.losses.dmc.initial_blocks`): 1.0 when the clusters only keep their starting regions."""
    from mmkeras.losses.dmc import initial_blocks

    start = initial_blocks(assign.shape[1], assign.shape[2]).argmax(-1)
    return float(np.mean(assign.argmax(-1) == start[None, :]))


def token_cluster_shares(assign: np.ndarray) -> list[list[float]]:
    """[T][K]: the fraction of samples whose token t has argmax cluster k."""
    hard = assign.argmax(-1)
    return [[float(np.mean(hard[:, t] == k)) for k in range(assign.shape[-1])] for t in range(assign.shape[1])]


# -- the measured answers ---------------------------------------------------------------------
def pendulum_numbers(image_assign: np.ndarray, theta: np.ndarray, images: np.ndarray) -> dict[str, Any]:
    """Does a cluster follow the moving tip? ``image_assign`` [N, g*g, K], ``theta`` [N] the current
    angle, ``images`` [N, 60, 60, 2] (channel 1: the current frame)."""
    n, tokens, k = image_assign.shape
    grid, size = patch_grid(tokens, images.shape[1])
    hard = image_assign.argmax(-1)
    rows = np.arange(n)
    rod = patches_holding(images[..., 1] > 0.5, grid)
    small = smaller_cluster(image_assign)

    def point_in(member: np.ndarray, fraction: float) -> float:
        patch = tip_patch(theta, grid, fraction)
        return float(member[rows, patch[:, 0] * grid + patch[:, 1]].mean())

    def in_cluster(c: np.ndarray) -> dict[str, Any]:
        member = hard == c[:, None]
        return {
            "share_of_patches": float(member.mean()),
            "tip_patch_in_it": point_in(member, 1.0),
            "rod_patches_in_it": float(member[rod].mean()),
            "background_patches_in_it": float(member[~rod].mean()),
            # the patch of the point this fraction of the way from the pivot (0.0) to the tip (1.0)
            "along_rod_in_it": {f"{f:.2f}": point_in(member, f) for f in ALONG_ROD},
        }

    # the smaller cluster's assignment-weighted centroid, in pixels from the pivot (x right, y up)
    centres = (np.arange(grid) + 0.5) * size - images.shape[1] / 2
    x, y = np.meshgrid(centres, -centres)  # row-major, like the tokens
    weights = image_assign[rows, :, small]
    weights = weights / np.maximum(weights.sum(1, keepdims=True), 1e-12)
    cx, cy = weights @ x.reshape(-1), weights @ y.reshape(-1)
    tip_row_col = tip_pixel(theta)
    tip_xy = np.stack([tip_row_col[:, 1] - images.shape[2] / 2, images.shape[1] / 2 - tip_row_col[:, 0]], axis=-1)
    angle_error = np.angle(np.exp(1j * (np.arctan2(cy, cx) - np.arctan2(tip_xy[:, 1], tip_xy[:, 0]))))
    return {
        "image_patches": tokens,
        "tip_radius_px": float(np.hypot(*tip_xy[0])),
        "smaller_cluster": {
            **in_cluster(small),
            "index_counts": np.bincount(small, minlength=k).tolist(),
            "centroid_tip_corr_x": correlation(cx, tip_xy[:, 0]),
            "centroid_tip_corr_y": correlation(cy, tip_xy[:, 1]),
            "centroid_radius_px": float(np.mean(np.hypot(cx, cy))),
            "centroid_tip_distance_px": float(np.mean(np.hypot(cx - tip_xy[:, 0], cy - tip_xy[:, 1]))),
            "centroid_angle_error_deg": float(np.degrees(np.mean(np.abs(angle_error)))),
        },
        "per_cluster": [in_cluster(np.full(n, c)) for c in range(k)],
    }


def mhd_numbers(image_assign: np.ndarray, images: np.ndarray) -> dict[str, Any]:
    """Ink against background: ``image_assign`` [N, g*g, K], ``images`` [N, 28, 28, 1] in [0, 1]."""
    n, tokens, k = image_assign.shape
    grid, _ = patch_grid(tokens, images.shape[1])
    hard = image_assign.argmax(-1)
    ink = patches_holding(images[..., 0] > INK_THRESHOLD, grid)
    small = smaller_cluster(image_assign)

    def in_cluster(c: np.ndarray) -> dict[str, float]:
        member = hard == c[:, None]
        return {
            "share_of_patches": float(member.mean()),
            "ink_patches_in_it": float(member[ink].mean()),
            "background_patches_in_it": float(member[~ink].mean()),
        }

    return {
        "image_patches": tokens,
        "ink_threshold": INK_THRESHOLD,
        "ink_share_of_patches": float(ink.mean()),
        "smaller_cluster": {**in_cluster(small), "index_counts": np.bincount(small, minlength=k).tolist()},
        "per_cluster": [in_cluster(np.full(n, c)) for c in range(k)],
    }


# -- the figure -------------------------------------------------------------------------------
def colours(k: int) -> np.ndarray:
    import matplotlib

    return np.array([matplotlib.colormaps["tab10"](c % 10)[:3] for c in range(k)])


def pick_examples(kind: str, labels: np.ndarray | None, theta: np.ndarray | None, count: int) -> np.ndarray:
    """Pendulum: ``count`` test rows spread evenly over the angle; MHD: the first of each digit."""
    if kind == "pendulum":
        order = np.argsort(theta)
        return order[np.linspace(0, len(order) - 1, count).round().astype(int)]
    if labels is None:
        return np.arange(count)
    first = [np.flatnonzero(labels == c)[:1] for c in range(min(count, 10))]
    return np.concatenate(first)


def draw_image(ax: Any, image: np.ndarray, assign: np.ndarray, palette: np.ndarray, tip: np.ndarray | None) -> None:
    grid, _ = patch_grid(assign.shape[0], image.shape[0])
    size = image.shape[0]
    # the pendulum's two frames: the previous one dimmer; MHD: the one channel
    grey = 0.35 * image[..., 0] + 0.65 * image[..., 1] if image.shape[-1] == 2 else image[..., 0]
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, extent=(0, size, size, 0))
    overlay = palette[assign.argmax(-1)].reshape(grid, grid, 3)
    ax.imshow(overlay, alpha=0.45, extent=(0, size, size, 0), interpolation="nearest")
    if tip is not None:
        ax.plot(tip[1], tip[0], marker="x", color="white", markersize=8, markeredgewidth=2)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_mhd_sound(ax: Any, sound: np.ndarray, assign: np.ndarray, palette: np.ndarray) -> None:
    """The spectrogram (mel bands up, frames right) with a strip: each token's cluster over its bands."""
    from matplotlib.patches import Rectangle

    bands, frames = sound.shape
    strip = frames * 0.1
    ax.imshow(sound, cmap="magma", origin="lower", aspect="auto", extent=(0, frames, 0, bands))
    per_token = bands / assign.shape[0]
    for t, c in enumerate(assign.argmax(-1)):
        ax.add_patch(Rectangle((-strip, t * per_token), strip, per_token, color=palette[c], clip_on=False))
    ax.set_xlim(-strip, frames)
    ax.set_xticks([0, frames])
    ax.set_yticks([0, bands])
    ax.tick_params(labelsize=7)


def draw_pendulum_sound(ax: Any, sound: np.ndarray, assign: np.ndarray, palette: np.ndarray) -> None:
    """The 12 standardised sound values as bars, each coloured by the cluster of its token."""
    per_token = len(sound) // assign.shape[0]
    token_colour = palette[assign.argmax(-1)]
    ax.bar(np.arange(len(sound)), sound, color=[token_colour[i // per_token] for i in range(len(sound))])
    ax.axvline(len(sound) / 2 - 0.5, color="0.4", linewidth=0.8)
    ax.axhline(0, color="0.4", linewidth=0.5)
    ax.set_xticks(np.arange(len(sound)))
    ax.set_xticklabels(PENDULUM_SOUND_VALUES[: len(sound)], fontsize=6)
    ax.tick_params(axis="y", labelsize=7)


def plot(
    kind: str,
    inputs: dict[str, np.ndarray],
    assign: dict[str, np.ndarray],
    rows: np.ndarray,
    captions: list[str],
    title: str,
    output: Path,
    tips: np.ndarray | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    k = assign["image"].shape[-1]
    palette = colours(k)
    fig, axes = plt.subplots(2, len(rows), figsize=(2.3 * len(rows), 5.2), squeeze=False)
    for col, (row, caption) in enumerate(zip(rows, captions)):
        draw_image(
            axes[0, col], inputs["image"][row], assign["image"][row], palette, None if tips is None else tips[row]
        )
        axes[0, col].set_title(caption, fontsize=9)
        draw_sound = draw_pendulum_sound if kind == "pendulum" else draw_mhd_sound
        draw_sound(axes[1, col], inputs["sound"][row], assign["sound"][row], palette)
    if kind == "pendulum":
        axes[0, 0].set_ylabel("image: both frames\n(current brighter),\nx = true tip", fontsize=8)
        axes[1, 0].set_ylabel("sound (standardised):\nprevious | current frame,\nbars by token's cluster", fontsize=8)
    else:
        axes[0, 0].set_ylabel("image: cluster of\neach 4x4 patch", fontsize=8)
        axes[1, 0].set_ylabel("sound: log-mel bands (up)\nx frames; strip: cluster\nof each 4-band token", fontsize=8)
    handles = [Patch(color=palette[c], label=f"cluster {c}") for c in range(k)]
    fig.legend(handles=handles, loc="lower center", ncol=k, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(fig)


# -- main -------------------------------------------------------------------------------------
def analyse(run_dir: Path, out: Path | None, examples: int) -> dict[str, Any]:
    """Encode and cluster the run's test split, write the figure and the JSON; returns the numbers."""
    import mmkeras
    from mmkeras.builder import make_dataset

    recipe = mmkeras.load_recipe(run_dir / "recipe.yaml")
    settings = cluster_settings(recipe)
    kind = recipe.data.dataset
    if kind not in ("pendulum", "mhd"):
        raise SystemExit(f"the run's data set is {kind!r}: this figure reads pendulum or mhd")
    model = mmkeras.load_model(str(run_dir / "model.keras"), compile=False)
    dataset = make_dataset(recipe)
    dataset.prepare()
    split = dataset.load("test")
    inputs = {m: split.inputs[m] for m in ("image", "sound")}
    assign = encode_and_cluster(model, inputs, settings)
    numbers: dict[str, Any] = {"run": str(run_dir), "dataset": kind, "test_examples": len(inputs["image"]), **settings}
    theta = tips = None
    if kind == "pendulum":
        theta = dataset.states("test")[:, 0]
        numbers.update(pendulum_numbers(assign["image"], theta, inputs["image"]))
        tips = tip_pixel(theta)
        names = PENDULUM_SOUND_TOKENS
    else:
        numbers.update(mhd_numbers(assign["image"], inputs["image"]))
        per_token = inputs["sound"].shape[1] // assign["sound"].shape[1]
        names = tuple(f"mel bands {t * per_token}-{(t + 1) * per_token - 1}" for t in range(assign["sound"].shape[1]))
    numbers["initial_block_agreement"] = {m: initial_block_agreement(a) for m, a in assign.items()}
    numbers["sound_tokens"] = list(names)
    numbers["sound_token_cluster_shares"] = token_cluster_shares(assign["sound"])
    rows = pick_examples(kind, split.labels, theta, examples)
    if kind == "pendulum":
        captions = [f"angle {np.degrees(theta[r]):.0f}°" for r in rows]
        small = numbers["smaller_cluster"]
        summary = (
            f"tip patch in the smaller cluster {small['tip_patch_in_it']:.0%} of test samples "
            f"(chance {small['share_of_patches']:.0%}; rod patches {small['rod_patches_in_it']:.0%})"
        )
    else:
        captions = [f"digit {split.labels[r]}" if split.labels is not None else f"test #{r}" for r in rows]
        summary = "ink patches in cluster k: " + ", ".join(
            f"{c}: {p['ink_patches_in_it']:.0%} (background {p['background_patches_in_it']:.0%})"
            for c, p in enumerate(numbers["per_cluster"])
        )
    title = (
        f"DMC clusters on {kind} test examples ({run_dir.name}: K={settings['clusters']}, "
        f"{settings['iterations']} soft k-means steps, temperature {settings['temperature']:g})\n{summary}"
    )
    out = out or Path("docs/figures") / f"dmc_{kind}_clusters.png"
    plot(kind, inputs, assign, rows, captions, title, out, tips)
    out.with_suffix(".json").write_text(json.dumps(numbers, indent=2) + "\n")
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run directory of a dmc recipe on mhd or pendulum")
    parser.add_argument(
        "--out", type=Path, default=None, help="figure path (default docs/figures/dmc_<data>_clusters.png)"
    )
    parser.add_argument("--examples", type=int, default=6, help="test examples drawn (MHD: digits 0..N-1)")
    args = parser.parse_args()
    print(json.dumps(analyse(args.run_dir, args.out, args.examples), indent=2))


if __name__ == "__main__":
    main()
