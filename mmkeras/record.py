"""The record of one forward pass: what the objective turns into the loss."""

from __future__ import annotations

from typing import Any, NamedTuple


class Record(NamedTuple):
    """One forward pass of a :class:`~mmkeras.encoder.MultimodalEncoder` (one augmented view in
    training). A NamedTuple, so Keras's tree utilities map over it and ``tf.function`` traces it.

    - ``features``: ``{modality: h_m}``, the encoder outputs (zeros where a modality is missing);
    - ``latents``: ``{modality: z_m}``, the head applied to each ``h_m``;
    - ``joint_feature``: the fusion of the features; ``joint``: the head applied to it;
    - ``masks``: ``{modality: [B]}`` float32 presence (1.0 present, 0.0 missing);
    - ``inputs``: ``{modality: x_m}``, the given inputs before augmentation (reconstruction targets);
    - ``joint_single``: ``{modality: z}``, the head applied to the fusion of that modality alone,
      when the objective sets ``needs_single_modality_joints``;
    - ``views``: one record per view when the objective sets ``num_views`` > 1 (each a separate
      pass with its own augmentation draw; ``views[0]`` is the record itself).

    An optional field that is unset is empty (an empty dict or tuple: no leaves for Keras's tree
    utilities). ``record["latents"]``, ``record.get("views")`` and ``"views" in record`` read a field
    by name as the dict record of plugin API v1 did; an empty optional field reads as absent.
    """

    features: dict[str, Any]
    latents: dict[str, Any]
    joint_feature: Any
    joint: Any
    masks: dict[str, Any]
    inputs: dict[str, Any] = {}  # noqa: RUF012 - never mutated; empty means unset
    joint_single: dict[str, Any] = {}  # noqa: RUF012
    views: tuple[Record, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self:
                raise KeyError(f"the record has no {key!r}; it has {self._set_fields()}")
            return getattr(self, key)
        return tuple.__getitem__(self, key)

    def __contains__(self, key: Any) -> bool:
        if isinstance(key, str):
            return key in self._set_fields()
        return tuple.__contains__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """A field by name, or ``default`` when it is unset."""
        return self[key] if key in self else default

    def _set_fields(self) -> list[str]:
        return [f for f in self._fields if not _empty(getattr(self, f))]


def _empty(value: Any) -> bool:
    return isinstance(value, (dict, tuple, list)) and len(value) == 0
