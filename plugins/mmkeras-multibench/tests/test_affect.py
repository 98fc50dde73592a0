"""Tests of the affect dataset: hand-built pickles in the published layout, malformed ones, the stand-in."""

from __future__ import annotations

import importlib.metadata
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mmkeras_multibench._common import read_pickle, standin_dir
from mmkeras_multibench.affect import Affect, write_standin

from mmkeras.plugin import DataError, DataSplit, check_dataset

T = 4  # steps in the hand-built file
#: train labels: row 1 holds NaN in audio (dropped), row 3 is neutral, row 4 a half (rounds to even)
TRAIN_LABELS = [5 / 3, -1.0, -0.6, 0.0, -2.5]


def _seqs(n: int, width: int, base: float) -> np.ndarray:
    """[n, T, width] with row i, step t holding base + i + t / 10 (all non-zero)."""
    steps = base + np.arange(n)[:, None] + np.arange(T)[None, :] / 10
    return np.repeat(steps[:, :, None], width, axis=2).astype(np.float32)


def _split(n: int, labels: list[float], prefix: str, audio: int = 5, vision: int = 20) -> dict[str, np.ndarray]:
    return {
        "text": _seqs(n, 300, 1.0),
        "audio": _seqs(n, audio, 10.0),
        "vision": _seqs(n, vision, 100.0),
        "labels": np.asarray(labels, np.float32).reshape(n, 1, 1),
        "id": np.array([f"{prefix}{i}" for i in range(n)]),
    }


def _published(audio: int = 5, vision: int = 20) -> dict[str, Any]:
    """A MOSI-layout file: train 5 rows, valid 2, test 3, with the real files' quirks in train."""
    train = _split(5, TRAIN_LABELS, "vid_", audio, vision)
    train["text"][0, 0] = 0.0  # row 0 starts at step 1 ...
    train["audio"][0, 0] = 7.0  # ... so this padding step's audio and vision are zeroed
    train["vision"][0, 0, :3] = 3.0
    train["audio"][0, 2, 1] = -np.inf
    train["audio"][1, 3, 4] = np.nan
    train["text"][2, :2] = 0.0  # row 2 starts at step 2; the others are already zero there
    train["audio"][2, :2] = 0.0
    train["vision"][2, :2] = 0.0
    return {
        "train": train,
        "valid": _split(2, [0.5, -1.0], "val_", audio, vision),
        "test": _split(3, [3.0, -3.0, 1 / 3], "test_", audio, vision),
    }


def _write(path: Path, obj: Any) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


@pytest.fixture
def published(tmp_path: Path) -> Path:
    return _write(tmp_path / "mosi_data.pkl", _published())


def test_shapes_cleaning_and_padding(published: Path) -> None:
    ds = Affect(corpus="mosi", path=str(published), seq_len=T)
    ds.prepare(progress=False)
    train = ds.load("train")
    assert isinstance(train, DataSplit) and len(train) == 4  # row 1 (NaN) dropped
    assert {m: a.shape for m, a in train.inputs.items()} == {
        "text": (4, T, 300),
        "audio": (4, T, 5),
        "vision": (4, T, 20),
    }
    assert all(a.dtype == np.float32 for a in train.inputs.values())
    assert ds.skipped == [f"{published}: split 'train', row 1 (id vid_1): NaN in audio"]
    text, audio, vision = (train.inputs[m] for m in ("text", "audio", "vision"))
    # kept rows 0, 2, 3, 4 of the file; row 0's padding step zeroed everywhere, its -inf now 0
    np.testing.assert_array_equal(text[0, 0], 0.0)
    np.testing.assert_array_equal(audio[0, 0], 0.0)
    np.testing.assert_array_equal(vision[0, 0], 0.0)
    assert audio[0, 2, 1] == 0.0 and audio[0, 2, 0] == np.float32(10.2)
    np.testing.assert_allclose(text[0, 1:, 0], [1.1, 1.2, 1.3])
    np.testing.assert_allclose(vision[0, 1:, 5], [100.1, 100.2, 100.3])
    np.testing.assert_array_equal(audio[1, :2], 0.0)  # file row 2 starts at step 2
    np.testing.assert_allclose(audio[1, 2:, 0], [12.2, 12.3])
    np.testing.assert_allclose(text[3, :, 7], [5.0, 5.1, 5.2, 5.3])  # file row 4, untouched
    assert all(np.isfinite(a).all() for a in train.inputs.values())
    np.testing.assert_allclose(train.labels, [5 / 3, -0.6, 0.0, -2.5])
    assert train.labels.dtype == np.float32


def test_splits_come_from_train_valid_test(published: Path) -> None:
    ds = Affect(corpus="mosi", path=str(published), seq_len=T)
    assert ds.splits == ("train", "validation", "test")
    valid, test = ds.load("validation"), ds.load("test")
    np.testing.assert_allclose(valid.labels, [0.5, -1.0])
    np.testing.assert_allclose(test.labels, [3.0, -3.0, 1 / 3])
    np.testing.assert_allclose(test.inputs["audio"][2, :, 0], [12.0, 12.1, 12.2, 12.3])
    with pytest.raises(ValueError, match="no split 'valid'"):
        ds.load("valid")


@pytest.mark.parametrize(
    ("params", "train_labels", "test_labels", "dtype"),
    [
        ({"target": "binary"}, [1, 0, 0, 0], [1, 0, 1], np.int64),
        ({"target": "binary", "drop_neutral": True}, [1, 0, 0], [1, 0, 1], np.int64),
        ({"target": "seven_class"}, [5, 2, 3, 1], [6, 0, 3], np.int64),  # round(-2.5) = -2: halves to even
        ({"target": "auto"}, [5 / 3, -0.6, 0.0, -2.5], [3.0, -3.0, 1 / 3], np.float32),
    ],
)
def test_targets(
    published: Path, params: dict[str, Any], train_labels: list[float], test_labels: list[float], dtype: type
) -> None:
    ds = Affect(corpus="mosi", path=str(published), seq_len=T, **params)
    train = ds.load("train")
    assert train.labels.dtype == dtype and ds.load("test").labels.dtype == dtype
    np.testing.assert_allclose(train.labels, train_labels, rtol=1e-6)
    np.testing.assert_allclose(ds.load("test").labels, test_labels, rtol=1e-6)
    if params.get("drop_neutral"):
        # the neutral file row 3 is left out by protocol, not listed as skipped: file rows 0, 2, 4 remain
        assert len(ds.skipped) == 1
        np.testing.assert_allclose(train.inputs["text"][:, 3, 0], [1.3, 3.3, 5.3], rtol=1e-6)


def test_humor_and_sarcasm_are_binary(tmp_path: Path) -> None:
    raw = _published(81, 371)
    raw["train"]["labels"] = np.array([1, 0, 1, 0, 1], np.float32).reshape(5, 1)  # [N, 1] is read too
    p = _write(tmp_path / "humor.pkl", raw)
    ds = Affect(corpus="humor", path=str(p), seq_len=T)
    assert ds.task == "binary" and ds.label_info() == "int64 punchline 0/1"
    np.testing.assert_array_equal(ds.load("train").labels, [1, 1, 0, 1])
    with pytest.raises(ValueError, match="target must be 'auto' or 'binary'"):
        Affect(corpus="sarcasm", target="seven_class")
    with pytest.raises(ValueError, match="drop_neutral"):
        Affect(corpus="humor", drop_neutral=True)
    with pytest.raises(ValueError, match="drop_neutral"):
        Affect(corpus="mosei", drop_neutral=True)  # regression


def test_seq_len_keeps_the_last_steps_and_front_pads(published: Path) -> None:
    short = Affect(corpus="mosi", path=str(published), seq_len=2).load("test")
    assert short.inputs["vision"].shape == (3, 2, 20)
    np.testing.assert_allclose(short.inputs["vision"][1, :, 0], [101.2, 101.3])
    long = Affect(corpus="mosi", path=str(published), seq_len=6).load("test")
    assert long.inputs["text"].shape == (3, 6, 300)
    np.testing.assert_allclose(long.inputs["text"][1, :, 0], [0, 0, 2.0, 2.1, 2.2, 2.3], rtol=1e-6)
    cut = Affect(corpus="mosi", path=str(published), seq_len=2).load("train")
    np.testing.assert_allclose(cut.inputs["audio"][0, :, :2], [[10.2, 0.0], [10.3, 10.3]], rtol=1e-6)  # -inf: 0


def test_label_shapes_and_other_widths(tmp_path: Path) -> None:
    raw = _published(74, 35)  # MultiBench's mosi_raw.pkl widths
    raw["train"]["labels"] = raw["train"]["labels"].reshape(5)
    p = _write(tmp_path / "mosi_raw.pkl", raw)
    ds = Affect(corpus="mosi", path=str(p), seq_len=T, audio_dim=74, vision_dim=35)
    train = ds.load("train")
    assert train.inputs["audio"].shape == (4, T, 74) and train.inputs["vision"].shape == (4, T, 35)
    np.testing.assert_allclose(train.labels, [5 / 3, -0.6, 0.0, -2.5])


def test_info_agrees_with_the_data(published: Path) -> None:
    ds = Affect(corpus="mosi", path=str(published), seq_len=T)
    info = ds.info()
    for split in ds.splits:
        data = ds.load(split)
        assert {m: (a.shape[1:], str(a.dtype)) for m, a in data.inputs.items()} == {
            m: (i.shape, i.dtype) for m, i in info.items()
        }
    assert "padding" in info["audio"].description
    assert ds.label_info() == "float32 sentiment in [-3, 3]"
    assert Affect(corpus="mosei", seq_len=7, vision_dim=9).info()["vision"].shape == (7, 9)
    check_dataset(Affect, {"corpus": "mosi", "path": str(published), "seq_len": T, "target": "binary"})


def _mutated(tmp_path: Path, change: Any) -> Path:
    raw = _published()
    change(raw)
    return _write(tmp_path / "bad.pkl", raw)


def _set(split: str, name: str, value: Any) -> Any:
    return lambda raw: raw[split].__setitem__(name, value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.pop("valid"), "missing key 'valid'"),
        (lambda raw: raw["train"].pop("audio"), "missing key ['train']['audio']"),
        (_set("train", "audio", np.zeros((5, T, 74), np.float32)), "['train']['audio'] has width 74"),
        (
            _set("test", "vision", np.zeros((2, T, 20), np.float32)),
            "['test']['vision'] has 2 rows but ['test']['text'] has 3",
        ),
        (
            _set("valid", "labels", np.zeros((2, 2), np.float32)),
            "['valid']['labels'] has shape [2, 2]; expected [N, 1, 1]",
        ),
        (
            _set("valid", "text", np.zeros((2, 300), np.float32)),
            "['valid']['text'] has shape [2, 300]; expected [*, *, *]",
        ),
        (
            _set("test", "labels", np.array([1.0, np.nan, 0.0])),
            "['test']['labels'] row 1 is nan; labels must be finite",
        ),
        (_set("test", "labels", np.array([1.0, 0.0, 3.5])), "['test']['labels'] row 2 is 3.5, outside [-3, 3]"),
    ],
)
def test_malformed_files_name_the_file_and_key(tmp_path: Path, change: Any, message: str) -> None:
    p = _mutated(tmp_path, change)
    with pytest.raises(DataError) as info:
        Affect(corpus="mosi", path=str(p), seq_len=T).load("train")
    assert str(p) in str(info.value) and message in str(info.value)
    if "width" in message:
        assert "expected 5" in str(info.value) and "audio_dim: 74" in str(info.value)


def test_not_a_dict_not_a_pickle_and_missing(tmp_path: Path) -> None:
    p = _write(tmp_path / "list.pkl", [1, 2])
    with pytest.raises(DataError, match="expected a dict with keys 'train', 'valid', 'test'.*found list"):
        Affect(corpus="mosi", path=str(p)).load("train")
    q = tmp_path / "text.pkl"
    q.write_text("these are not the pickled arrays you are looking for")
    with pytest.raises(DataError, match=f"{q}: not a readable pickle"):
        Affect(corpus="mosi", path=str(q)).load("train")
    with pytest.raises(DataError, match="no such file"):
        Affect(corpus="mosi", path=str(tmp_path / "absent.pkl")).prepare()


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "it_ran"
    p = tmp_path / "evil.pkl"
    p.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")  # protocol 0: os.system(...)
    with pytest.raises(DataError, match="names os.system"):
        Affect(corpus="mosi", path=str(p)).load("train")
    assert not marker.exists()


def test_cli_prints_the_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the installed `mmkeras` command's function, run in-process: plugin tests do not import mmkeras.cli
    (main,) = (e.load() for e in importlib.metadata.entry_points(group="console_scripts", name="mmkeras"))
    p = _mutated(tmp_path, lambda raw: raw["valid"].pop("audio"))
    assert main(["data", "build", "affect", "--param", f"path={p}", "--param", "corpus=mosi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {p}: missing key ['valid']['audio']; the keys there are: 'text', 'vision'")


def test_standin_is_deterministic_and_in_the_published_layout(tmp_path: Path) -> None:
    a = write_standin(tmp_path / "a.pkl", "mosei", seed=3, rows=64)
    b = write_standin(tmp_path / "b.pkl", "mosei", seed=3, rows=64)
    c = write_standin(tmp_path / "c.pkl", "mosei", seed=4, rows=64)
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    raw = read_pickle(a)
    assert sorted(raw) == ["test", "train", "valid"]
    for name, n in (("train", 64), ("valid", 16), ("test", 32)):
        s = raw[name]
        assert {k: v.shape for k, v in s.items()} == {
            "text": (n, 50, 300),
            "audio": (n, 50, 74),
            "vision": (n, 50, 35),
            "labels": (n, 1, 1),
            "id": (n,),
        }
        assert all(s[m].dtype == np.float32 for m in ("text", "audio", "vision", "labels"))
        assert s["id"].dtype.kind == "U" and s["id"][0] == f"mosei_{name}_00000"
        started = (s["text"] != 0).any(2)
        # front padding: once a row starts it does not stop; 10..50 steps; the same steps in every modality
        assert (np.diff(started.astype(int), axis=1) >= 0).all()
        assert started.sum(1).min() >= 10 and not started[:, 0].all()
        for m in ("audio", "vision"):
            np.testing.assert_array_equal((s[m] != 0).any(2), started)
        y = s["labels"].ravel()
        np.testing.assert_allclose(y * 3, np.round(y * 3), atol=1e-5)
        assert np.abs(y).max() <= 3
    assert sum(np.isneginf(raw[k]["audio"]).sum() for k in raw) > 0
    assert (np.concatenate([raw[k]["labels"].ravel() for k in raw]) == 0).any()
    humor = read_pickle(write_standin(tmp_path / "h.pkl", "humor", rows=16))
    assert set(np.unique(humor["train"]["labels"])) == {0.0, 1.0}
    assert humor["train"]["vision"].shape == (16, 50, 371)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Affect:
    return Affect(corpus="mosi", data_dir=str(tmp_path_factory.mktemp("data")), standin_rows=512)


def test_standin_loads_without_a_path(standin: Affect, capsys: pytest.CaptureFixture[str]) -> None:
    assert Affect(corpus="mosi", data_dir="/some/dir").file == Path("/some/dir/multibench_standin/mosi.pkl")
    standin.prepare()
    out = capsys.readouterr().out
    assert "SYNTHETIC stand-in" in out and str(standin.file) in out and "data.params.path" in out
    assert standin.file.parent == standin_dir(standin.data_dir) and standin.file.is_file()
    standin.prepare()  # present: nothing written, nothing said
    assert capsys.readouterr().out == ""
    train = standin.load("train")
    assert len(train) == 512 and len(standin.load("validation")) == 128 and len(standin.load("test")) == 256
    assert train.inputs["audio"].shape == (512, 50, 5) and train.inputs["vision"].shape == (512, 50, 20)
    assert all(np.isfinite(a).all() for a in train.inputs.values()) and standin.skipped == []


def _r2(train: DataSplit, test: DataSplit, groups: list[list[str]]) -> float:
    """Held-out R^2 of a least-squares fit of sentiment on time-averaged features, each modality's
    projected on 4 fixed random directions (this keeps its 2 or 3 factors and costs no decomposition
    of a large matrix), plus the products of a group's two modalities' projections."""
    rng = np.random.default_rng(0)
    project = {m: rng.standard_normal((a.shape[2], 4)) for m, a in train.inputs.items()}

    def features(split: DataSplit) -> np.ndarray:
        steps = (split.inputs["text"] != 0).any(2).sum(1)[:, None]
        x = {m: (a.sum(1) / steps) @ project[m] for m, a in split.inputs.items()}
        cols = [x[g[0]] for g in groups]
        cols += [np.einsum("ni,nj->nij", x[g[0]], x[g[1]]).reshape(len(steps), -1) for g in groups if len(g) == 2]
        return np.hstack([*cols, np.ones((len(steps), 1))])

    w = np.linalg.lstsq(features(train), train.labels, rcond=None)[0]
    return float(1 - (test.labels - features(test) @ w).var() / test.labels.var())


def test_standin_holds_the_documented_information(standin: Affect) -> None:
    train, test = standin.load("train"), standin.load("test")
    r2 = {m: _r2(train, test, [[m]]) for m in ("text", "audio", "vision")}
    linear = _r2(train, test, [["text"], ["audio"], ["vision"]])
    synergy = _r2(train, test, [["text"], ["audio", "vision"], ["vision"]])
    # Var z = a^2 + b^2 + 2c^2 + d^2 + noise^2 = 2.39: each alone about (a^2 + b^2) / 2.39 = 0.49, the three
    # 0.79 (the XOR term d^2 / 2.39 = 0.21 is out of a linear fit's reach), audio x vision products nearly 1
    for m, value in r2.items():
        assert 0.3 < value < 0.62, (m, value)
    assert linear > max(r2.values()) + 0.15 and linear < 0.88, (linear, r2)
    assert synergy > linear + 0.1 and synergy > 0.93, (synergy, linear)
