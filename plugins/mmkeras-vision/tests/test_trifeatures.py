"""The trifeatures dataset: labels against their definitions, determinism, cache, parameters."""

import shutil

import numpy as np
import pytest
from mmkeras_vision import trifeatures as tri
from mmkeras_vision.trifeatures import Trifeatures

from mmkeras.plugin import DataError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tiny(cache):
    data = Trifeatures(size="tiny", seed=3, data_dir=cache)
    return data, data.load("train"), data.load("test")


def test_combination_split_and_bijection():
    split = tri.combination_split(3)
    assert len(split["train"]) == 800 and len(split["test"]) == 200
    assert not set(split["train"]) & set(split["test"])
    assert sorted(np.concatenate([split["train"], split["test"]])) == list(range(1000))
    assert sorted(tri.bijection(3)) == list(range(10))
    assert not np.array_equal(tri.bijection(3), tri.bijection(4))


def test_labels_match_their_definitions(tiny):
    data, _, _ = tiny
    for split in ("train", "test"):
        pairs, labels = data.pairs(split), data.labels_for(split)
        shape1, tex1, col1 = tri.attributes(pairs[:, 0])
        shape2, tex2, col2 = tri.attributes(pairs[:, 1])
        np.testing.assert_array_equal(shape1, shape2)  # pairs share their shape
        assert set(pairs.ravel()) <= set(data.combinations[split])  # and use only their split's combinations
        np.testing.assert_array_equal(labels["shared"], shape1)
        np.testing.assert_array_equal(labels["unique1"], tex1)
        np.testing.assert_array_equal(labels["unique2"], tex2)
        in_bijection = np.array([(t, c) in set(enumerate(data.bijection)) for t, c in zip(tex1, col2)])
        np.testing.assert_array_equal(labels["synergy"], in_bijection.astype(np.int64))
        np.testing.assert_array_equal(labels["colour1"], col1)
    # unbiased pairs: synergy is about 10% positive (a binomial check on the 200 training pairs)
    assert 0.02 < data.labels_for("train")["synergy"].mean() < 0.2


def test_biased_training_pairs_all_lie_in_the_bijection(cache):
    data = Trifeatures(size="small", seed=3, biased=True, task="synergy", data_dir=cache)
    train = data.labels_for("train")
    np.testing.assert_array_equal(data.bijection[train["texture1"]], train["colour2"])
    assert train["synergy"].min() == 1
    test = data.labels_for("test")  # the test split stays unbiased
    assert 0.03 < test["synergy"].mean() < 0.2
    unbiased = Trifeatures(size="small", seed=3, data_dir=cache)
    np.testing.assert_array_equal(unbiased.bijection, data.bijection)
    np.testing.assert_array_equal(unbiased.pairs("test"), data.pairs("test"))


def test_arrays_shapes_dtypes_and_task(tiny):
    data, train, test = tiny
    for split, n in ((train, 200), (test, 100)):
        assert len(split) == n
        for key in ("image1", "image2"):
            x = split.inputs[key]
            assert x.shape == (n, 32, 32, 3) and x.dtype == np.float32
            assert 0.0 <= x.min() and x.max() <= 1.0
        assert split.labels.dtype == np.int64
    np.testing.assert_array_equal(train.labels, data.labels_for("train")["shared"])
    synergy = Trifeatures(size="tiny", seed=3, task="synergy", data_dir=data.cache_dir.parent.as_posix())
    np.testing.assert_array_equal(synergy.load("test").labels, data.labels_for("test")["synergy"])
    # two images of one pair are different renders (position, rotation, texture and colour differ)
    assert np.abs(train.inputs["image1"] - train.inputs["image2"]).mean() > 0.01


def test_same_data_with_or_without_a_cache(tmp_path, tiny):
    _, train, _ = tiny
    first = Trifeatures(size="tiny", seed=3, data_dir=str(tmp_path)).load("train")
    np.testing.assert_array_equal(first.inputs["image1"], train.inputs["image1"])
    shutil.rmtree(tmp_path / "trifeatures")
    again = Trifeatures(size="tiny", seed=3, data_dir=str(tmp_path))
    rebuilt = again.load("train")
    np.testing.assert_array_equal(rebuilt.inputs["image2"], first.inputs["image2"])
    np.testing.assert_array_equal(rebuilt.labels, first.labels)
    other = Trifeatures(size="tiny", seed=4, data_dir=str(tmp_path))
    assert not np.array_equal(other.pairs("train"), again.pairs("train"))


def test_each_image_depends_only_on_its_own_stream(tiny):
    data, train, _ = tiny
    pairs = data.pairs("train")
    part = tri.render_pairs(3, "train", 5, pairs[5:8], 32)  # a worker's chunk starting at pair 5
    np.testing.assert_array_equal(part[:, 0].astype(np.float32) / 255.0, train.inputs["image1"][5:8])
    # a smaller size is a prefix of a larger one: the same pairs
    small = Trifeatures(size="small", seed=3, data_dir=str(data.cache_dir.parent))
    np.testing.assert_array_equal(small.pairs("train")[:200], pairs)


def test_worker_processes_render_the_same_images(tmp_path, monkeypatch, tiny):
    _, train, _ = tiny
    monkeypatch.setattr(tri, "PAIRS_PER_WORKER", 50)  # so that 200 pairs use both workers
    parallel = Trifeatures(size="tiny", seed=3, workers=2, data_dir=str(tmp_path)).load("train")
    np.testing.assert_array_equal(parallel.inputs["image1"], train.inputs["image1"])
    np.testing.assert_array_equal(parallel.inputs["image2"], train.inputs["image2"])


def test_render_draws_the_attributes():
    rng = np.random.default_rng
    red = tri.COLOUR_NAMES.index("red")
    image = tri.render(0, tri.TEXTURES.index("solid"), red, 32, rng(0))
    assert tuple(image[0, 0]) == (128, 128, 128)  # background in the corner: the shape stays inside
    pixels = image.reshape(-1, 3)
    assert (pixels == tri.COLOURS["red"]).all(axis=1).sum() > 50  # a solid disc of pure red
    striped = tri.render(0, tri.TEXTURES.index("stripes"), red, 32, rng(0)).reshape(-1, 3).astype(float)
    shade = np.round(tri.SHADE * np.array(tri.COLOURS["red"]))
    assert (np.abs(striped - shade).max(axis=1) <= 1).sum() > 20  # the texture's dark parts
    # the same shape, pose and place at twice the resolution, box-filtered, is close to the small one
    big = tri.render(6, 0, 5, 64, rng(7)).astype(float).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    small = tri.render(6, 0, 5, 32, rng(7)).astype(float)
    assert np.abs(big - small).mean() < 0.1 * np.abs(small - tri.render(6, 0, 5, 32, rng(8))).mean()


def test_a_stale_cache_is_refused(tmp_path):
    data = Trifeatures(size="tiny", seed=0, data_dir=str(tmp_path))
    data.prepare(progress=False)
    path = data.cache_path("test")
    with np.load(path) as z:
        images, pairs = z["images"], z["pairs"]
    np.savez(path, images=images, pairs=pairs[::-1])
    with pytest.raises(DataError, match="holds other pairs"):
        Trifeatures(size="tiny", seed=0, data_dir=str(tmp_path)).load("test")


@pytest.mark.parametrize(
    "params, name",
    [
        ({"size": "huge"}, "size"),
        ({"size": 2}, "size"),
        ({"image_size": 8}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"biased": "yes"}, "biased"),
        ({"task": "redundancy"}, "task"),
        ({"data_dir": ""}, "data_dir"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_parameters_name_themselves(params, name):
    with pytest.raises(ValueError, match=f"trifeatures: {name} must"):
        Trifeatures(**params)


def test_registered_and_validated_by_recipe():
    import mmkeras

    assert mmkeras.registry.get("datasets", "trifeatures") is Trifeatures
    with pytest.raises(mmkeras.RecipeError, match="task must be one of"):
        mmkeras.load_dataset("trifeatures", task="both")


def test_caches_written_before_cached_dataset_are_read(tmp_path):
    # format 1's own cache code named its files so; the same names mean no rebuild after the move
    data = Trifeatures(size="tiny", seed=3, biased=True, data_dir=str(tmp_path))
    assert data.cache_path("train") == tmp_path / "trifeatures" / "trifeatures_v1_train_n200_s32_seed3_biased.npz"
    assert data.cache_path("test").name == "trifeatures_v1_test_n100_s32_seed3.npz"
    # a cache file of that layout is read as is, not rendered again
    data.cache_dir.mkdir(parents=True)
    for split in ("train", "test"):
        n = data.sizes[split]
        np.savez(data.cache_path(split), images=np.full((n, 2, 32, 32, 3), 51, np.uint8), pairs=data.pairs(split))
    train = data.load("train")
    np.testing.assert_array_equal(train.inputs["image2"], np.full((200, 32, 32, 3), 0.2, np.float32))
