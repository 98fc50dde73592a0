"""Make the two tiny keras-hub presets that ``recipes/clip_keras_hub_synthetic.yaml`` reads, offline
and with random initialisation (they stand for the BERT or ViT preset a user already has).

    python scripts/make_hub_presets.py [--out presets] [--seed 0]

- ``OUT/tiny_text``: a ``BertBackbone`` (vocabulary 64, 2 layers of width 32, 12 positions) that
  reads ``digit_captions``' token ids (``max_vocab: 64``, ``length: 12``);
- ``OUT/tiny_vision``: a ``ViTBackbone`` on 28x28x1 images in 7x7 patches (16 patches and a class
  token, 2 layers of width 32), the shape of ``digit_captions``' ``image_size: 28`` and of MHD.

Each is written with ``Backbone.save_to_preset`` (config.json, model.weights.h5, metadata.json) and
reads back with ``keras_hub.models.Backbone.from_preset(DIR)`` with no network. Weights come from
``--seed``, so re-running writes the same presets; a preset already there with the same config is
kept as it is. Needs keras-hub (``pip install -e .[hub]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: preset folder -> (keras-hub backbone class, its constructor arguments)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny_text": (
        "BertBackbone",
        {
            "vocabulary_size": 64,
            "num_layers": 2,
            "num_heads": 2,
            "hidden_dim": 32,
            "intermediate_dim": 64,
            "dropout": 0.0,
            "max_sequence_length": 12,
        },
    ),
    "tiny_vision": (
        "ViTBackbone",
        {
            "image_shape": [28, 28, 1],
            "patch_size": [7, 7],
            "num_layers": 2,
            "num_heads": 2,
            "hidden_dim": 32,
            "mlp_dim": 64,
        },
    ),
}


def _is_current(folder: Path, class_name: str, backbone_config: dict[str, Any]) -> bool:
    """Whether ``folder`` already holds this backbone with this config (and its weights)."""
    try:
        saved = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if saved.get("class_name") != class_name or not (folder / "model.weights.h5").is_file():
        return False
    return all(saved.get("config", {}).get(k) == v for k, v in backbone_config.items())


def make_presets(out: str | Path = "presets", seed: int = 0) -> list[str]:
    """Write (or keep) every preset of :data:`PRESETS` under ``out``; one line per preset."""
    try:
        import keras
        import keras_hub
    except ImportError as exc:
        raise SystemExit(f"error: keras-hub is needed ({exc}); install it with: pip install -e .[hub]") from None

    lines = []
    for name, (class_name, kwargs) in PRESETS.items():
        folder = Path(out) / name
        backbone_class = getattr(keras_hub.models, class_name)
        # the config as the backbone writes it (tuples become lists), to compare with a saved one
        backbone_config = json.loads(json.dumps(kwargs))
        if _is_current(folder, class_name, backbone_config):
            lines.append(f"kept {folder} ({class_name}, already there)")
            continue
        keras.utils.set_random_seed(seed)  # the same weights on every run
        backbone = backbone_class(**kwargs)
        folder.mkdir(parents=True, exist_ok=True)
        backbone.save_to_preset(str(folder))
        lines.append(f"wrote {folder} ({class_name}, {backbone.count_params():,} parameters)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="presets", help="the folder to write the presets under (default: presets)")
    parser.add_argument("--seed", type=int, default=0, help="the random initialisation's seed (default: 0)")
    args = parser.parse_args(argv)
    for line in make_presets(args.out, args.seed):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
