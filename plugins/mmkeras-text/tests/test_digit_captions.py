"""The digit_captions dataset: determinism, shapes, labels, and a train-only vocabulary."""

import numpy as np
import pytest
from mmkeras_text.digit_captions import WORDS, DigitCaptions, render_digits
from mmkeras_text.tokenizer import UNK_ID, split_words


def test_shapes_dtypes_and_labels():
    data = DigitCaptions(num_train=60, num_test=20, seed=1, length=10, vector_dim=8)
    for split, n in (("train", 60), ("test", 20)):
        rows = data.load(split)
        assert len(rows) == n
        assert rows.inputs["text"].shape == (n, 10) and rows.inputs["text"].dtype == np.int32
        assert rows.inputs["vector"].shape == (n, 8) and rows.inputs["vector"].dtype == np.float32
        assert rows.labels.dtype == np.int64 and set(rows.labels) <= set(range(10))
        # each caption names its row's digit, as a word or a numeral
        for caption, y in zip(data.captions(split), rows.labels):
            words = split_words(caption)
            assert WORDS[y] in words or str(y) in words, caption
    assert data.load("train").inputs["text"].max() < data.vocab_size <= data.max_vocab


def test_vector_code_is_the_digits_code_plus_noise():
    data = DigitCaptions(num_train=50, num_test=10, seed=2, noise=0.0)
    rows = data.load("train")
    np.testing.assert_array_equal(rows.inputs["vector"], data.codes[rows.labels])


def test_deterministic_by_seed():
    a, b = DigitCaptions(num_train=40, num_test=10, seed=5), DigitCaptions(num_train=40, num_test=10, seed=5)
    for split in ("train", "test"):
        x, y = a.load(split), b.load(split)
        np.testing.assert_array_equal(x.inputs["text"], y.inputs["text"])
        np.testing.assert_array_equal(x.inputs["vector"], y.inputs["vector"])
        np.testing.assert_array_equal(x.labels, y.labels)
    assert a.tokenizer == b.tokenizer
    other = DigitCaptions(num_train=40, num_test=10, seed=6)
    assert other.captions("train") != a.captions("train")
    # the test split does not depend on the size of the training split
    assert DigitCaptions(num_train=80, num_test=10, seed=5).captions("test") == a.captions("test")


def test_test_captions_use_the_train_vocabulary():
    data = DigitCaptions(num_train=3, num_test=200, seed=0)
    train_words = {w for c in data.captions("train") for w in split_words(c)}
    assert set(data.tokenizer.tokens[2:]) == train_words
    test = data.load("test")
    np.testing.assert_array_equal(test.inputs["text"], data.tokenizer.encode(data.captions("test"), data.length))
    # three training captions cannot cover 200 test captions: their new words are unknown (id 1)
    unseen = [any(w not in train_words for w in split_words(c)) for c in data.captions("test")]
    assert any(unseen)
    np.testing.assert_array_equal((test.inputs["text"] == UNK_ID).any(axis=1), unseen)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="num_train must be an int >= 1"):
        DigitCaptions(num_train=0)
    with pytest.raises(ValueError, match="noise must be a number >= 0"):
        DigitCaptions(noise=-1.0)
    with pytest.raises(ValueError, match="has no split 'validation'"):
        DigitCaptions(num_train=5, num_test=5).load("validation")


def test_image_modality_shape_range_and_independence():
    plain = DigitCaptions(num_train=50, num_test=30, seed=3)
    drawn = DigitCaptions(num_train=50, num_test=30, seed=3, image_size=28)
    assert "image" not in plain.info() and "image" not in plain.load("train").inputs
    assert drawn.info()["image"].shape == (28, 28, 1)
    for split, n in (("train", 50), ("test", 30)):
        a, b = plain.load(split), drawn.load(split)
        image = b.inputs["image"]
        assert image.shape == (n, 28, 28, 1) and image.dtype == np.float32
        assert image.min() == 0.0 and image.max() == 1.0  # black background, fully covered stroke pixels
        # the image has its own stream: the other modalities and the labels are unchanged
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.inputs["text"], b.inputs["text"])
        np.testing.assert_array_equal(a.inputs["vector"], b.inputs["vector"])
    assert DigitCaptions(num_train=5, num_test=5, image_size=40).load("test").inputs["image"].shape == (5, 40, 40, 1)


def test_images_are_deterministic_and_draw_the_label():
    a = DigitCaptions(num_train=40, num_test=10, seed=4, image_size=28).load("train")
    b = DigitCaptions(num_train=40, num_test=10, seed=4, image_size=28).load("train")
    np.testing.assert_array_equal(a.inputs["image"], b.inputs["image"])
    other = DigitCaptions(num_train=40, num_test=10, seed=5, image_size=28).load("train")
    assert not np.array_equal(a.inputs["image"], other.inputs["image"])
    # each row is its label's numeral in the pose drawn from the image stream (spawn key (2, split))
    poses = np.random.default_rng(np.random.SeedSequence(4, spawn_key=(2, 0)))
    np.testing.assert_array_equal(a.inputs["image"], render_digits(a.labels, 28, poses))


def test_images_of_one_digit_are_closer_than_images_of_different_digits():
    data = DigitCaptions(num_train=1000, num_test=300, seed=0, image_size=28)
    train, test = data.load("train"), data.load("test")
    x = train.inputs["image"].reshape(len(train), -1)
    centroids = np.stack([x[train.labels == d].mean(axis=0) for d in range(10)])
    t = test.inputs["image"].reshape(len(test), -1)
    dist = ((t[:, None, :] - centroids[None]) ** 2).sum(axis=-1)  # [test rows, 10 digits]
    own = dist[np.arange(len(t)), test.labels]
    others = (dist.sum(axis=1) - own) / 9
    assert own.mean() < 0.9 * others.mean()  # measured: 0.80
    # a nearest-centroid classifier on raw pixels is far above chance (10%) despite the random poses
    assert (dist.argmin(axis=1) == test.labels).mean() > 0.4
    # each digit drawn upright and centred is nearest its own label's centroid: labels name the numeral
    upright = render_digits(np.arange(10), 28).reshape(10, -1)
    nearest = ((upright[:, None, :] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)
    np.testing.assert_array_equal(nearest, np.arange(10))


def test_bad_image_size_is_named():
    with pytest.raises(ValueError, match=r"image_size must be 0 \(no image\) or >= 8, got 4"):
        DigitCaptions(image_size=4)
    with pytest.raises(ValueError, match="image_size must be an int >= 0"):
        DigitCaptions(image_size=-1)
