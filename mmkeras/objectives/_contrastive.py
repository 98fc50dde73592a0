"""What the contrastive objectives share: reading a record's modalities and views, and gathering
each latent and mask once per step."""

from __future__ import annotations

import itertools
from typing import Any

from keras import ops

from mmkeras.errors import RecipeError
from mmkeras.losses.contrastive import Gathered, gather, gather_normalized
from mmkeras.record import Record


def modality_pairs(modalities: Any, who: str) -> list[tuple[str, str]]:
    """Every pair a < b of the sorted modalities; at least one."""
    pairs = list(itertools.combinations(sorted(modalities), 2))
    if not pairs:
        raise ValueError(f"{who} needs at least two modalities")
    return pairs


def chosen_pairs(pairs: Any, modalities: Any, who: str) -> list[tuple[str, str]]:
    """An objective's ``pairs`` parameter (``"all"`` or [a, b] lists) as sorted pairs, checked against the
    model's modalities."""
    if pairs == "all":
        return modality_pairs(modalities, who)
    mods = sorted(modalities)
    unknown = sorted({m for p in pairs for m in p} - set(mods))
    if unknown:
        raise RecipeError([f"objective.params.pairs: unknown modalities {unknown}; the model has {mods}"])
    return sorted({tuple(sorted(p)) for p in pairs})


def gathered_latents(record: Record) -> tuple[dict[str, Gathered], dict[str, Gathered]]:
    """Each modality's L2-normalised latents and its presence mask, each gathered once."""
    latents = {m: gather_normalized(z) for m, z in sorted(record.latents.items())}
    masks = {m: gather(ops.cast(record.masks[m], "float32")) for m in latents}
    return latents, masks


def two_views(record: Record, who: str) -> tuple[Record, Record]:
    """The records of the two augmented views of an objective with ``num_views = 2``."""
    views = record.views
    if len(views) != 2:
        raise ValueError(f"{who} needs the records of two augmented views (record.views); the model gave none")
    return views[0], views[1]
