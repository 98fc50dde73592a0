"""Checkpoints that a kill cannot destroy, and a guard that stops training on a non-finite loss.

After every epoch the weights and the optimizer state go to ``epoch-NNNN.weights.h5`` (written
to a temporary name and renamed into place); the two newest are kept. Resuming loads the newest
one that reads back and says so when it had to fall back to an older one. The epoch a run
resumes after is the checkpoint's, read from its name: no second file can disagree with it.

:class:`NonFiniteGuard` watches the loss after every step. The first NaN or infinity stops
training at once; the epoch it happened in is neither checkpointed nor recorded, so the last
good checkpoint stays the newest.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mmkeras.errors import MMKerasError
from mmkeras.safe_io import atomic_write, atomic_write_text

_NAME = re.compile(r"^epoch-(\d+)\.weights\.h5$")
#: a test hook, ``EPOCH:PATH``: after writing the checkpoint of epoch EPOCH to its temporary name the
#: writer creates PATH and waits there, so that a test can kill the process in the middle of the write
PAUSE_ENV = "MMKERAS_TEST_PAUSE_IN_CHECKPOINT_WRITE"


def checkpoint_path(directory: Path, epochs_completed: int) -> Path:
    return directory / f"epoch-{epochs_completed:04d}.weights.h5"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(epochs completed, file)`` for every checkpoint in ``directory``, newest first; includes
    the single checkpoint that runs written by mmkeras 0.1 (Keras's BackupAndRestore) left."""
    found = []
    if directory.is_dir():
        for p in directory.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        legacy, meta = directory / "latest.weights.h5", directory / "training_metadata.json"
        if legacy.is_file() and meta.is_file():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.append((int(json.loads(meta.read_text())["epoch"]), legacy))
    return sorted(found, key=lambda item: (item[0], item[1].name.startswith("epoch-")), reverse=True)


def _build_optimizer(model: Any) -> None:
    # the optimizer's variables must exist for its saved state to be read into them
    from mmkeras.model import build_optimizer

    build_optimizer(model)


def restore(model: Any, directory: Path, say: Callable[[str], None] = print) -> int:
    """Load the newest readable checkpoint of ``directory`` into ``model``; return its epoch
    (0 when there is none). Unreadable newer files are named and skipped; when every checkpoint
    is unreadable the error names them all and nothing is deleted."""
    candidates = list_checkpoints(directory)
    if not candidates:
        return 0
    _build_optimizer(model)
    failed = []
    for epoch, path in candidates:
        try:
            model.load_weights(str(path))
        except Exception as exc:  # noqa: BLE001 - h5py, OSError and ValueError all mean "unreadable"
            failed.append(f"{path.name} ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
            continue
        if failed:
            say(f"{directory}: {'; '.join(failed)} cannot be read; resuming from {path.name} instead")
        return epoch
    raise MMKerasError(
        f"{directory}: no checkpoint can be read ({'; '.join(failed)}); move the directory away to start over"
    )


def weights_finite(model: Any) -> bool:
    return all(np.isfinite(np.asarray(keras.ops.convert_to_numpy(v))).all() for v in model.trainable_variables)


def _check_space(model: Any, directory: Path, target: Path) -> None:
    """Refuse to start a checkpoint write the disk cannot hold: HDF5 may crash the process (not
    raise) when the disk fills in the middle of a write. The need is the weights and optimizer
    state, or the newest checkpoint's size when larger, with a margin for the file format."""
    need = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        need += sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in optimizer.variables)
    newest = list_checkpoints(directory)
    if newest:
        with contextlib.suppress(OSError):
            need = max(need, newest[0][1].stat().st_size)
    need = int(need * 1.2) + (1 << 20)
    free = shutil.disk_usage(directory).free
    if free < need:
        raise MMKerasError(
            f"cannot write {target}: {free / 2**20:.1f} MB free on its disk, about {need / 2**20:.1f} MB needed; "
            "free some space and run the same command again to resume from the last checkpoint"
        )


def save(model: Any, directory: Path, epochs_completed: int, keep: int = 2) -> Path:
    """Write the checkpoint after ``epochs_completed`` epochs and keep the ``keep`` newest."""
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory, epochs_completed)
    _check_space(model, directory, target)

    def write(tmp: Path) -> None:
        model.save_weights(str(tmp))
        epoch, _, marker = os.environ.get(PAUSE_ENV, "").partition(":")
        if marker and int(epoch) == epochs_completed:
            Path(marker).write_text(str(tmp))
            while True:  # until the test kills this process
                time.sleep(0.1)

    atomic_write(target, write)
    for _, old in list_checkpoints(directory)[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()
    if target != directory / "latest.weights.h5":  # a 0.1 run's single checkpoint is now superseded
        for legacy in ("latest.weights.h5", "training_metadata.json"):
            with contextlib.suppress(OSError):
                (directory / legacy).unlink()
    return target


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite and remembers where."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: dict[str, Any] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if self.failure is None and loss is not None and not math.isfinite(float(loss)):
            self.fail(self._epoch, batch + 1, f"loss {float(loss)}")

    def fail(self, epoch: int, step: int | None, what: str) -> None:
        self.failure = {"epoch": epoch + 1, "step": step, "what": what}
        self.model.stop_training = True

    def describe(self) -> str:
        f = self.failure or {}
        at = f"epoch {f.get('epoch')}" + (f", step {f['step']}" if f.get("step") is not None else "")
        return f"{f.get('what', 'a non-finite value')} at {at}"


class EpochRecorder(keras.callbacks.Callback):
    """At the end of every good epoch: the checkpoint, then the history row, then the state,
    each written atomically and in that order, so that none claims an epoch the checkpoint lacks."""

    def __init__(
        self,
        directory: Path,
        guard: NonFiniteGuard,
        history_file: Path | None = None,
        on_epoch: Callable[[int], None] | None = None,
    ):
        super().__init__()
        self.directory, self.guard, self.history_file, self.on_epoch = directory, guard, history_file, on_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.guard.failure is not None:
            return
        logs = dict(logs or {})
        bad = [k for k, v in logs.items() if k == "loss" and not math.isfinite(float(v))]
        if bad or not weights_finite(self.model):
            self.guard.fail(epoch, None, "non-finite weights after the epoch's last update" if not bad else "loss")
            return
        save(self.model, self.directory, epoch + 1)
        if self.history_file is not None:
            write_history_row(self.history_file, epoch, logs)
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1)


def read_history_rows(path: Path) -> dict[int, dict[str, str]]:
    """Rows of ``history.csv`` by (0-based) epoch. Rows that are not data (a repeated header,
    a line cut short by an old crash) are skipped: the history is a record, not the state."""
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise MMKerasError(f"{path}: cannot read: {exc.strerror}") from None
    rows: dict[int, dict[str, str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        try:
            epoch = int(row.get("epoch") or "")
        except ValueError:
            continue
        if None in row or any(v is None for v in row.values()):  # too many or too few cells
            continue
        rows[epoch] = row
    return rows


def write_history_row(path: Path, epoch: int, logs: dict[str, Any]) -> None:
    rows = {e: r for e, r in read_history_rows(path).items() if e < epoch}
    rows[epoch] = {"epoch": str(epoch), **{k: repr(float(v)) for k, v in logs.items()}}
    keys = sorted({k for r in rows.values() for k in r if k != "epoch"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["epoch", *keys], restval="NA", lineterminator="\n")
    writer.writeheader()
    for e in sorted(rows):
        writer.writerow(rows[e])
    atomic_write_text(path, out.getvalue())
