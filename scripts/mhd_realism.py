"""How hard each MHD modality is at a realism setting: nearest-centroid accuracy on fresh samples.

    python scripts/mhd_realism.py [--realism default|hard] [--set rt60_s=[0.3,0.8] ...]
        [--train 2000] [--test 1000] [--seed 0] [--workers 2]
    python scripts/mhd_realism.py --grid [--train 1000] [--test 500]

Builds the samples in memory (no cache) and prints one JSON object per setting: for image, sound
and trajectory, the test accuracy of the nearest class mean, the means taken over the training
rows' flattened features after standardising each feature with the training rows' mean and
standard deviation, by Euclidean distance and by cosine similarity. Chance is 0.1. ``sound_pooled``
scores the sound's per-band mean and spread over the frames instead (the word's spectrum wherever
in the clip it was said, as in the plugin's tests).

``--grid`` measures the grid the ``hard`` preset was chosen from: the ``hard`` preset with its
white-noise SNR, babble and reverberation replaced by each point of :data:`GRID`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

import numpy as np
import yaml
from mmkeras_mhd import generate

MODALITIES = ("image", "sound", "trajectory")
#: the grid of ``--grid``: white-noise SNR x babble (talkers, SNR) x RT60
GRID: dict[str, list[dict[str, Any]]] = {
    "noise": [{"snr_db": (10.0, 30.0)}, {"snr_db": (5.0, 15.0)}, {"snr_db": (0.0, 10.0)}],
    "babble": [
        {"babble_talkers": 0},
        {"babble_talkers": 2, "babble_snr_db": (5.0, 15.0)},
        {"babble_talkers": 2, "babble_snr_db": (0.0, 10.0)},
    ],
    "reverb": [{"rt60_s": (0.0, 0.0)}, {"rt60_s": (0.3, 0.8)}],
}


def nearest_centroid(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Test accuracy of the nearest class mean of standardised flattened features (Euclidean, cosine)."""
    train = train.reshape(len(train), -1).astype(np.float64)
    test = test.reshape(len(test), -1).astype(np.float64)
    mean, std = train.mean(0), train.std(0)
    std[std < 1e-6] = 1.0  # constant features (always-black border pixels) stay 0
    train, test = (train - mean) / std, (test - mean) / std
    centroids = np.stack([train[y_train == k].mean(0) for k in range(10)])
    euclid = ((test**2).sum(1)[:, None] - 2 * test @ centroids.T + (centroids**2).sum(1)[None]).argmin(1)
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    cosine = (test @ unit.T).argmax(1)  # the test row's norm does not change the argmax
    return {"euclidean": float((euclid == y_test).mean()), "cosine": float((cosine == y_test).mean())}


def measure(realism: generate.Realism, n_train: int, n_test: int, seed: int, workers: int) -> dict[str, Any]:
    """Build ``n_train`` / ``n_test`` samples at ``realism`` and score each modality."""
    start = time.perf_counter()
    data = generate.build(seed, {"train": n_train, "test": n_test}, workers, progress=False, realism=realism)
    tr, te = data["train"], data["test"]
    accuracy = {m: nearest_centroid(tr[m], tr["labels"], te[m], te["labels"]) for m in MODALITIES}
    pooled = [np.concatenate([x.mean(-1), x.std(-1)], axis=-1) for x in (tr["sound"], te["sound"])]
    accuracy["sound_pooled"] = nearest_centroid(pooled[0], tr["labels"], pooled[1], te["labels"])
    return {
        "realism": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(realism).items()},
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
        "accuracy": accuracy,
        "build_seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realism", default="default", choices=sorted(generate.REALISM))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override (YAML value)")
    parser.add_argument("--grid", action="store_true", help="measure the grid the hard preset was chosen from")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    if not args.grid:
        realism = generate.realism_from(args.realism, **overrides)
        print(json.dumps(measure(realism, args.train, args.test, args.seed, args.workers)), flush=True)
        return
    for point in itertools.product(*GRID.values()):
        settings = {k: v for part in point for k, v in part.items()}
        realism = generate.realism_from("hard", **{**overrides, **settings})
        print(json.dumps(measure(realism, args.train, args.test, args.seed, args.workers)), flush=True)


if __name__ == "__main__":
    main()
