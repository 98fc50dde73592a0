"""SigLIP: the pairwise sigmoid loss (Zhai, Mustafa, Kolesnikov and Beyer, ICCV 2023, "Sigmoid Loss
for Language Image Pre-Training") over pairs of present modalities, with a learned logit scale
t = exp(t') and bias b: for each pair (a, b) of modalities, with L2-normalised latents,

    l_ij = t <z_a,i , z_b,j> + b,   L_ab = -1/|B| sum_i sum_j log sigmoid(z_ij l_ij),  z_ij = +1 iff i == j,

and the loss is the mean of L_ab over the pairs (:func:`mmkeras.losses.siglip`). Rows where a or b
is missing are neither positives nor negatives of that pair, and |B| counts its present rows.

Under tf.distribute every replica gathers each modality's latents once (N * b rows, with a
gradient) and, with ``chunked``, scores its b local rows against them in N blocks of b x b logits,
each recomputed in the backward pass, so no replica holds more than local x local logits at a
time; unchunked, it scores the local x global block at once. Under JAX's ``data_parallel`` the step
sees the global batch B, split over N devices by the compiler: chunked, it scores N blocks of
B x B/N logits, which the compiler row-shards to B/N x B/N per device (checked on the compiled
per-device program in tests/test_jax_distribute.py); unchunked, each device holds B/N x B. The
blocks run one after the other, so a device's temporary memory is about 1/N of the unchunked step's
(compiled train step on 2 devices, global batch 4096: 51.4 against 101.6 MB; 8192: 203.5 against
404.6 MB). Both give the same loss and gradients, and on one device both are the plain loss. The paper's loss is
for one pair of modalities; the mean over pairs is this library's extension to M modalities, as
for ``infonce``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import keras
from keras import ops
from pydantic import Field

from mmkeras.distribute import data_parallel_devices, num_replicas
from mmkeras.losses.contrastive import both_present
from mmkeras.losses.siglip import siglip
from mmkeras.objectives._contrastive import chosen_pairs, gathered_latents
from mmkeras.objectives.base import Objective, validated_pairs
from mmkeras.params import FiniteFloat, PositiveFloat


@keras.saving.register_keras_serializable(package="mmkeras")
class SigLIP(Objective):
    """The SigLIP sigmoid loss between pairs of modalities' latents, with learned scale and bias.

    Args:
        init_temperature: the initial logit scale t (the paper's t = exp(t'), t' initialised at
            log 10); the weight ``log_temperature`` holds t'.
        init_bias: the initial bias b (-10 in the paper, so that the many negatives start near
            their target and the first steps are not dominated by them).
        learnable: train t' and b (as in the paper); false keeps them at their initial values.
        chunked: under N replicas or N data_parallel devices, score the columns in N blocks, so
            each holds b x b logits (false: one local x global block). The loss and gradients are
            the same.
        pairs: ``all`` (every pair a < b of the model's modalities) or a list of ``[a, b]`` pairs.
    """

    def __init__(
        self,
        init_temperature: PositiveFloat = 10.0,
        init_bias: FiniteFloat = -10.0,
        learnable: bool = True,
        chunked: bool = True,
        pairs: Literal["all"] | list[Annotated[list[str], Field(min_length=2, max_length=2)]] = "all",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.init_temperature = float(init_temperature)
        self.init_bias = float(init_bias)
        self.learnable = bool(learnable)
        self.chunked = bool(chunked)
        self.pairs = validated_pairs(pairs)
        self.log_temperature = self.add_weight(
            name="log_temperature",
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.init_temperature)),
            dtype="float32",
            trainable=self.learnable,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(),
            initializer=keras.initializers.Constant(self.init_bias),
            dtype="float32",
            trainable=self.learnable,
        )

    def modality_pairs(self, modalities: list[str]) -> list[tuple[str, str]]:
        """The pairs this objective scores, each sorted, checked against the model's modalities."""
        return chosen_pairs(self.pairs, modalities, "siglip")

    def build(self, outputs_shape, labels_shape=None):
        # pairs are checked here: Keras re-raises errors from call() with one string, garbling a RecipeError
        self.modality_pairs(list(outputs_shape.latents))
        self.built = True

    def build_from_config(self, config):
        self.built = True  # the weights are made in __init__: nothing to rebuild from the saved shapes

    def temperature(self):
        """The logit scale t = exp(t')."""
        return ops.exp(self.log_temperature)

    def _chunks(self, columns: int | None) -> int:
        """N column blocks under N tf.distribute replicas (b x b logits each), or over data_parallel's N
        devices (B x B/N, row-sharded to B/N x B/N per device) when the B columns split evenly; else 1."""
        replicas = num_replicas()
        if replicas > 1:  # N * b gathered columns always split in N, even when b is not static
            return replicas
        devices = data_parallel_devices(keras.distribution.distribution())
        return devices if columns is not None and columns % devices == 0 else 1

    def call(self, outputs, labels=None):
        pairs = self.modality_pairs(list(outputs.latents))
        z, masks = gathered_latents(outputs)
        chunks = self._chunks(z[pairs[0][0]].columns.shape[0]) if self.chunked else 1
        scale, bias = self.temperature(), ops.convert_to_tensor(self.bias)
        result = {
            f"siglip_{a}_{b}": siglip(z[a], z[b], scale, bias, both_present(masks[a], masks[b]), chunks)
            for a, b in pairs
        }
        result["loss"] = sum(result.values()) / len(pairs)
        return result
