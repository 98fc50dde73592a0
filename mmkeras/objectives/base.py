"""The objective contract."""

from __future__ import annotations

from typing import Any

import keras

from mmkeras.component import Component
from mmkeras.errors import RecipeError
from mmkeras.losses.gaussian import LIKELIHOODS, latent_size
from mmkeras.recipe_checks import pair_problems


class Objective(Component, keras.layers.Layer):
    """Base class of objectives: ``call(outputs, labels=None) -> {"loss": scalar, **metrics}``.

    ``outputs`` is the forward pass's :class:`~mmkeras.record.Record` (read its fields as
    attributes: ``outputs.latents``, ``outputs.masks``, ``outputs.views``, ...). The keys ``call``
    returns besides ``loss`` are the metrics the training model tracks. Objectives run in float32
    whatever the mixed-precision policy, and return this replica's *local contribution* to the
    loss (see :mod:`mmkeras.distribute`); the maths lives in :mod:`mmkeras.losses`. Parameters are
    declared once, in ``__init__``'s signature (:class:`~mmkeras.component.Component`).
    """

    #: forward passes per batch, each with its own augmentation draw (the record gets ``views``)
    num_views: int = 1
    #: ask the model for the fusion of each single modality (the record gets ``joint_single``)
    needs_single_modality_joints: bool = False

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"  # similarities and logits in float32 under mixed precision
        super().__init__(**kwargs)

    @classmethod
    def check_recipe(cls, params: dict, modalities: list[str]) -> list[tuple[str, str]]:
        """(parameter, problem) for a ``pair`` parameter naming modalities the recipe does not have,
        found by ``mmkeras validate`` before training. Override to check more."""
        return pair_problems(params, modalities)

    def call(self, outputs, labels=None):
        raise NotImplementedError


def check_decoders(decoders: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The validated ``decoders`` table of a decoding objective: ``{modality: {name, params}}``."""
    out = {}
    for modality, spec in decoders.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise TypeError(f"decoders.{modality}: expected {{name: <head>, params: {{...}}}}, got {spec!r}")
        extra = sorted(set(spec) - {"name", "params"})
        if extra:
            raise ValueError(f"decoders.{modality}: unknown keys {extra} (allowed: name, params)")
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise TypeError(f"decoders.{modality}.params: expected a mapping, got {params!r}")
        out[str(modality)] = {"name": spec["name"], "params": dict(params)}
    if not out:
        raise ValueError("decoders: give at least one modality's decoder")
    return out


def check_likelihoods(
    decoders: dict[str, Any],
    likelihoods: dict[str, str] | None,
    lambdas: dict[str, float] | None = None,
    allowed: tuple[str, ...] = LIKELIHOODS,
) -> tuple[dict[str, str], dict[str, float]]:
    """The validated ``likelihoods`` and ``lambdas`` tables of a decoding objective: names from
    ``allowed``, and only modalities that have a decoder."""
    kinds = {str(m): str(k) for m, k in (likelihoods or {}).items()}
    for m, kind in kinds.items():
        if kind not in allowed:
            raise ValueError(f"likelihoods.{m}: expected one of {list(allowed)}, got {kind!r}")
    weights = {str(m): float(w) for m, w in (lambdas or {}).items()}
    for name, table in (("likelihoods", kinds), ("lambdas", weights)):
        extra = sorted(set(table) - set(decoders))
        if extra:
            raise ValueError(f"{name}.{extra[0]}: this modality has no decoder; decoders are for {sorted(decoders)}")
    return kinds, weights


class DecodingObjective(Objective):
    """An objective that owns one decoder per target modality, built from head specs
    (``self.decoders: {modality: {"name", "params"}}``, checked by :func:`check_decoders`) once
    the target shapes are known, and rebuilt from its build config when a saved model is loaded."""

    def _keep_decoders(self, decoders: dict[str, dict[str, Any]]) -> None:
        """Check and keep the ``decoders`` table; the decoder layers are made in ``build``, once the
        target shapes are known."""
        self.decoders = check_decoders(decoders)
        self.decoder_layers: dict[str, keras.layers.Layer] = {}
        self._shapes: dict[str, Any] | None = None

    def _keep_sampling(self, sample: bool, seed: int | None) -> None:
        """Keep ``sample`` (draw latents in training, or take their means) and the noise's seed."""
        self.sample = sample
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _target_shapes(self, outputs_shape, who: str) -> dict[str, list[int]]:
        """The decoders' target shapes, from the record of shapes ``build`` receives (its masks
        name every modality of the model)."""
        modalities = sorted(outputs_shape.masks)
        unknown = sorted(set(self.decoders) - set(modalities))
        if unknown:
            raise RecipeError([f"objective.params.decoders.{unknown[0]}: no such modality; the model has {modalities}"])
        missing = sorted(set(self.decoders) - set(outputs_shape.inputs))
        if missing:
            raise ValueError(f"{who}: no input for decoder targets {missing} to take their shapes from")
        return {t: [int(d) for d in outputs_shape.inputs[t][1:]] for t in sorted(self.decoders)}

    def _gaussian_experts(self, outputs_shape, who: str) -> tuple[int, dict[str, list[int]]]:
        """For objectives that read each modality's feature as a Gaussian expert [mu, logvar]: the
        latent size (half the one feature size) and the decoders' target shapes, checked."""
        return latent_size(outputs_shape.features, who), self._target_shapes(outputs_shape, who)

    def decode(self, target: str, code, inputs: dict[str, Any]):
        """The decoder of ``target`` applied to ``code``, its shape checked against the input's."""
        prediction = self.decoder_layers[target](code)
        if tuple(prediction.shape[1:]) != tuple(inputs[target].shape[1:]):
            raise ValueError(
                f"decoders.{target} reconstructs shape {tuple(prediction.shape[1:])} but the input {target} has "
                f"shape {tuple(inputs[target].shape[1:])}"
            )
        return prediction

    def _make_decoders(self, code_dim: int, target_shapes: dict[str, list[int]]) -> None:
        from mmkeras.builder import instantiate
        from mmkeras.recipe import ComponentSpec

        for t, shape in target_shapes.items():
            spec = ComponentSpec(name=self.decoders[t]["name"], params=self.decoders[t]["params"])
            decoder = instantiate(
                "heads", spec, f"objective.params.decoders.{t}", {"output_shape": shape}, name=f"{t}_decoder"
            )
            decoder.build((None, code_dim))
            self.decoder_layers[t] = decoder
        self._shapes = {"code_dim": code_dim, "target_shapes": target_shapes}
        self.built = True

    def get_build_config(self):
        return self._shapes

    def build_from_config(self, config):
        if config:
            self._make_decoders(int(config["code_dim"]), {t: list(s) for t, s in config["target_shapes"].items()})


def validated_pairs(pairs: Any) -> Any:
    """An objective's ``pairs`` parameter: ``"all"``, or a list of [a, b] pairs of two different modalities."""
    if pairs == "all":
        return pairs
    same = [p for p in pairs if p[0] == p[1]]
    if same:
        raise ValueError(f"pairs: each pair must name two different modalities, got {list(same[0])}")
    return [list(p) for p in pairs]
