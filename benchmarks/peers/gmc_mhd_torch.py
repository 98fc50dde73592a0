"""GMC on MHD in PyTorch (Poklukar, Vasco et al., ICML 2022): the model and the authors' loss, written
from the paper and the notes on the authors' code, for side-by-side speed runs against mmkeras.

The architecture follows ``recipes/gmc_mhd.yaml`` layer for layer, so both sides do the same work and
have the same parameter count. Where that recipe departs from the authors' code (its comments say how),
``joint="official"`` builds the authors' joint encoder instead: the copies' raw flattened feature stacks
concatenated with the one-hot label (6272 + 2048 + 512 + 10) and one linear layer, with no per-copy
projection. Layouts are PyTorch's: image [B, 1, 28, 28], sound [B, 1, 32, 128] (32 steps of 128
features, read by a (1, 128) kernel as the authors do), trajectory [B, 200], label [B, 10].

Needs PyTorch: ``pip install torch --index-url https://download.pytorch.org/whl/cpu``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

MODALITIES = ("image", "sound", "trajectory", "label")  # the authors' order; the label is a 4th input


def _image_stack() -> nn.Sequential:
    """Two strided 4x4 convolutions with Swish: [B, 1, 28, 28] -> [B, 6272]."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1, bias=False),
        nn.SiLU(),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False),  # the recipe's use_bias: false covers both convolutions
        nn.SiLU(),
        nn.Flatten(),
    )


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # Keras's defaults (epsilon 1e-3, moving-average momentum 0.99), as mmkeras's conv1d encoder uses
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


def _sound_stack() -> nn.Sequential:
    """A (1, 128) convolution then two (4, 1) stride-(2, 1) ones, each with batch norm and ReLU:
    [B, 1, 32, 128] -> [B, 2048]. No bias before a batch norm (its beta takes that place)."""
    return nn.Sequential(
        nn.Conv2d(1, 128, (1, 128), bias=False),
        _batch_norm(128),
        nn.ReLU(),
        nn.Conv2d(128, 128, (4, 1), (2, 1), (1, 0), bias=False),
        _batch_norm(128),
        nn.ReLU(),
        nn.Conv2d(128, 256, (4, 1), (2, 1), (1, 0), bias=False),
        _batch_norm(256),
        nn.ReLU(),
        nn.Flatten(),
    )


def _trajectory_stack() -> nn.Sequential:
    """Two 512-wide Swish layers: [B, 200] -> [B, 512]."""
    return nn.Sequential(nn.Linear(200, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU())


STACKS = {"image": (_image_stack, 6272), "sound": (_sound_stack, 2048), "trajectory": (_trajectory_stack, 512)}


def modality_encoder(modality: str, feature_dim: int = 64) -> nn.Module:
    """f_m: the modality's feature stack and a linear projection to ``feature_dim`` (the label: linear only)."""
    if modality == "label":
        return nn.Linear(10, feature_dim)
    make, width = STACKS[modality]
    return nn.Sequential(make(), nn.Linear(width, feature_dim))


class JointEncoder(nn.Module):
    """f_1:M, with its own copies of every modality's layers (no weights shared with the f_m).

    ``joint="mmkeras"``: each copy ends in its projection to ``feature_dim``; the four features are
    concatenated and one linear layer maps them to ``feature_dim`` (mmkeras's concat fusion).
    ``joint="official"``: the authors' form, the raw feature stacks and the one-hot label concatenated
    (8842 wide) and one linear layer.
    """

    def __init__(self, feature_dim: int = 64, joint: str = "mmkeras"):
        super().__init__()
        if joint not in ("mmkeras", "official"):
            raise ValueError(f"joint must be 'mmkeras' or 'official', got {joint!r}")
        if joint == "mmkeras":
            self.parts = nn.ModuleDict({m: modality_encoder(m, feature_dim) for m in MODALITIES})
            width = feature_dim * len(MODALITIES)
        else:
            self.parts = nn.ModuleDict({m: STACKS[m][0]() for m in STACKS})
            self.parts["label"] = nn.Identity()
            width = sum(w for _, w in STACKS.values()) + 10
        self.out = nn.Linear(width, feature_dim)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        # sorted names, the order of mmkeras's concat fusion (image, label, sound, trajectory)
        return self.out(torch.cat([self.parts[m](x[m]) for m in sorted(self.parts)], dim=-1))


class SharedHead(nn.Module):
    """g, shared by every encoder and the joint one: 64 -> 512 -> 512 -> 64 with Swish, then L2-normalised."""

    def __init__(self, feature_dim: int = 64, latent_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(feature_dim, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, latent_dim)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return functional.normalize(self.net(h), dim=-1)


class GMCMHD(nn.Module):
    """The GMC model on MHD: ``forward(x)`` gives the joint latent z_J and each modality's z_m."""

    def __init__(self, feature_dim: int = 64, latent_dim: int = 64, joint: str = "mmkeras"):
        super().__init__()
        self.encoders = nn.ModuleDict({m: modality_encoder(m, feature_dim) for m in MODALITIES})
        self.joint = JointEncoder(feature_dim, joint)
        self.head = SharedHead(feature_dim, latent_dim)

    def forward(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.head(self.joint(x)), {m: self.head(self.encoders[m](x[m])) for m in MODALITIES}


def gmc_loss(joint: torch.Tensor, latents: dict[str, torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    """The authors' GMC loss (``infonce``): for each modality m, Z = [z_J ; z_m] (2B rows),
    l_m(k) = -log( exp(<Z_k, Z_p(k)>/tau) / sum_{j != k} exp(<Z_k, Z_j>/tau) ) with p(k) the
    joint/modality partner of row k (kept in the denominator); L = mean over the 2B rows of sum_m l_m.
    Computed with a log-sum-exp, which is the same value without overflow."""
    rows = 2 * joint.shape[0]
    eye = torch.eye(rows, dtype=torch.bool, device=joint.device)
    total = joint.new_zeros(rows)
    for z in latents.values():
        both = torch.cat([joint, z], dim=0)
        logits = (both @ both.T / temperature).masked_fill(eye, float("-inf"))
        positive = (joint * z).sum(-1) / temperature
        total = total + torch.logsumexp(logits, dim=1) - torch.cat([positive, positive])
    return total.mean()


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters, and all weights with the batch norms' running statistics (what Keras's
    ``count_params`` counts)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return {"trainable": trainable, "with_batch_norm_statistics": trainable + stats}
