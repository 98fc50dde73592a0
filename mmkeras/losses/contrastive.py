"""Contrastive losses over the global batch: InfoNCE (one direction, and symmetric: the CLIP loss),
SimCLR's NT-Xent, GMC's terms, the VSE max-margin hinge, the supervised contrastive loss, and the
cosine distance (the positive-only limit).

Every loss returns this replica's *local contribution* to the global mean (its local rows' losses
over the global row count, :func:`mmkeras.distribute.local_contribution`), so summed over replicas
it is the loss of one device on the global batch. Local rows are scored against the columns of the
global batch: each representation is taken as a :class:`Gathered` (the local rows, every replica's
rows, and where the local rows start among them), so an objective that uses one tensor in several
terms gathers it once per step (:func:`gather_normalized`, :func:`gather`) and passes the result to
each. A plain ``[B, d]`` tensor is L2-normalised and gathered on the spot, a plain ``[B]`` mask
gathered. Masks are presence weights (1.0 present): a row with weight 0 is neither an anchor nor a
negative. Similarities and logits are float32 whatever the inputs' dtype.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from keras import ops

from mmkeras.distribute import cross_replica_gather, local_contribution

_NEG = -1e9  # the logit of an excluded column: exp underflows to exactly 0 in float32
GMC_VARIANTS = ("official", "paper")
HINGE_NEGATIVES = ("sum", "hardest")


class Gathered(NamedTuple):
    """One tensor on this replica and across the global batch.

    rows: this replica's rows [b, ...]; columns: every replica's rows [N * b, ...] (``rows`` itself
    on one device); offset: the index of ``rows[0]`` in ``columns``.
    """

    rows: Any
    columns: Any
    offset: Any


def l2_normalize(x: Any) -> Any:
    """x / max(||x||_2, 1e-12) along the last axis, in float32."""
    x = ops.cast(x, "float32")
    return x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)


def gather(x: Any) -> Gathered:
    """``x`` with every replica's rows (one all-gather, with a gradient back to the local rows)."""
    columns, offset = cross_replica_gather(x)
    return Gathered(x, columns, offset)


def gather_normalized(z: Any) -> Gathered:
    """The L2-normalised rows of ``z`` [b, d] (float32), gathered: what the similarity losses take."""
    return gather(l2_normalize(z))


def both_present(a: Gathered, b: Gathered) -> Gathered:
    """The rows where both masks are present (their product), locally and globally, without a gather."""
    return Gathered(a.rows * b.rows, a.columns * b.columns, a.offset)


def any_present(masks: Iterable[Gathered]) -> Gathered:
    """The rows where any of the masks is present (their maximum), without a gather."""
    masks = list(masks)
    rows, columns = masks[0].rows, masks[0].columns
    for m in masks[1:]:
        rows, columns = ops.maximum(rows, m.rows), ops.maximum(columns, m.columns)
    return Gathered(rows, columns, masks[0].offset)


def _vectors(z: Any) -> Gathered:
    return z if isinstance(z, Gathered) else gather_normalized(z)


def _mask(mask: Any, like: Gathered) -> Gathered:
    """``mask`` as float32 presence weights, gathered; all present when None."""
    if isinstance(mask, Gathered):
        return mask
    if mask is None:
        return Gathered(ops.ones_like(like.rows[:, 0]), ops.ones_like(like.columns[:, 0]), like.offset)
    return gather(ops.cast(mask, "float32"))


def _is_self(anchors: Gathered) -> Any:
    """[b, N] True where column j is local row i itself."""
    rows = ops.arange(ops.shape(anchors.rows)[0]) + anchors.offset
    return ops.expand_dims(rows, 1) == ops.expand_dims(ops.arange(ops.shape(anchors.columns)[0]), 0)


def info_nce_rows(anchors: Any, others: Any, scale: Any, mask: Any = None) -> Any:
    """Per local anchor row i, the cross-entropy of its positive (row i of ``others``) against every
    present column of ``others`` (0 where row i is absent):

        l_i = -log( exp(s <a_i, b_i>) / sum_{j present} exp(s <a_i, b_j>) ).

    anchors, others: :class:`Gathered` L2-normalised rows, or [b, d] tensors; scale: the logit scale
    s = 1 / temperature (a float or a scalar tensor); mask: presence [b] or :class:`Gathered`.
    """
    a, b = _vectors(anchors), _vectors(others)
    m = _mask(mask, b)
    logits = scale * ops.matmul(a.rows, ops.transpose(b.columns))
    logits = ops.where(ops.expand_dims(m.columns, 0) > 0, logits, _NEG)
    targets = ops.arange(ops.shape(a.rows)[0]) + b.offset
    positive = ops.take_along_axis(logits, ops.expand_dims(targets, 1), axis=1)[:, 0]
    return ops.where(m.rows > 0, ops.logsumexp(logits, axis=1) - positive, 0.0)


def info_nce_one_way(anchors: Any, others: Any, scale: Any, mask: Any = None) -> Any:
    """InfoNCE in one direction (van den Oord, Li and Vinyals, 2018, "Representation Learning with
    Contrastive Predictive Coding"): the mean over present anchors of :func:`info_nce_rows`,
    as this replica's contribution."""
    a = _vectors(anchors)
    m = _mask(mask, a)
    return local_contribution(info_nce_rows(a, others, scale, m), m.rows)


def info_nce(z_a: Any, z_b: Any, scale: Any, mask: Any = None) -> Any:
    """Symmetric InfoNCE, the CLIP loss (Radford et al., 2021, "Learning Transferable Visual Models
    From Natural Language Supervision"). With L2-normalised z_a, z_b (row i of each a positive pair)
    and logit scale s = 1 / temperature,

        logits_ij = s <z_a,i , z_b,j>,   L = 1/2 [ CE(logits, diag) + CE(logits^T, diag) ],

    each CE the mean over present rows, with absent rows neither anchors nor negatives. Negatives
    are cross-view only (compare :func:`nt_xent`). This replica's contribution to the global mean.
    """
    a, b = _vectors(z_a), _vectors(z_b)
    m = _mask(mask, a)
    return 0.5 * (info_nce_one_way(a, b, scale, m) + info_nce_one_way(b, a, scale, m))


def _nt_xent_rows(a: Gathered, b: Gathered, inv_tau: float, m: Gathered, aa: Any = None) -> tuple[Any, Any]:
    """NT-Xent's per-row losses over the 2b local anchors [a; b] and their weights [m; m];
    ``aa`` (a's scaled self-similarities) may be given when the caller shares it between terms."""
    if aa is None:
        aa = inv_tau * ops.matmul(a.rows, ops.transpose(a.columns))
    col_ok = ops.expand_dims(m.columns, 0) > 0
    neg_ok = ops.logical_and(col_ok, ops.logical_not(_is_self(a)))
    ab = inv_tau * ops.matmul(a.rows, ops.transpose(b.columns))
    ba = inv_tau * ops.matmul(b.rows, ops.transpose(a.columns))
    bb = inv_tau * ops.matmul(b.rows, ops.transpose(b.columns))
    positive = inv_tau * ops.sum(a.rows * b.rows, axis=-1)
    a_rows = ops.logsumexp(ops.concatenate([ops.where(neg_ok, aa, _NEG), ops.where(col_ok, ab, _NEG)], 1), 1)
    b_rows = ops.logsumexp(ops.concatenate([ops.where(col_ok, ba, _NEG), ops.where(neg_ok, bb, _NEG)], 1), 1)
    per_row = ops.concatenate([a_rows - positive, b_rows - positive], 0)
    weights = ops.concatenate([m.rows, m.rows], 0)
    return ops.where(weights > 0, per_row, 0.0), weights


def nt_xent(z_a: Any, z_b: Any, temperature: float = 0.1, mask: Any = None) -> Any:
    """SimCLR's symmetric NT-Xent (Chen, Kornblith, Norouzi and Hinton, 2020, "A Simple Framework
    for Contrastive Learning of Visual Representations"). The 2N rows Z = [z_a; z_b] are
    L2-normalised; row k's positive p(k) is its partner in the other view and its negatives are the
    other 2N - 2 rows (cross-view and intra-view), at temperature tau:

        l(k) = -log( exp(<Z_k, Z_p(k)> / tau) / sum_{j != k} exp(<Z_k, Z_j> / tau) ),
        L = mean over the 2N rows k.

    Absent rows (``mask``) are neither anchors nor negatives. GMC's official term for modality m
    (:func:`gmc_terms`) is exactly this with z_a = the joint and z_b = z_m. This replica's
    contribution to the global mean.
    """
    a, b = _vectors(z_a), _vectors(z_b)
    return local_contribution(*_nt_xent_rows(a, b, 1.0 / float(temperature), _mask(mask, a)))


def _named(values: Any, what: str) -> dict[str, Any]:
    if isinstance(values, dict):
        return dict(values)
    if isinstance(values, (list, tuple)):
        return {str(i): v for i, v in enumerate(values)}
    raise TypeError(f"gmc: {what} must be a list or a dict of [B, d] tensors, got {type(values).__name__}")


def gmc_terms(
    joint: Any,
    modality_reps: Any,
    temperature: float = 0.1,
    mask: Any = None,
    variant: str = "official",
) -> dict[str, Any]:
    """GMC's per-modality terms (Poklukar, Vasco et al., ICML 2022, "Geometric Multimodal Contrastive
    Representation Learning"), keyed by modality (list inputs are keyed "0", "1", ...), each this
    replica's contribution to the global mean. With s(a, b) = exp(<a, b> / tau) on L2-normalised
    vectors, z_J the joint and z_m modality m's representation of B samples:

    ``variant="official"`` (the authors' code): for each m, Z = [z_J,1..B ; z_m,1..B] (2B rows); row
    k's positive p(k) is its joint/modality partner and stays in the denominator, the row itself
    does not: l_m(k) = -log( s(Z_k, Z_p(k)) / sum_{j != k} s(Z_k, Z_j) ), the term is the mean over
    the 2B rows. This is :func:`nt_xent` (z_J, z_m).

    ``variant="paper"`` (Eq. 2): one anchor per sample, the modality, with the positive excluded
    from the denominator and modality-joint, modality-modality and joint-joint negatives:
    l_m(i) = -log( s(z_m,i, z_J,i) / sum_{j != i} [s(z_m,i, z_J,j) + s(z_m,i, z_m,j) + s(z_J,i, z_J,j)] ),
    the term is the mean over i (the paper sums; the mean only rescales by 1/B).

    A sample whose modality m is absent drops out of term m (its joint and modality rows are neither
    anchors nor negatives there), so each term equals the unmasked term on its present rows.

    joint: [B, d] or :class:`Gathered`; modality_reps: a list or dict of the same; mask: a matching
    list or dict of [B] presence (or :class:`Gathered`), or None for all present.
    """
    if variant not in GMC_VARIANTS:
        raise ValueError(f"gmc: variant must be one of {list(GMC_VARIANTS)}, got {variant!r}")
    if temperature <= 0:
        raise ValueError(f"gmc: temperature must be positive, got {temperature}")
    reps = _named(modality_reps, "modality_reps")
    if not reps:
        raise ValueError("gmc: at least one modality representation is needed")
    masks = _named(mask, "mask") if mask is not None else {}
    if mask is not None and sorted(masks) != sorted(reps):
        raise ValueError(f"gmc: mask must name the same modalities as modality_reps: {sorted(masks)} vs {sorted(reps)}")
    inv_tau = 1.0 / float(temperature)
    j = _vectors(joint)
    jj = inv_tau * ops.matmul(j.rows, ops.transpose(j.columns))  # joint-joint, shared by every term
    terms = {}
    for name, rep in reps.items():
        z = _vectors(rep)
        m = _mask(masks.get(name), z)
        if variant == "official":
            terms[name] = local_contribution(*_nt_xent_rows(j, z, inv_tau, m, jj))
            continue
        col_ok = ops.expand_dims(m.columns, 0) > 0
        neg_ok = ops.logical_and(col_ok, ops.logical_not(_is_self(j)))
        mj = inv_tau * ops.matmul(z.rows, ops.transpose(j.columns))
        mm = inv_tau * ops.matmul(z.rows, ops.transpose(z.columns))
        positive = inv_tau * ops.sum(j.rows * z.rows, axis=-1)
        blocks = [ops.where(neg_ok, s, _NEG) for s in (mj, mm, jj)]
        has_negatives = ops.any(neg_ok, axis=1)  # a lone present sample has no negatives: no term
        per_row = ops.where(has_negatives, ops.logsumexp(ops.concatenate(blocks, 1), 1) - positive, 0.0)
        weights = m.rows * ops.cast(has_negatives, "float32")
        terms[name] = local_contribution(ops.where(weights > 0, per_row, 0.0), weights)
    return terms


def gmc_loss(
    joint: Any,
    modality_reps: Any,
    temperature: float = 0.1,
    mask: Any = None,
    variant: str = "official",
) -> Any:
    """The GMC loss: L = sum over modalities of :func:`gmc_terms`."""
    return sum(gmc_terms(joint, modality_reps, temperature, mask, variant).values())


def _hinge_rows(anchors: Gathered, others: Gathered, positive: Any, margin: float, m: Gathered, negatives: str) -> Any:
    """Per local anchor row: the hinge over the present global columns of ``others`` except its own."""
    sim = ops.matmul(anchors.rows, ops.transpose(others.columns))
    own = ops.one_hot(
        ops.arange(ops.shape(anchors.rows)[0]) + others.offset, ops.shape(others.columns)[0], dtype="float32"
    )
    valid = ops.expand_dims(m.columns, 0) * (1.0 - own)
    hinge = ops.relu(margin - ops.expand_dims(positive, 1) + sim) * valid
    return ops.max(hinge, axis=1) if negatives == "hardest" else ops.sum(hinge, axis=1)


def vse_hinge(z_a: Any, z_b: Any, margin: float = 0.2, negatives: str = "sum", mask: Any = None) -> Any:
    """The bidirectional visual-semantic embedding max-margin loss. With s the cosine similarity,
    margin alpha, and the present rows j != i of the global batch as row i's negatives,

        sum:      l_i = sum_j [alpha - s(a_i, b_i) + s(a_i, b_j)]_+ + sum_j [alpha - s(a_i, b_i) + s(a_j, b_i)]_+
        hardest:  l_i = max_j [alpha - s(a_i, b_i) + s(a_i, b_j)]_+ + max_j [alpha - s(a_i, b_i) + s(a_j, b_i)]_+

    and L is the mean of l_i over present rows (this replica's contribution). The sum is Kiros,
    Salakhutdinov and Zemel (2014), "Unifying Visual-Semantic Embeddings with Multimodal Neural
    Language Models"; the hardest negative is VSE++ (Faghri et al., 2018). Both papers sum l_i over
    the batch; the mean only rescales the learning rate and keeps L independent of the batch size.
    """
    if negatives not in HINGE_NEGATIVES:
        raise ValueError(f"negatives must be one of {list(HINGE_NEGATIVES)}, got {negatives!r}")
    a, b = _vectors(z_a), _vectors(z_b)
    m = _mask(mask, a)
    positive = ops.sum(a.rows * b.rows, axis=-1)
    per_row = _hinge_rows(a, b, positive, margin, m, negatives) + _hinge_rows(b, a, positive, margin, m, negatives)
    return local_contribution(per_row, m.rows)


def supervised_contrastive(views: Sequence[Any], labels: Any, temperature: float = 0.1, mask: Any = None) -> Any:
    """The supervised contrastive loss L^sup_out (Khosla et al., NeurIPS 2020, "Supervised
    Contrastive Learning", Eq. 2) over V views of N samples. With the V*N L2-normalised rows z_k,
    labels y_k, A(k) = every other present row and P(k) = the rows of A(k) with label y_k:

        l(k) = -1/|P(k)| sum_{p in P(k)} log( exp(z_k.z_p / tau) / sum_{a in A(k)} exp(z_k.z_a / tau) ),

    L = the mean of l(k) over the present anchors that have a positive (this replica's contribution).

    views: V [b, d] tensors or :class:`Gathered`; labels: [b] integers or :class:`Gathered`;
    mask: [b] presence (shared by the views) or :class:`Gathered`.
    """
    z = [_vectors(v) for v in views]
    y = labels if isinstance(labels, Gathered) else gather(ops.reshape(ops.cast(labels, "int32"), (-1,)))
    valid = _mask(mask, z[0])
    count_views = len(z)
    columns = ops.concatenate([v.columns for v in z], axis=0)  # [V * N, d]
    col_y = ops.tile(y.columns, (count_views,))
    col_valid = ops.tile(valid.columns, (count_views,)) > 0
    size = ops.shape(y.columns)[0]
    col_index = ops.arange(ops.shape(columns)[0])
    per_row, weight = [], []
    for v in range(count_views):
        own = ops.arange(ops.shape(y.rows)[0]) + z[v].offset + v * size
        others = col_valid[None, :] & (ops.expand_dims(own, 1) != col_index[None, :])
        logits = ops.where(others, ops.matmul(z[v].rows, ops.transpose(columns)) / temperature, _NEG)
        log_prob = logits - ops.logsumexp(logits, axis=1, keepdims=True)
        positive = ops.cast(others & (ops.expand_dims(y.rows, 1) == col_y[None, :]), "float32")
        count = ops.sum(positive, axis=1)
        mean_positive = ops.sum(ops.where(positive > 0, log_prob, 0.0), axis=1) / ops.maximum(count, 1.0)
        per_row.append(-mean_positive)
        weight.append(valid.rows * ops.cast(count > 0, "float32"))
    return local_contribution(ops.concatenate(per_row, 0), ops.concatenate(weight, 0))


NCE_FORMS = ("ntxent", "clip")


def nce_loss(z_a: Any, z_b: Any, temperature: float, mask: Any = None, form: str = "ntxent") -> Any:
    """NCE(z_a, z_b) in the named form: ``ntxent`` (:func:`nt_xent`, cross- and intra-view
    negatives, as in CoMM's and SimCLR's code) or ``clip`` (:func:`info_nce` at scale 1 / tau,
    cross-view negatives only)."""
    if form == "ntxent":
        return nt_xent(z_a, z_b, temperature, mask)
    if form == "clip":
        return info_nce(z_a, z_b, 1.0 / temperature, mask)
    raise ValueError(f"nce must be one of {list(NCE_FORMS)}, got {form!r}")


def cosine_distance(z_a: Any, z_b: Any, mask: Any = None) -> Any:
    """Strong coordination by cosine similarity (Baltrusaitis, Ahuja and Morency, 2019, "Multimodal
    Machine Learning: A Survey and Taxonomy"): L = mean over present rows i of
    1 - cos(z_a,i , z_b,i), cos(u, v) = <u, v> / (|u| |v|); no negatives, so nothing is gathered.
    This replica's contribution to the global mean."""
    per_row = 1.0 - ops.sum(l2_normalize(z_a) * l2_normalize(z_b), axis=-1)
    return local_contribution(per_row, mask)
