"""Write every stand-in file, in the published layouts, into one folder.

    mmkeras-multibench-standin OUT_DIR [--seed 0] [--rows N]

writes ``mosi.pkl``, ``mosei.pkl``, ``humor.pkl``, ``sarcasm.pkl`` (the affect pickles), ``im.pk`` (MIMIC)
and ``avmnist/`` (AV-MNIST's folder). They are synthetic, with a known amount of redundant, unique and
synergistic information per modality (each writer's docstring gives the formulas), and exist so that
recipes, loaders and tests run without the real files: every recipe reads them through the same
loader as the real data (``data.params.path``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

CORPORA = ("mosi", "mosei", "humor", "sarcasm")


def write_all(out: str | Path, seed: int = 0, rows: int | None = None) -> list[Path]:
    """Write every stand-in into ``out`` (``rows`` training rows each; None: each writer's default);
    returns the paths written."""
    from mmkeras_multibench.affect import write_standin
    from mmkeras_multibench.avmnist import write_avmnist_standin
    from mmkeras_multibench.mimic import write_mimic_standin

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = {} if rows is None else {"rows": rows}
    written = [write_standin(out / f"{corpus}.pkl", corpus, seed=seed, **size) for corpus in CORPORA]
    written.append(write_mimic_standin(out / "im.pk", seed=seed, **size))
    written.append(write_avmnist_standin(out / "avmnist", seed=seed, **size))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmkeras-multibench-standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the folder to write into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="the stand-in's seed (default 0)")
    parser.add_argument("--rows", type=int, default=None, help="training rows per data set (default: each one's)")
    args = parser.parse_args(argv)
    for path in write_all(args.out, args.seed, args.rows):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
