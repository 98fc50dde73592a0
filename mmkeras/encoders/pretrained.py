"""An encoder that mmkeras trained and exported as a preset, reused in another recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import keras

from mmkeras.encoders.keras_model import NetworkEncoder
from mmkeras.errors import MMKerasError
from mmkeras.params import NonNegativeInt, PositiveInt
from mmkeras.recipe_checks import preset_problems


@keras.saving.register_keras_serializable(package="mmkeras")
class PretrainedEncoder(NetworkEncoder):
    """A modality encoder from a preset that ``mmkeras export RUN --preset DIR [--modality M]``
    wrote, with its trained weights; it trains, stays frozen or unfreezes as ``keras_model`` does.

    The preset's encoder gives ``[B, d]``. With ``projection`` left unset, a Dense to ``output_dim``
    follows only when ``d`` differs from it, so by default the representation starts exactly as
    trained; ``true`` always adds one, ``false`` never (then ``d`` must equal ``output_dim``).
    Saved models hold the encoder's config and weights: they reload without the preset.

    Args:
        output_dim: the feature size (the recipe's ``model.feature_dim``).
        preset: the preset directory.
        modality: which modality's encoder to take from a multimodal preset (none: the preset's
            only encoder).
        trainable: ``all`` (the encoder trains) or ``frozen``.
        trainable_layers: only the encoder's last K layers that own weights train.
        unfreeze_after: the encoder is frozen for this many epochs, then trains.
        output: as for ``keras_model``: ``auto``, ``pooled``, ``cls``, ``tokens`` or ``mean``.
        projection: a Dense to ``output_dim`` after the encoder (unset: only when the sizes differ).
    """

    @classmethod
    def check_recipe(cls, params: dict, modalities: list[str]) -> list[tuple[str, str]]:
        """(parameter, problem) for a preset directory that is not there, found by ``mmkeras validate``."""
        return preset_problems(params, modalities)

    def __init__(
        self,
        output_dim: PositiveInt,
        preset: str,
        modality: str | None = None,
        trainable: Literal["all", "frozen"] = "all",
        trainable_layers: PositiveInt | None = None,
        unfreeze_after: NonNegativeInt | None = None,
        output: Literal["auto", "pooled", "cls", "tokens", "mean"] = "auto",
        projection: bool | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            output_dim,
            trainable=trainable,
            trainable_layers=trainable_layers,
            unfreeze_after=unfreeze_after,
            output=output,
            projection=projection,
            **kwargs,
        )
        self.preset = preset
        self.modality = modality
        if self.network is not None:  # from_config: the saved encoder, not the preset
            return
        if not Path(preset).expanduser().is_dir():
            raise ValueError(f"preset: {preset} is not a directory (write one with: mmkeras export RUN --preset DIR)")
        from mmkeras.preset import load_modality_encoder

        try:
            self.network = load_modality_encoder(str(Path(preset).expanduser()), modality)
        except MMKerasError as exc:
            raise ValueError(str(exc)) from None
