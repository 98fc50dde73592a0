"""The files dataset: a manifest of images, WAV files, arrays and text, written by the tests."""

import csv
import json
import sys
import wave

import numpy as np
import pytest

from mmkeras.data import files as files_mod
from mmkeras.data.files import FilesDataset, Skipped
from mmkeras.errors import DataError

RATE = 8000
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (200, 100, 50), (7, 70, 140)]
LABELS = ["cat", "dog", "cat", "bird", "dog", "bird"]
CAPTIONS = ["a red cat", "a green dog", "a blue cat", "corrupt bird", "an orange dog", "a teal bird"]
MISSING_SOUND_ROW = 3  # 1-based data row with an empty sound cell
CORRUPT_ROW = 4  # 1-based data row whose PNG is garbage


def write_png(path, colour, size=(6, 8)):
    from PIL import Image

    Image.new("RGB", (size[1], size[0]), colour).save(path)


def tone(i, seconds=0.25, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * (220 + 110 * i) * t)


def write_wav(path, signal, rate=RATE):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(signal * 32767).astype("<i2").tobytes())


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def manifest(tmp_path):
    """Six rows: row 3 has no sound, row 4's PNG is garbage. Files in sub-folders, paths relative."""
    pytest.importorskip("mmkeras_audio", reason="WAV files need the mmkeras-audio plugin (plugins/mmkeras-audio)")
    for sub in ("img", "snd", "vec"):
        (tmp_path / sub).mkdir()
    rows = []
    for i in range(6):
        image = f"img/{i}.png"
        if i + 1 == CORRUPT_ROW:
            (tmp_path / image).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        else:
            write_png(tmp_path / image, COLOURS[i])
        sound = "" if i + 1 == MISSING_SOUND_ROW else f"snd/{i}.wav"
        if sound:
            write_wav(tmp_path / sound, tone(i))
        np.save(tmp_path / f"vec/{i}.npy", np.full(3, i, dtype="float32"))
        rows.append([image, sound, f"vec/{i}.npy", CAPTIONS[i], LABELS[i]])
    path = tmp_path / "manifest.csv"
    write_csv(path, ["image", "sound", "vector", "caption", "label"], rows)
    return path


AUDIO = {"sample_rate": RATE, "seconds": 0.25}


def test_corrupt_file_stops_with_row_line_and_path(manifest):
    data = FilesDataset(str(manifest), label="label", audio=AUDIO)
    assert data.kinds == {"image": "image", "sound": "audio", "vector": "array", "caption": "text"}
    with pytest.raises(DataError) as err:
        data.load("train")
    msg = str(err.value)
    assert f"row {CORRUPT_ROW} (line {CORRUPT_ROW + 1})" in msg
    assert str(manifest) in msg and str(manifest.parent / "img" / f"{CORRUPT_ROW - 1}.png") in msg
    assert "expected an image file" in msg and "on_error: skip" in msg


def test_skip_mode_counts_and_names_the_row(manifest, capsys):
    data = FilesDataset(str(manifest), label="label", on_error="skip", audio=AUDIO)
    train = data.load("train")
    assert len(train) == 5 and data.splits == ("train",)
    assert len(data.skipped) == 1
    skipped = data.skipped[0]
    assert isinstance(skipped, Skipped)
    assert (skipped.row, skipped.line, skipped.column) == (CORRUPT_ROW, CORRUPT_ROW + 1, "image")
    assert skipped.path.endswith(f"img/{CORRUPT_ROW - 1}.png") and "unreadable" in skipped.reason
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped 1 of 6 rows" in err[0] and f"row {CORRUPT_ROW} (line" in err[0]


def test_values_masks_and_labels(manifest):
    data = FilesDataset(str(manifest), label="label", on_error="skip", audio=AUDIO)
    train = data.load("train")
    kept = [i for i in range(6) if i + 1 != CORRUPT_ROW]
    # images: float [0, 1], RGB, the colour each file was painted
    assert train.inputs["image"].shape == (5, 6, 8, 3)
    np.testing.assert_allclose(train.inputs["image"][:, 0, 0], np.array(COLOURS)[kept] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(train.inputs["vector"][:, 0], kept)
    # the empty sound cell is the only missing one: mask 0 and zeros there, the WAV samples elsewhere
    expected_mask = np.array([0.0 if i + 1 == MISSING_SOUND_ROW else 1.0 for i in kept])
    np.testing.assert_array_equal(train.mask("sound"), expected_mask)
    np.testing.assert_array_equal(train.mask("image"), np.ones(5))
    sound = train.inputs["sound"]
    assert sound.shape == (5, 2000)
    assert not sound[expected_mask == 0].any()
    for j, i in enumerate(kept):
        if expected_mask[j]:
            np.testing.assert_allclose(sound[j], tone(i), atol=1.5 / 32768)
    assert data.backends["sound"] in ("soundfile", "tensorflow-io") and data.backends["image"] == "pillow"
    # string labels -> ids in sorted order, mapping kept
    assert data.label_names == ["bird", "cat", "dog"]
    assert data.label_mapping == {"bird": 0, "cat": 1, "dog": 2}
    np.testing.assert_array_equal(train.labels, [data.label_mapping[LABELS[i]] for i in kept])
    # text: word ids by frequency from the kept train rows ("a" 4x first), 0 padding
    vocab = data.vocabulary["caption"]
    assert vocab[:3] == ["<pad>", "<unk>", "a"] and "corrupt" not in vocab
    ids = train.inputs["caption"]
    assert ids.dtype == np.int32 and ids.shape == (5, 32)
    assert [vocab[t] for t in ids[0] if t] == ["a", "red", "cat"] and not ids[0, 3:].any()


def test_jsonl_test_fraction_resize_and_missing_file(tmp_path):
    for i in range(10):
        write_png(tmp_path / f"{i}.png", COLOURS[i % 6], size=(5 + i, 7))  # sizes differ: image_size resizes
    lines = [{"pic": f"{i}.png", "y": i % 2, "note": "ignored"} for i in range(10)]
    lines[6]["pic"] = "nowhere.png"
    lines[2]["pic"] = None
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    kwargs = {
        "modalities": {"pic": "image"},
        "label": "y",
        "test_fraction": 0.3,
        "seed": 1,
        "image_size": [4, 4],
        "image_mode": "gray",
    }
    with pytest.raises(DataError, match=r"row 7 \(line 7\), column 'pic': .*nowhere\.png: file not found"):
        FilesDataset(str(path), **kwargs).load("train")
    data = FilesDataset(str(path), on_error="skip", **kwargs)
    train, test = data.load("train"), data.load("test")
    assert data.splits == ("train", "test") and len(train) + len(test) == 9 and len(test) == 3
    assert train.inputs["pic"].shape[1:] == (4, 4, 1) and data.label_names is None
    assert sorted(train.labels.tolist() + test.labels.tolist()) == sorted(i % 2 for i in range(10) if i != 6)
    both = np.concatenate([train.mask("pic"), test.mask("pic")])
    assert both.sum() == 8  # the null cell of row 3 is missing, not an error
    again = FilesDataset(str(path), on_error="skip", **kwargs)
    np.testing.assert_array_equal(again.load("test").labels, test.labels)  # the split is seeded


def test_shapes_must_agree_across_rows(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.save(tmp_path / "b.npy", np.zeros(4))
    write_csv(tmp_path / "m.csv", ["x", "split"], [["a.npy", "train"], ["a.npy", "test"], ["b.npy", "test"]])
    data = FilesDataset(str(tmp_path / "m.csv"), on_error="skip")
    assert data.splits == ("train", "test")
    with pytest.raises(DataError, match=r"row 3 \(line 4\), column 'x': b\.npy has shape \(4,\), but row 1 has \(3,\)"):
        data.load("test")


def test_manifest_problems_name_the_row_and_column(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "short.csv").write_text("x,label\na.npy,1\na.npy\n")
    with pytest.raises(DataError, match=r"row 2 \(line 3\): 1 fields, the header has 2"):
        FilesDataset(str(tmp_path / "short.csv"))
    (tmp_path / "m.csv").write_text("x,label\na.npy,1\n")
    with pytest.raises(DataError, match=r"no label column 'y'"):
        FilesDataset(str(tmp_path / "m.csv"), label="y")
    with pytest.raises(DataError, match=r"modalities.z: no such column"):
        FilesDataset(str(tmp_path / "m.csv"), modalities={"z": "image"})
    (tmp_path / "mixed.csv").write_text("x\na.npy\nhello there\n")
    with pytest.raises(DataError, match=r"column 'x' mixes array files \(row 1\) and no known file type \(row 2\)"):
        FilesDataset(str(tmp_path / "mixed.csv"))


def test_audio_without_a_reader_names_the_plugin(tmp_path, monkeypatch, fresh_registry):
    monkeypatch.delitem(fresh_registry.entries["readers"], "wav", raising=False)  # no reader installed
    write_wav(tmp_path / "a.wav", tone(0))
    write_csv(tmp_path / "m.csv", ["sound"], [["a.wav"]])
    data = FilesDataset(str(tmp_path / "m.csv"))
    assert data.kinds == {"sound": "audio"}
    with pytest.raises(
        DataError, match=r"no reader for \.wav files: install the audio plugin: pip install mmkeras-audio"
    ):
        data.load("train")


def test_missing_pillow_is_a_clear_error(tmp_path, monkeypatch):
    write_png(tmp_path / "a.png", COLOURS[0])
    write_csv(tmp_path / "m.csv", ["image"], [["a.png"]])
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` fail
    with pytest.raises(DataError, match=r"reading images needs Pillow: pip install pillow"):
        FilesDataset(str(tmp_path / "m.csv"), on_error="skip").load("train")


def test_in_process_reader_and_bad_options(tmp_path):
    class Upper:
        kind = "array"

        def __call__(self, path: str, scale: float = 1.0) -> np.ndarray:
            return np.full(2, scale * len(open(path).read()))

    (tmp_path / "a.txt2").write_text("abcd")
    write_csv(tmp_path / "m.csv", ["t"], [["a.txt2"], [""]])
    files_mod.register_reader("txt2", Upper())
    try:
        data = FilesDataset(str(tmp_path / "m.csv"))
        split = data.load("train")
        np.testing.assert_array_equal(split.inputs["t"], [[4.0, 4.0], [0.0, 0.0]])
        np.testing.assert_array_equal(split.mask("t"), [1.0, 0.0])
    finally:
        files_mod.unregister_reader("txt2")
    with pytest.raises(DataError, match=r"audio: features: 'spectrum' is not one of"):
        pytest.importorskip("mmkeras_audio")
        write_wav(tmp_path / "a.wav", tone(0))
        write_csv(tmp_path / "s.csv", ["s"], [["a.wav"]])
        FilesDataset(str(tmp_path / "s.csv"), audio={"features": "spectrum"}).load("train")


def test_registered_and_built_from_a_recipe_spec(manifest):
    from mmkeras.builder import instantiate
    from mmkeras.errors import RecipeError
    from mmkeras.recipe import ComponentSpec

    params = {"manifest": str(manifest), "label": "label", "on_error": "skip", "audio": AUDIO}
    data = instantiate("datasets", ComponentSpec(name="files", params=params), "data.dataset")
    assert isinstance(data, FilesDataset) and len(data.load("train")) == 5
    with pytest.raises(RecipeError, match=r"data.dataset.params.on_error"):
        instantiate("datasets", ComponentSpec(name="files", params={**params, "on_error": "ignore"}), "data.dataset")


# -- labels: label_kind --------------------------------------------------------------------------


def label_manifest(tmp_path, labels, name="m.csv"):
    """One .npy modality (row i holds [i + 1]) and the label cells ``labels``."""
    np.save(tmp_path / "v.npy", np.ones(1))
    write_csv(tmp_path / name, ["x", "y"], [["v.npy", label] for label in labels])
    return str(tmp_path / name)


def test_auto_integer_labels_keep_their_values(tmp_path):
    data = FilesDataset(label_manifest(tmp_path, ["10", "2", "-1", "+7", "2"]), label="y")
    assert data.label_kind == "integer"
    train = data.load("train")
    assert train.labels.dtype == np.int64 and train.labels.tolist() == [10, 2, -1, 7, 2]
    assert data.label_names is None


def test_auto_string_labels_are_sorted_names(tmp_path):
    data = FilesDataset(label_manifest(tmp_path, ["seven", "two", "ten", "two"]), label="y")
    assert data.label_kind == "string"
    assert data.load("train").labels.tolist() == [0, 2, 1, 2]
    assert data.label_names == ["seven", "ten", "two"]


def test_auto_mixed_labels_name_the_first_offending_row(tmp_path):
    path = label_manifest(tmp_path, ["1", "2", "seven", "3", "4.0"])
    with pytest.raises(DataError) as err:
        FilesDataset(path, label="y")
    msg = str(err.value)
    assert msg.startswith(
        f"files dataset {path}: row 3 (line 4), column 'y': label 'seven' is not an integer, but row 1 (line 2) "
        "holds '1': the column mixes integer and non-integer labels. Set label_kind: string"
    )
    # the first row decides nothing: an integer after names is the offending one
    path = label_manifest(tmp_path, ["cat", "", "dog", "3"], name="n.csv")
    with pytest.raises(DataError, match=r"row 4 \(line 5\), column 'y': label '3' is an integer, but row 1 \(line 2\)"):
        FilesDataset(path, label="y")


def test_string_kind_sorts_integer_cells_as_text(tmp_path):
    data = FilesDataset(label_manifest(tmp_path, ["10", "2", "1", "2"]), label="y", label_kind="string")
    assert data.load("train").labels.tolist() == [1, 2, 0, 2]
    assert data.label_names == ["1", "10", "2"]


def test_integer_kind_refuses_a_decimal_point_and_names_the_cell(tmp_path):
    path = label_manifest(tmp_path, ["1", "4.0", "seven", "3"])
    with pytest.raises(DataError) as err:
        FilesDataset(path, label="y", label_kind="integer")  # found at construction: validate sees it
    assert str(err.value) == (
        f"files dataset {path}: row 2 (line 3), column 'y': label '4.0' is not an integer (label_kind: integer "
        "takes whole numbers such as 4 or -1, written without a decimal point). Fix or remove the row, "
        "or set on_error: skip"
    )
    data = FilesDataset(path, label="y", label_kind="integer", on_error="skip")
    assert data.load("train").labels.tolist() == [1, 3]
    assert [(s.row, s.line, s.column) for s in data.skipped] == [(2, 3, "y"), (3, 4, "y")]
    assert "label 'seven' is not an integer" in str(data.skipped[1])


def test_regression_labels_are_float32_targets(tmp_path):
    path = label_manifest(tmp_path, ["0.5", "-1e3", "2", "nan", "abc"])
    with pytest.raises(DataError, match=r"row 4 \(line 5\), column 'y': label 'nan' is not a finite number"):
        FilesDataset(path, label="y", label_kind="regression")
    data = FilesDataset(path, label="y", label_kind="regression", on_error="skip")
    train = data.load("train")
    assert train.labels.dtype == np.float32 and train.labels.tolist() == [0.5, -1000.0, 2.0]
    assert [s.row for s in data.skipped] == [4, 5] and data.label_names is None
    assert data.label_info() == "float32 regression targets (column 'y')"


def test_jsonl_numbers_follow_the_same_rules(tmp_path):
    np.save(tmp_path / "v.npy", np.ones(1))
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps({"x": "v.npy", "y": y}) for y in (3, 4.0, 5)) + "\n")
    with pytest.raises(DataError, match=r"row 2 \(line 2\), column 'y': label '4.0' is not an integer, but row 1"):
        FilesDataset(str(path), label="y")
    assert FilesDataset(str(path), label="y", label_kind="regression").load("train").labels.tolist() == [3, 4, 5]


def test_unknown_label_kind_is_refused_by_the_recipe_schema(tmp_path):
    from mmkeras.builder import instantiate
    from mmkeras.errors import RecipeError
    from mmkeras.recipe import ComponentSpec

    params = {"manifest": label_manifest(tmp_path, ["1"]), "label": "y", "label_kind": "ordinal"}
    with pytest.raises(RecipeError, match=r"data.dataset.params.label_kind"):
        instantiate("datasets", ComponentSpec(name="files", params=params), "data.dataset")


# -- non-finite values in files ------------------------------------------------------------------


def test_a_file_with_nan_stops_or_is_skipped(tmp_path):
    np.save(tmp_path / "ok.npy", np.arange(3.0))
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan, np.inf]))
    write_csv(tmp_path / "m.csv", ["x", "y"], [["ok.npy", "1"], ["nan.npy", "0"], ["ok.npy", "0"]])
    with pytest.raises(DataError) as err:
        FilesDataset(str(tmp_path / "m.csv"), label="y").load("train")
    assert f"row 2 (line 3), column 'x': {tmp_path / 'nan.npy'}: 2 NaN or infinite values; expected finite" in str(
        err.value
    )
    data = FilesDataset(str(tmp_path / "m.csv"), label="y", on_error="skip")
    train = data.load("train")
    assert train.labels.tolist() == [1, 0] and np.isfinite(train.inputs["x"]).all()
    assert [s.row for s in data.skipped] == [2]


def test_info_declares_what_load_gives(manifest):
    from mmkeras.data.checks import info_mismatches

    mel = {**AUDIO, "features": "mel", "n_features": 8, "n_fft": 256, "hop_length": 128}
    for audio in (AUDIO, mel):
        data = FilesDataset(str(manifest), label="label", on_error="skip", audio=audio)
        info = data.info()
        assert info_mismatches(info, data.load("train")) == []
    assert info["sound"].shape == (8, 1 + (2000 - 256) // 128)
    assert info["image"].shape == (None, None, 3) and info["caption"].shape == (32,)
    assert data.label_info() == "int64 class ids (column 'label', class names in sorted order: label_names)"


# -- readers: a registry kind ----------------------------------------------------------------------
def _broken_loader():
    raise ModuleNotFoundError("No module named 'nowhere'")


def test_readers_are_a_registry_kind_with_isolated_failures(fresh_registry):
    from mmkeras.registry import Entry

    npy = fresh_registry.entry("readers", "npy")
    assert (npy.distribution, npy.target) == ("mmkeras", "mmkeras.data.files:read_npy")
    assert files_mod.reader_for(".PNG") is files_mod.read_image and files_mod.reader_for("xyz") is None
    broken = Entry("readers", "xyz", "nowhere:read", "broken-readers", "0.1", loader=_broken_loader)
    fresh_registry.entries["readers"]["xyz"] = [broken]
    with pytest.raises(
        DataError,
        match=r"the reader of \.xyz files \(nowhere:read, distribution broken-readers\) failed to load: "
        r"ModuleNotFoundError: No module named 'nowhere'",
    ):
        files_mod.reader_for("xyz")
    assert files_mod.reader_for("npy") is files_mod.read_npy  # the others still load
    other = Entry("readers", "npy", "theirs:read", "other-readers", "0.1", loader=_broken_loader)
    fresh_registry.entries["readers"]["npy"].append(other)
    with pytest.raises(
        DataError,
        match=r"\.npy files have more than one reader: mmkeras \(mmkeras.data.files:read_npy\), other-readers",
    ):
        files_mod.reader_for("npy")


def test_an_in_process_reader_overrides_an_installed_one_until_removed(fresh_registry):
    mine = files_mod.NpyReader()
    files_mod.register_reader(".NPY", mine)
    try:
        assert files_mod.reader_for("npy") is mine
        fresh_registry.discover(force=True)  # a re-discovery keeps it and reports no clash
        assert files_mod.reader_for("npy") is mine and not fresh_registry.clashes()
    finally:
        files_mod.unregister_reader("npy")
    assert files_mod.reader_for("npy") is files_mod.read_npy
