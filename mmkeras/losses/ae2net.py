"""AE^2-Nets (Zhang, Liu and Fu, CVPR 2019, "AE^2-Nets: Autoencoder in Autoencoder Networks"): each
view v has an inner auto-encoder, whose code z_v reconstructs x_v, and a degradation network g_v that
maps a per-sample "intact" representation H to that code. H is not produced by an encoder: it is what
best explains every present view's code through the degradation networks.

The degradation network of view v, from H [B, D] through K hidden units to the code size d_v:

    g_v(H) = tanh(H W1_v + b1_v) W2_v + b2_v        (``activation="linear"``: no tanh)

H of a sample minimises, over its present views (mask m_v = 1),

    E(H) = sum_v m_v e(g_v(H), z_v) + l2 ||H||^2,      e(a, b) = 1/d_v ||a - b||^2

with the codes z_v held constant. Its gradient, written out (backpropagation through g_v by hand, so
it is backend-agnostic and costs one forward and one backward pass of each g_v), with u_v the hidden
activation and r_v = g_v(H) - z_v:

    dE/dH = sum_v (2 m_v / d_v) [(r_v W2_v^T) * (1 - u_v^2)] W1_v^T + 2 l2 H

(without the factor 1 - u_v^2 for ``activation="linear"``). :func:`infer_intact` runs ``steps`` steps
of gradient descent with heavy-ball momentum from H = 0:

    v <- momentum v - lr dE/dH,     H <- H + v.

The networks' loss, with H held constant (the alternating optimisation of the paper), per sample:

    l = sum_v m_v [ recon_weight e(D_v(z_v), x_v) + degradation_weight e(g_v(H), z_v) ]

averaged over the samples with at least one view (:func:`ae2net_loss`).

Where this departs from the paper (say so when comparing numbers): the paper's norms are Frobenius
norms (sums over a view's elements), here each is the mean over the view's elements, so views of
different sizes weigh alike (as :func:`mmkeras.losses.reconstruction.row_mse`); the paper keeps one H per
training row and updates it across epochs, here H is inferred afresh for every batch from H = 0 by a
fixed number of steps (:mod:`mmkeras.fusions.ae2net`); the paper's degradation networks are MLPs of
any depth, here one hidden layer.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from keras import ops

from mmkeras.distribute import local_contribution


class Degradation(NamedTuple):
    """The weights of one degradation network g_v: H [B, D] -> [B, d_v] through K hidden units."""

    w1: Any  # [D, K]
    b1: Any  # [K]
    w2: Any  # [K, d_v]
    b2: Any  # [d_v]


def _f32(x: Any) -> Any:
    return ops.cast(x, "float32")


def _present(mask: Any) -> Any:
    return ops.cast(mask, "float32") > 0


def degrade(h: Any, weights: Degradation, activation: str = "tanh") -> tuple[Any, Any]:
    """g_v(H) [B, d_v] and the hidden activation u_v [B, K], in float32."""
    u = ops.matmul(_f32(h), _f32(weights.w1)) + _f32(weights.b1)
    if activation == "tanh":
        u = ops.tanh(u)
    return ops.matmul(u, _f32(weights.w2)) + _f32(weights.b2), u


def _residuals(h: Any, codes: dict[str, Any], masks: dict[str, Any], networks: dict[str, Degradation], activation):
    """{v: (r_v with missing rows zeroed, u_v, present [B, 1])} for the views in ``codes``."""
    out = {}
    for v in sorted(codes):
        y, u = degrade(h, networks[v], activation)
        present = ops.expand_dims(_present(masks[v]), -1)
        # where, not a product: a missing row's code may hold anything, inf included
        out[v] = (ops.where(present, y - _f32(codes[v]), 0.0), u, ops.cast(present, "float32"))
    return out


def intact_energy(
    h: Any,
    codes: dict[str, Any],
    masks: dict[str, Any],
    networks: dict[str, Degradation],
    l2: float = 0.0,
    activation: str = "tanh",
) -> Any:
    """E(H) per sample [B] (the module docstring): the masked degradation error of every view given in
    ``codes`` (each [B, d_v]) plus ``l2`` ||H||^2."""
    h = _f32(h)
    energy = l2 * ops.sum(h * h, axis=-1)
    for r, _, _ in _residuals(h, codes, masks, networks, activation).values():
        energy = energy + ops.mean(r * r, axis=-1)
    return energy


def intact_gradient(
    h: Any,
    codes: dict[str, Any],
    masks: dict[str, Any],
    networks: dict[str, Degradation],
    l2: float = 0.0,
    activation: str = "tanh",
) -> Any:
    """dE/dH [B, D], written out (the module docstring): each row's gradient of its own E."""
    h = _f32(h)
    grad = 2.0 * l2 * h
    for v, (r, u, _) in _residuals(h, codes, masks, networks, activation).items():
        d_u = ops.matmul(r * (2.0 / int(r.shape[-1])), ops.transpose(_f32(networks[v].w2)))
        if activation == "tanh":
            d_u = d_u * (1.0 - u * u)
        grad = grad + ops.matmul(d_u, ops.transpose(_f32(networks[v].w1)))
    return grad


def infer_intact(
    codes: dict[str, Any],
    masks: dict[str, Any],
    networks: dict[str, Degradation],
    intact_dim: int,
    steps: int,
    lr: float,
    momentum: float = 0.0,
    l2: float = 0.0,
    activation: str = "tanh",
) -> Any:
    """H [B, ``intact_dim``] in float32: ``steps`` steps of gradient descent with heavy-ball momentum on
    E (the module docstring) from H = 0. Nothing flows back through the steps: the codes and weights
    are read as constants, and H comes out as one. A row with no present view gives H = 0 (its only
    gradient is 2 l2 H)."""
    codes = {v: ops.stop_gradient(_f32(z)) for v, z in codes.items()}
    networks = {v: Degradation(*(ops.stop_gradient(_f32(w)) for w in networks[v])) for v in codes}
    batch = ops.shape(next(iter(codes.values())))[0]
    h = ops.zeros((batch, intact_dim), "float32")

    def step(_, state):
        h, velocity = state
        velocity = momentum * velocity - lr * intact_gradient(h, codes, masks, networks, l2, activation)
        return h + velocity, velocity

    h, _ = ops.fori_loop(0, steps, step, (h, ops.zeros_like(h)))
    return ops.stop_gradient(h)


def ae2net_terms(
    reconstructions: dict[str, Any],
    inputs: dict[str, Any],
    degraded: dict[str, Any],
    codes: dict[str, Any],
    masks: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per sample [B], for each view: the reconstruction error e(D_v(z_v), x_v) (the views given in
    ``reconstructions``) and the degradation error e(g_v(H), z_v) (the views given in ``degraded``),
    both 0 where the view is missing."""
    recon = {}
    for v in sorted(reconstructions):
        diff = _f32(reconstructions[v]) - _f32(inputs[v])
        row = ops.mean(ops.reshape(diff * diff, (ops.shape(diff)[0], -1)), axis=1)
        recon[v] = ops.where(_present(masks[v]), row, 0.0)
    degradation = {}
    for v in sorted(degraded):
        diff = _f32(degraded[v]) - _f32(codes[v])
        degradation[v] = ops.where(_present(masks[v]), ops.mean(diff * diff, axis=-1), 0.0)
    return recon, degradation


class AE2NetLoss(NamedTuple):
    """:func:`ae2net_loss`: this replica's contribution to the loss, and the per-sample terms [B] by view."""

    loss: Any
    recon: dict[str, Any]
    degradation: dict[str, Any]


def ae2net_loss(
    reconstructions: dict[str, Any],
    inputs: dict[str, Any],
    degraded: dict[str, Any],
    codes: dict[str, Any],
    masks: dict[str, Any],
    recon_weight: float = 1.0,
    degradation_weight: float = 1.0,
) -> AE2NetLoss:
    """The networks' loss (the module docstring): per sample
    sum_v m_v [recon_weight e(D_v(z_v), x_v) + degradation_weight e(g_v(H), z_v)], and this replica's
    contribution to its mean over the samples of the global batch with at least one view. ``degraded``
    holds g_v(H) for H held constant; the terms are those of :func:`ae2net_terms`."""
    recon, degradation = ae2net_terms(reconstructions, inputs, degraded, codes, masks)
    per_row = ops.zeros_like(any_present(masks))
    for r in recon.values():
        per_row = per_row + recon_weight * r
    for d in degradation.values():
        per_row = per_row + degradation_weight * d
    return AE2NetLoss(local_contribution(per_row, any_present(masks)), recon, degradation)


def any_present(masks: dict[str, Any]) -> Any:
    """[B] 1.0 where a sample has at least one view, else 0.0."""
    return ops.cast(ops.any(ops.stack([_present(m) for m in masks.values()]), axis=0), "float32")
