"""The objective contract."""

from __future__ import annotations

import keras

from mmkeras.recipe_checks import pair_problems


class Objective(keras.layers.Layer):
    """Base class of objectives: ``call(outputs, labels=None) -> {"loss": scalar, **metrics}``.

    ``outputs`` is the :class:`~mmkeras.model.MultimodalModel` record: ``features`` and
    ``latents`` (per modality), ``joint_feature`` and ``joint``, ``masks``, and ``inputs`` (the
    un-augmented inputs). Objectives run in float32 whatever the mixed-precision policy, and
    return this replica's *local contribution* to the loss (see :mod:`mmkeras.distribute`).
    """

    #: forward passes per batch, each with its own augmentation draw (the record gets ``views``)
    num_views: int = 1
    #: ask the model for the fusion of each single modality (the record gets ``joint_single``)
    needs_single_modality_joints: bool = False

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"  # similarities and logits in float32 under mixed precision
        super().__init__(**kwargs)

    def metric_names(self, modalities: list[str]) -> list[str]:
        """Names of the extra scalars ``call`` returns besides ``loss``."""
        return []

    @classmethod
    def check_recipe(cls, params: dict, modalities: list[str]) -> list[tuple[str, str]]:
        """(parameter, problem) for a ``pair`` parameter naming modalities the recipe does not have,
        found by ``mmkeras validate`` before training. Override to check more."""
        return pair_problems(params, modalities)

    def call(self, outputs, labels=None):
        raise NotImplementedError


class DecodingObjective(Objective):
    """An objective that owns one decoder per target modality, built from head specs
    (``self.decoders: {modality: {"name", "params"}}``) once the target shapes are known, and
    rebuilt from its build config when a saved model is loaded."""

    def _gaussian_experts(self, outputs_shape, who: str) -> tuple[int, dict[str, list[int]]]:
        """For objectives that read each modality's feature as a Gaussian expert [mu, logvar]: the
        latent size (half the one feature size) and the decoders' target shapes, checked."""
        sizes = {m: int(s[-1]) for m, s in outputs_shape["features"].items()}
        if len(set(sizes.values())) != 1 or next(iter(sizes.values())) % 2:
            raise ValueError(
                f"{who} reads each modality's feature as [mu, logvar] of its latent, so the features need one "
                f"even size (feature_dim = 2 * latent); got {sizes}"
            )
        missing = sorted(set(self.decoders) - set(outputs_shape["inputs"]))
        if missing:
            raise ValueError(f"{who}: no input for decoder targets {missing} to take their shapes from")
        targets = {t: [int(d) for d in outputs_shape["inputs"][t][1:]] for t in sorted(self.decoders)}
        return next(iter(sizes.values())) // 2, targets

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
