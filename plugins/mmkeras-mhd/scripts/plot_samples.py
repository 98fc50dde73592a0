"""Plot MHD samples: for each digit 0-9, its image, sound features and trajectory side by side.

    python plugins/mmkeras-mhd/scripts/plot_samples.py [--size tiny] [--seed 0] [--per-digit 2]
        [--out docs/figures/mhd_samples.png]

Builds (or reuses) the cached data set, so it needs mmkeras and mmkeras-mhd importable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
from mmkeras_mhd.dataset import MHD

REPO = Path(__file__).resolve().parents[3]


def plot(size: str | int, seed: int, per_digit: int, out: Path) -> None:
    data = MHD(size=size, seed=seed).load("train")
    labels = data.labels
    assert labels is not None
    cols = 3 * per_digit  # image | sound | trajectory for each example of a digit
    fig, axes = plt.subplots(
        10,
        cols,
        figsize=(2.2 * cols, 17),
        gridspec_kw={"width_ratios": [1, 2.2, 1] * per_digit},
    )
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)[:per_digit]
        for k, i in enumerate(rows):
            ax_img, ax_snd, ax_trj = axes[digit, 3 * k : 3 * k + 3]
            ax_img.imshow(data.inputs["image"][i, :, :, 0], cmap="gray", vmin=0, vmax=1)
            ax_snd.imshow(
                data.inputs["sound"][i],
                origin="lower",
                aspect="auto",
                cmap="magma",
                vmin=-2.5,
                vmax=2.5,
            )
            xy = data.inputs["trajectory"][i].reshape(-1, 2)
            ax_trj.plot(xy[:, 0], xy[:, 1], "-", lw=0.8, color="tab:blue")
            ax_trj.scatter(xy[:, 0], xy[:, 1], c=np.arange(len(xy)), cmap="viridis", s=3, zorder=3)
            ax_trj.set_xlim(-1.1, 1.1)
            ax_trj.set_ylim(-1.1, 1.1)
            ax_trj.set_aspect("equal")
            for ax in (ax_img, ax_snd, ax_trj):
                ax.set_xticks([])
                ax.set_yticks([])
            if digit == 0:
                ax_img.set_title("image 28x28", fontsize=9)
                ax_snd.set_title("sound: 32 mel bands x 128 frames", fontsize=9)
                ax_trj.set_title("trajectory (start: dark)", fontsize=9)
        axes[digit, 0].set_ylabel(str(digit), rotation=0, fontsize=16, labelpad=14, va="center")
    fig.suptitle(f"MHD built locally (size={size}, seed={seed}): four views of each digit", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="MHD size (full, small, tiny or an int)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-digit", type=int, default=2, help="examples shown per digit")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "mhd_samples.png")
    args = parser.parse_args()
    size: str | int = int(args.size) if args.size.isdigit() else args.size
    plot(size, args.seed, args.per_digit, args.out)


if __name__ == "__main__":
    main()
