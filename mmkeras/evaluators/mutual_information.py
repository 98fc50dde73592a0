"""Variational lower bounds on mutual information between representations, and between each representation
and the label, from small trained critics (InfoNCE and NWJ / MINE-f)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmkeras.data.base import DataSplit
from mmkeras.errors import MMKerasError
from mmkeras.evaluators.base import Evaluator
from mmkeras.evaluators.downstream import _inputs, _present_rows
from mmkeras.params import PositiveFloat, PositiveInt

ESTIMATORS = ("infonce", "nwj")
CRITICS = ("separable", "concat")
LABEL = "label"
#: a score far below any real one, masking the positive pairs out of NWJ's second term
_MASKED = -1e9


def infonce_bound(scores: Any) -> Any:
    """The InfoNCE lower bound (van den Oord, Li & Vinyals 2018; Poole et al. 2019, eq. 12) from a
    ``[B, B]`` critic score matrix ``s[i, j] = f(x_i, y_j)`` whose diagonal holds the paired samples:

        I(X; Y) >= 1/B sum_i [ s_ii - log(1/B sum_j exp(s_ij)) ]
                 = mean_i (s_ii - logsumexp_j s_ij) + log B.

    It never exceeds ``log B``: a batch of B pairs cannot certify more than log B nats.
    Computed in float32 with ``keras.ops``; returns a scalar tensor."""
    from keras import ops

    scores = ops.cast(scores, "float32")
    size = ops.cast(ops.shape(scores)[0], "float32")
    return ops.mean(ops.diagonal(scores) - ops.logsumexp(scores, axis=1)) + ops.log(size)


def nwj_bound(scores: Any) -> Any:
    """The NWJ lower bound (Nguyen, Wainwright & Jordan 2010), the f-divergence form that MINE-f
    trains (Belghazi et al. 2018, eq. 7 with f*(t) = exp(t - 1)), from a ``[B, B]`` critic score matrix
    with the paired samples on the diagonal and the ``B (B - 1)`` off-diagonal pairs standing for
    samples of ``p(x) p(y)``:

        I(X; Y) >= E_p(x,y)[T] - E_p(x)p(y)[exp(T - 1)]
                 ~ mean_i s_ii - exp(logsumexp_{i != j} s_ij - log(B (B - 1)) - 1).

    Tight at ``T = 1 + log p(x, y) / (p(x) p(y))``; unlike InfoNCE it has no log B ceiling, at the
    cost of a higher variance. Computed in float32 with ``keras.ops``; returns a scalar tensor."""
    from keras import ops

    scores = ops.cast(scores, "float32")
    size = ops.shape(scores)[0]
    eye = ops.eye(size, dtype="bool")
    joint = ops.mean(ops.diagonal(scores))
    off = ops.reshape(ops.where(eye, _MASKED, scores), (-1,))
    count = ops.cast(size * (size - 1), "float32")
    return joint - ops.exp(ops.logsumexp(off) - ops.log(count) - 1.0)


BOUNDS = {"infonce": infonce_bound, "nwj": nwj_bound}


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The two-sided Student-t confidence interval of the mean of ``values`` (``None`` for fewer than two)."""
    if len(values) < 2:
        return None
    from scipy import stats

    x = np.asarray(values, np.float64)
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return float(x.mean() - half), float(x.mean() + half)


def build_critic(
    critic: str = "separable",
    hidden_units: list[int] = (64,),  # type: ignore[assignment]
    embedding_dim: int = 32,
    seed: int = 0,
) -> Any:
    """A Keras model mapping ``(a [B, dim_a], b [B, dim_b])`` to the ``[B, B]`` scores of every pairing
    ``s[i, j] = T(a_i, b_j)``, in float32 whatever the global dtype policy.

    ``separable``: ``f(a_i)^T g(b_j)``, two ReLU MLPs (``hidden_units``) with ``embedding_dim`` linear
    outputs (Poole et al. 2019's separable critic): B + B network passes per batch.
    ``concat``: one ReLU MLP on ``[a_i, b_j]`` with a scalar output, over all B^2 pairings
    (Belghazi et al. 2018's statistics network)."""
    import keras
    from keras import ops

    if critic not in CRITICS:
        raise ValueError(f"mutual_information: critic must be one of {list(CRITICS)}, got {critic!r}")
    seeds = itertools.count(seed * 1000)

    def mlp(out: int, name: str) -> keras.Sequential:
        sizes = [*hidden_units, out]
        return keras.Sequential(
            [
                keras.layers.Dense(
                    u,
                    activation="relu" if i < len(hidden_units) else None,
                    dtype="float32",
                    kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                )
                for i, u in enumerate(sizes)
            ],
            name=name,
        )

    class Critic(keras.Model):
        def __init__(self) -> None:
            super().__init__(name=f"{critic}_critic", dtype="float32")
            if critic == "separable":
                self.f, self.g = mlp(embedding_dim, "f"), mlp(embedding_dim, "g")
            else:
                self.t = mlp(1, "t")

        def call(self, inputs: list[Any]) -> Any:
            a, b = (ops.cast(x, "float32") for x in inputs)
            if critic == "separable":
                return ops.matmul(self.f(a), ops.transpose(self.g(b)))
            rows, cols = ops.shape(a)[0], ops.shape(b)[0]
            # row i * cols + j of the pairing holds [a_i, b_j]
            pairs = ops.concatenate([ops.repeat(a, cols, axis=0), ops.tile(b, (rows, 1))], axis=-1)
            return ops.reshape(self.t(pairs), (rows, cols))

    return Critic()


def _batched_bound(
    model: Any, bound: Any, a: np.ndarray, b: np.ndarray, batch_size: int, rng: Any
) -> tuple[float, int]:
    """``bound`` of ``model``'s scores on the rows ``(a, b)`` shuffled into full batches of ``batch_size``
    (one batch of all rows if fewer), averaged over batches; and the batch size used."""
    import keras

    batch = min(batch_size, len(a))
    rows = rng.permutation(len(a))
    values = []
    for start in range(0, len(rows) - batch + 1, batch):
        idx = rows[start : start + batch]
        values.append(float(keras.ops.convert_to_numpy(bound(model([a[idx], b[idx]], training=False)))))
    return float(np.mean(values)), batch


def estimate_bound(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    estimator: str = "infonce",
    critic: str = "separable",
    steps: int = 500,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    hidden_units: list[int] = (64,),  # type: ignore[assignment]
    embedding_dim: int = 32,
    seed: int = 0,
    validation_fraction: float = 0.0,
    checks: int = 10,
    select_on: str = "train",
) -> tuple[float, int]:
    """Trains a critic on the paired rows ``train = (a, b)`` for ``steps`` Adam steps of ``batch_size``
    rows (fresh permutations of the rows, drawn with ``seed``), maximising ``estimator``'s bound, then
    evaluates the bound on ``test``'s rows, shuffled into full batches of the same size (one batch of
    all rows if fewer), averaged over batches. Returns (the bound in nats, the evaluation batch size).

    With ``validation_fraction`` > 0, that fraction of the training rows is held out, the bound is
    measured on it before training and after each of ``checks`` equal parts of the steps, and the
    critic that scored best there is the one evaluated on ``test``: a critic that starts fitting the
    training rows' noise (its held-out bound falling, even below 0) is not the one reported. The test
    rows play no part in the choice, so the result is still a held-out lower bound. ``select_on="test"``
    holds the fraction out of the *test* rows instead and reports the bound on the rest: for test data
    that differ from the training data (other speakers, say), where a critic chosen on training rows can
    still score far below 0."""
    import keras

    if estimator not in BOUNDS:
        raise ValueError(f"mutual_information: estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    bound = BOUNDS[estimator]
    a, b = (np.asarray(v, np.float32) for v in train)
    a_test, b_test = (np.asarray(v, np.float32) for v in test)
    rng = np.random.default_rng(seed)
    if select_on not in ("train", "test"):
        raise ValueError(f"mutual_information: select_on must be 'train' or 'test', got {select_on!r}")
    source = len(a) if select_on == "train" else len(a_test)
    held = int(round(validation_fraction * source)) if validation_fraction > 0 else 0
    if held and select_on == "train":
        perm = rng.permutation(len(a))
        a_val, b_val = a[perm[:held]], b[perm[:held]]
        a, b = a[perm[held:]], b[perm[held:]]
    elif held:
        perm = rng.permutation(len(a_test))
        a_val, b_val = a_test[perm[:held]], b_test[perm[:held]]
        a_test, b_test = a_test[perm[held:]], b_test[perm[held:]]
    if len(a) < 2 or len(a_test) < 2 or (held and held < 2):
        raise ValueError(
            f"mutual_information: a bound needs at least 2 paired rows in each split, got {len(a)} training "
            f"and {len(a_test)} test rows{f' ({held} held out to choose the critic)' if held else ''}"
        )
    batch = min(batch_size, len(a))
    needed = steps * batch
    order = np.concatenate([rng.permutation(len(a)) for _ in range(-(-needed // len(a)))])[:needed]
    model = build_critic(critic, hidden_units, embedding_dim, seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=lambda _, scores: -bound(scores),
        jit_compile=False,  # a few hundred steps of a small network: compiling would cost more than it saves
    )
    # one row per training pair; the targets are unused (the loss reads only the score matrix)
    parts = max(1, min(checks, steps)) if held else 1
    bounds = np.linspace(0, steps, parts + 1).round().astype(int) * batch
    if held:
        model([a_val[:2], b_val[:2]])  # build, so the untrained critic is a candidate too
        best = (
            _batched_bound(model, bound, a_val, b_val, batch_size, np.random.default_rng(seed))[0],
            model.get_weights(),
        )
    for start, stop in zip(bounds[:-1], bounds[1:]):
        part = order[start:stop]
        model.fit(
            [a[part], b[part]], np.zeros(len(part), np.float32), batch_size=batch, epochs=1, shuffle=False, verbose=0
        )
        if held:
            score = _batched_bound(model, bound, a_val, b_val, batch_size, np.random.default_rng(seed))[0]
            if score > best[0]:
                best = (score, model.get_weights())
    if held:
        model.set_weights(best[1])
    return _batched_bound(model, bound, a_test, b_test, batch_size, rng)


class MutualInformation(Evaluator):
    """Variational lower bounds on the mutual information between each modality's representation and
    the label, ``I(z_m; y)`` (y one-hot), and between the representations of each pair of modalities,
    ``I(z_a; z_b)``, from ``model.encode`` with one modality.

    For each quantity and estimator, a small critic is trained on the ``train`` split's rows where the
    modalities are present (representations standardised with the training mean and deviation; labels
    one-hot) to maximise the bound, and the bound is evaluated on the ``test`` split (else
    ``validation``): a held-out estimate, not inflated by the critic's fit. Each is repeated over
    ``seeds`` critic seeds; results give the mean and a 95% Student-t confidence interval over seeds,
    in nats and bits.

    Estimators: ``infonce`` (van den Oord et al. 2018, :func:`infonce_bound`): low variance but at most
    ``log(batch_size)`` nats, so a true value above that reads as about ``log(batch_size)``; ``nwj``
    (Nguyen, Wainwright & Jordan 2010; MINE-f of Belghazi et al. 2018, :func:`nwj_bound`): no ceiling,
    higher variance. Both are lower bounds only as good as the critic: a small or undertrained critic
    underestimates, and with no information to find, a critic that fitted the training rows' noise
    scores slightly below 0 on held-out rows. ``I(z_m; y)`` is at most the label entropy ``H(y)``,
    reported with it.

    Cost: (modalities + pairs) x estimators x seeds critic trainings of ``steps`` steps each (a second
    or two apiece for the defaults on a CPU), plus one ``model.encode`` per modality and split.

    Args:
        estimators: which bounds: ``infonce``, ``nwj``.
        pairs: ``"all"`` (every pair of modalities), or a list like ``[[image, sound]]``; ``[]`` for none.
        labels: whether to estimate ``I(z_m; y)`` for each modality (needs labelled data).
        critic: ``separable`` (``f(a)^T g(b)``, cheap) or ``concat`` (an MLP on ``[a, b]``, B^2 passes per batch).
        steps: Adam steps per critic.
        batch_size: rows per step, and per evaluation batch (InfoNCE's ceiling is ``log(batch_size)``).
        learning_rate: Adam's learning rate.
        hidden_units: the critic MLPs' hidden ReLU layers.
        embedding_dim: the separable critic's output size.
        seeds: how many critics (seeds ``seed``, ``seed + 1``, ...) per quantity and estimator.
        max_rows: at most this many rows of each split per quantity (drawn with ``seed``), or all.
        seed: the first critic seed, and the seed of the row draws.
        validation_fraction: this fraction of the training rows is held out to choose, among the critic
            before training and after each tenth of the steps, the one evaluated on the test rows (0: the
            last one). It guards against a critic that fits the training rows' noise.
        select_on: ``train`` (the held-out rows come from the training split) or ``test`` (they come from
            the test split, and the bound is reported on its other rows): for test data unlike the
            training data. On the `hard` MHD's sound (test voices unlike the training ones) GMC's
            representation gave InfoNCE -2.8 nats with critics chosen on training rows (docs/information.md).
    """

    def __init__(
        self,
        estimators: list[Literal["infonce", "nwj"]] = ("infonce", "nwj"),  # type: ignore[assignment]
        pairs: list[list[str]] | Literal["all"] = "all",
        labels: bool = True,
        critic: Literal["separable", "concat"] = "separable",
        steps: PositiveInt = 500,
        batch_size: PositiveInt = 128,
        learning_rate: PositiveFloat = 2e-3,
        hidden_units: list[PositiveInt] = (64,),  # type: ignore[assignment]
        embedding_dim: PositiveInt = 32,
        seeds: PositiveInt = 3,
        max_rows: PositiveInt | None = None,
        seed: int = 0,
        validation_fraction: float = 0.2,
        select_on: Literal["train", "test"] = "train",
    ):
        estimators = [estimators] if isinstance(estimators, str) else list(estimators)
        unknown = [e for e in estimators if e not in ESTIMATORS]
        if unknown or not estimators:
            raise ValueError(
                f"mutual_information: estimators must be a non-empty list of {list(ESTIMATORS)}, got {estimators!r}"
            )
        if isinstance(pairs, str):
            if pairs != "all":
                raise ValueError(f"mutual_information: pairs must be 'all' or a list of [a, b] pairs, got {pairs!r}")
        else:
            pairs = [list(p) for p in pairs]
            bad = [p for p in pairs if len(p) != 2 or p[0] == p[1]]
            if bad:
                raise ValueError(f"mutual_information: each pair must name two different modalities, got {bad[0]!r}")
        if critic not in CRITICS:
            raise ValueError(f"mutual_information: critic must be one of {list(CRITICS)}, got {critic!r}")
        for name, value in (("steps", steps), ("embedding_dim", embedding_dim), ("seeds", seeds)):
            if value < 1:
                raise ValueError(f"mutual_information: {name} must be at least 1, got {value}")
        if batch_size < 2:
            raise ValueError(
                f"mutual_information: batch_size must be at least 2 (a bound needs negatives), got {batch_size}"
            )
        if not learning_rate > 0:
            raise ValueError(f"mutual_information: learning_rate must be positive, got {learning_rate}")
        if any(u < 1 for u in hidden_units):
            raise ValueError(f"mutual_information: hidden_units must be positive, got {list(hidden_units)}")
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"mutual_information: max_rows must be at least 2 (or null for all rows), got {max_rows}")
        if not pairs and not labels:
            raise ValueError("mutual_information: nothing to estimate: pairs is empty and labels is false")
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"mutual_information: validation_fraction must be in [0, 1), got {validation_fraction}")
        if select_on not in ("train", "test"):
            raise ValueError(f"mutual_information: select_on must be 'train' or 'test', got {select_on!r}")
        self.validation_fraction, self.select_on = float(validation_fraction), select_on
        self.estimators, self.pairs, self.labels, self.critic = estimators, pairs, bool(labels), critic
        self.steps, self.batch_size, self.learning_rate = int(steps), int(batch_size), float(learning_rate)
        self.hidden_units, self.embedding_dim = [int(u) for u in hidden_units], int(embedding_dim)
        self.seeds, self.max_rows, self.seed = int(seeds), max_rows, int(seed)

    def evaluate(self, model: Any, data: dict[str, DataSplit], output_dir: Path) -> dict[str, Any]:
        train, test = data.get("train"), data.get("test") or data.get("validation")
        if train is None or test is None:
            raise MMKerasError(
                f"mutual_information needs a train split and a test or validation split; got {sorted(data)}"
            )
        mods = sorted(model.modalities)
        if self.pairs == "all":
            pairs = [list(p) for p in itertools.combinations(mods, 2)]
        else:
            pairs = [sorted(p) for p in self.pairs]
            unknown = [m for p in pairs for m in p if m not in mods]
            if unknown:
                raise MMKerasError(
                    f"mutual_information: pairs name {unknown[0]!r}, not a modality of the model (modalities: {mods})"
                )
        labelled = train.labels is not None and test.labels is not None
        if self.labels and not labelled and not pairs:
            raise MMKerasError("mutual_information: labels is true but the data set gave no labels, and no pairs")
        num_classes = int(max(np.max(train.labels), np.max(test.labels))) + 1 if labelled else 0
        targets: list[tuple[str, str]] = []
        if self.labels and labelled:
            targets += [(m, LABEL) for m in mods]
        targets += [(a, b) for a, b in pairs]

        estimates: dict[str, dict[str, Any]] = {}
        rows_used: dict[str, dict[str, int]] = {}
        for a, b in targets:
            name = f"{a}; {b}"
            present = [a] if b == LABEL else [a, b]
            train_ab = self._paired(model, train, mods, present, b, num_classes)
            test_ab = self._paired(model, test, mods, present, b, num_classes)
            if len(train_ab[0]) < 2 or len(test_ab[0]) < 2:
                continue
            mean, std = train_ab[0].mean(axis=0), train_ab[0].std(axis=0) + 1e-8
            train_ab = ((train_ab[0] - mean) / std, train_ab[1])
            test_ab = ((test_ab[0] - mean) / std, test_ab[1])
            if b != LABEL:
                mean, std = train_ab[1].mean(axis=0), train_ab[1].std(axis=0) + 1e-8
                train_ab = (train_ab[0], (train_ab[1] - mean) / std)
                test_ab = (test_ab[0], (test_ab[1] - mean) / std)
            estimates[name] = {}
            for estimator in self.estimators:
                runs, limit = [], None
                for s in range(self.seeds):
                    value, test_batch = estimate_bound(
                        train_ab,
                        test_ab,
                        estimator,
                        self.critic,
                        self.steps,
                        self.batch_size,
                        self.learning_rate,
                        self.hidden_units,
                        self.embedding_dim,
                        self.seed + s,
                        self.validation_fraction,
                        select_on=self.select_on,
                    )
                    runs.append(value)
                    limit = math.log(test_batch) if estimator == "infonce" else None
                estimates[name][estimator] = _summary(runs, limit)
            rows_used[name] = {"train": len(train_ab[0]), "test": len(test_ab[0])}
        if not estimates:
            raise MMKerasError("mutual_information: no quantity has 2 or more rows with its modalities present")
        results: dict[str, Any] = {
            "model": str(getattr(model, "name", "model")),
            "estimates": estimates,
            "estimators": list(self.estimators),
            "critic": self.critic,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seeds": self.seeds,
            "validation_fraction": self.validation_fraction,
            "select_on": self.select_on,
            "rows": rows_used,
        }
        if labelled:
            counts = np.bincount(np.asarray(test.labels).ravel())
            p = counts[counts > 0] / counts.sum()
            results["label_entropy_nats"] = float(-np.sum(p * np.log(p)))
        return results

    def _paired(
        self, model: Any, split: DataSplit, mods: list[str], present: list[str], other: str, num_classes: int
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = _present_rows(split, present)
        if self.max_rows is not None and rows.sum() > self.max_rows:
            keep = np.random.default_rng(self.seed).choice(np.flatnonzero(rows), self.max_rows, replace=False)
            rows = np.zeros_like(rows)
            rows[keep] = True
        n = int(rows.sum())
        if n == 0:
            return np.zeros((0, 1)), np.zeros((0, 1))
        x = _inputs(split, mods, rows)
        z_a = np.asarray(model.encode(x, [present[0]]), np.float64).reshape(n, -1)
        if other == LABEL:
            z_b = np.eye(num_classes)[np.asarray(split.labels).ravel()[rows]]
        else:
            z_b = np.asarray(model.encode(x, [other]), np.float64).reshape(n, -1)
        return z_a, z_b

    def report(self, results: dict[str, Any]) -> str:
        seeds = results["seeds"]
        spread = f"mean [95% t-interval] over {seeds} critic seeds" if seeds > 1 else "one critic seed"
        columns = results["estimators"]
        lines = [
            f"Variational lower bounds on mutual information in nats and bits, critics "
            f"({results['critic']}) trained for {results['steps']} steps of {results['batch_size']} rows on the "
            f"training split and evaluated on held-out rows; {spread}. Lower bounds: the true value may be higher.",
            "",
            "| I(·; ·) | "
            + " | ".join(f"{c} (nats)" for c in columns)
            + " | "
            + " | ".join(f"{c} (bits)" for c in columns)
            + " |",
            "|---|" + "---|" * (2 * len(columns)),
        ]
        notes = []
        for name, by_estimator in results["estimates"].items():
            cells = [_cell(by_estimator.get(c), "nats") for c in columns]
            cells += [_cell(by_estimator.get(c), "bits") for c in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            info = by_estimator.get("infonce")
            if info and info["limit_nats"] is not None and info["nats"] > info["limit_nats"] - 0.1:
                notes.append(f"I({name}) by InfoNCE is at its log(batch) ceiling of {info['limit_nats']:.2f} nats")
        text = "\n".join(lines) + "\n"
        if "infonce" in columns:
            text += (
                "\nInfoNCE cannot exceed log(batch size) = "
                f"{math.log(results['batch_size']):.2f} nats; NWJ has no such ceiling but a higher variance.\n"
            )
        if "label_entropy_nats" in results:
            text += f"I(z; label) is at most the label entropy H(y) = {results['label_entropy_nats']:.3f} nats.\n"
        if notes:
            text += "".join(f"- {n}: the true value may be far higher.\n" for n in notes)
        return text


def _summary(runs: list[float], limit: float | None) -> dict[str, Any]:
    interval = t_interval(runs)
    bits = [r / math.log(2) for r in runs]
    return {
        "nats": float(np.mean(runs)),
        "bits": float(np.mean(bits)),
        "ci95_nats": list(interval) if interval else None,
        "ci95_bits": [v / math.log(2) for v in interval] if interval else None,
        "runs_nats": [float(r) for r in runs],
        "limit_nats": limit,
    }


def _cell(score: dict[str, Any] | None, unit: str) -> str:
    if score is None:
        return ""
    interval = score[f"ci95_{unit}"]
    text = f"{score[unit]:.3f}"
    return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
