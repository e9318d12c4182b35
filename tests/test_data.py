"""cnnbook.data: the book's datasets as loaders, class subsets, statistics and the classic path."""

import numpy as np
import pytest
import torch

import cnnbook
import cnnbook.data
from cnnbook import Augment, balanced_subset, cifar10_class_subset
from cnnbook.data import channel_stats


@pytest.fixture
def fashion_read_once(fashion_mnist, monkeypatch):
    """Make `cnnbook.data` reuse the session's Fashion-MNIST arrays instead of re-reading the files."""
    monkeypatch.setattr(cnnbook.data, "read_fashion_mnist", lambda root=None: fashion_mnist)
    return fashion_mnist


# ----------------------------------------------------------------------- Fashion-MNIST


def test_load_data_fashion_mnist_gives_float_batches_in_0_1(fashion_mnist, data_in_env):
    train_iter, test_iter = cnnbook.load_data_fashion_mnist(256)
    assert (train_iter.num_examples, test_iter.num_examples) == (60_000, 10_000)
    assert len(train_iter) == 235  # 234 full batches and one of 96
    X, y = next(iter(train_iter))
    assert X.shape == (256, 1, 28, 28) and X.dtype == torch.float32
    assert y.shape == (256,) and y.dtype == torch.int64
    assert 0.0 <= X.min() < X.max() <= 1.0
    # The test loader keeps the dataset order, so its first batch is the first 256 test images.
    X_test, y_test = next(iter(test_iter))
    test = fashion_mnist[1]
    torch.testing.assert_close(X_test, torch.tensor(test.images[:256]).float() / 255)
    assert y_test.tolist() == test.labels[:256].tolist()


def test_resize_gives_the_asked_size(fashion_read_once):
    train_iter, test_iter = cnnbook.load_data_fashion_mnist(64, resize=96)
    assert next(iter(train_iter))[0].shape == (64, 1, 96, 96)
    assert next(iter(test_iter))[0].shape == (64, 1, 96, 96)


def test_quick_profile_uses_class_balanced_subsets_and_says_so(fashion_read_once, capsys):
    cnnbook.use_profile("quick")
    train_iter, test_iter = cnnbook.load_data_fashion_mnist(256)
    assert capsys.readouterr().out == (
        "quick profile: Fashion-MNIST cut to 40,816 of 60,000 training and 2,551 of 10,000 test "
        "examples (class-balanced); CNNBOOK_PROFILE=full uses them all.\n"
    )
    assert (train_iter.num_examples, test_iter.num_examples) == (40_816, 2_551)
    for loader in (train_iter, test_iter):
        counts = torch.bincount(loader.labels, minlength=10)
        assert counts.max() - counts.min() <= 1


def test_reduced_profile_cuts_224_images_and_keeps_28x28_whole(fashion_read_once, capsys):
    cnnbook.use_profile("reduced")
    train_iter, test_iter = cnnbook.load_data_fashion_mnist(128, resize=224)
    assert capsys.readouterr().out.startswith(
        "reduced profile: Fashion-MNIST cut to 3,061 of 60,000 training and 612 of 10,000 test"
    )
    assert (train_iter.num_examples, test_iter.num_examples) == (3_061, 612)
    train28, test28 = cnnbook.load_data_fashion_mnist(128)
    assert (train28.num_examples, test28.num_examples) == (60_000, 10_000)
    assert capsys.readouterr().out == ""


def test_full_profile_prints_nothing(fashion_read_once, capsys):
    cnnbook.load_data_fashion_mnist(256)
    assert capsys.readouterr().out == ""


def test_fashion_mnist_label_names():
    assert cnnbook.get_fashion_mnist_labels(torch.tensor([0, 9, 3])) == ["t-shirt", "ankle boot", "dress"]


# ----------------------------------------------------------------------- balanced subsets


def test_balanced_subset_is_balanced_sorted_and_unique(fashion_mnist):
    labels = fashion_mnist[0].labels
    idx = balanced_subset(labels, 1005)
    assert len(idx) == len(set(idx.tolist())) == 1005
    assert (np.diff(idx) > 0).all()  # in dataset order
    assert sorted(np.bincount(labels[idx]).tolist()) == [100] * 5 + [101] * 5


def test_balanced_subset_is_deterministic(fashion_mnist):
    labels = fashion_mnist[0].labels
    assert np.array_equal(balanced_subset(labels, 500), balanced_subset(labels, 500))
    assert np.array_equal(balanced_subset(labels, 500, seed=3), balanced_subset(labels, 500, seed=3))
    assert not np.array_equal(balanced_subset(labels, 500, seed=0), balanced_subset(labels, 500, seed=1))


def test_balanced_subset_of_more_than_there_is_takes_everything():
    labels = np.array([0, 1, 1, 2])
    assert balanced_subset(labels, 10).tolist() == [0, 1, 2, 3]


def test_balanced_subset_takes_what_a_rare_class_has():
    labels = np.array([0] * 50 + [1] * 2)
    idx = balanced_subset(labels, 20)
    assert np.bincount(labels[idx]).tolist() == [10, 2]


# ------------------------------------------------------------------------- CIFAR-10


def test_cifar2_subset_is_airplanes_and_birds_relabelled(cifar10_read_once, cifar10):
    train, test = cifar10_class_subset(("airplane", "bird"), root=cifar10_read_once)
    assert train.images.shape == (10_000, 3, 32, 32) and test.images.shape == (2_000, 3, 32, 32)
    assert np.bincount(train.labels).tolist() == [5000, 5000]
    assert np.bincount(test.labels).tolist() == [1000, 1000]
    # Same images, in dataset order: airplanes (CIFAR label 0) became 0, birds (label 2) became 1.
    original = cifar10[0]
    keep = np.isin(original.labels, [0, 2])
    assert np.array_equal(train.images, original.images[keep])
    assert np.array_equal(train.labels, (original.labels[keep] == 2).astype(np.int64))


def test_class_subset_labels_follow_the_order_given(cifar10_read_once):
    train, _ = cifar10_class_subset(("bird", "airplane", "ship"), root=cifar10_read_once)
    airplanes, _ = cifar10_class_subset(("airplane",), root=cifar10_read_once)
    assert np.bincount(train.labels).tolist() == [5000, 5000, 5000]
    assert np.array_equal(train.images[train.labels == 1], airplanes.images)  # airplane is 1 here


@pytest.mark.parametrize(
    "classes, complaint",
    [
        (("airplane", "plane"), "got ['airplane', 'plane'] ('plane' unknown)."),
        (("Bird",), "got ['Bird'] ('Bird' unknown)."),
        (("bird", "bird"), "got ['bird', 'bird']."),
        ((), "got []."),
    ],
)
def test_bad_class_names_list_the_valid_ones(classes, complaint):
    with pytest.raises(ValueError) as err:
        cifar10_class_subset(classes)
    assert str(err.value) == (
        "CIFAR-10 classes must be distinct names from: airplane, automobile, bird, cat, deer, dog, "
        "frog, horse, ship, truck; " + complaint
    )


def test_unknown_class_names_are_refused_before_any_file_is_read(tmp_path):
    # No data anywhere: the error is about the names, not about missing files.
    with pytest.raises(ValueError, match=r"names from: airplane, automobile, .* \('plane' unknown\)"):
        cnnbook.load_data_cifar10(64, classes=("airplane", "plane"), root=tmp_path)


def test_channel_stats_by_hand():
    images = np.zeros((2, 2, 1, 2), dtype=np.uint8)
    images[:, 0] = 255  # channel 0: all white
    images[:, 1, 0, 1] = 255  # channel 1: pixels 0, 255, 0, 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx((1.0, 0.5))
    assert std == pytest.approx((0.0, (1 / 3) ** 0.5))  # sample std of -0.5, 0.5, -0.5, 0.5


def test_channel_stats_of_real_images(fashion_small):
    images = fashion_small.train_images.numpy()
    mean, std = channel_stats(images)
    scaled = images / 255
    assert mean == pytest.approx((scaled.mean(),), abs=1e-5)
    assert std == pytest.approx((scaled.std(ddof=1),), abs=1e-5)
    assert 0.2 < mean[0] < 0.4  # mostly black backgrounds


def test_load_data_cifar2_is_normalised_on_the_training_set(cifar10_read_once):
    train_iter, test_iter = cnnbook.load_data_cifar2(1000, root=cifar10_read_once)
    assert (train_iter.num_examples, test_iter.num_examples) == (10_000, 2_000)
    assert train_iter.augment is None
    X = torch.cat([X for X, _ in train_iter])
    assert X.shape == (10_000, 3, 32, 32)
    per_channel = X.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(dim=1), torch.zeros(3), atol=1e-3, rtol=0)
    torch.testing.assert_close(per_channel.std(dim=1), torch.ones(3), atol=1e-3, rtol=0)
    assert set(torch.cat([y for _, y in test_iter]).tolist()) == {0, 1}
    assert test_iter.mean == train_iter.mean  # the test set uses the training statistics


def test_quick_cifar2_keeps_the_training_set_and_cuts_the_test_set(cifar10_read_once, capsys):
    cnnbook.use_profile("quick")
    train_iter, test_iter = cnnbook.load_data_cifar2(256, root=cifar10_read_once)
    assert (train_iter.num_examples, test_iter.num_examples) == (10_000, 651)
    assert capsys.readouterr().out.startswith(
        "quick profile: CIFAR-2 (airplane, bird) cut to 10,000 of 10,000 training and 651 of 2,000 test"
    )


def test_load_data_cifar10_augments_the_training_set_only(cifar10_read_once, capsys):
    cnnbook.use_profile("quick")
    classes = ("airplane", "automobile", "bird")
    train_iter, test_iter = cnnbook.load_data_cifar10(128, classes=classes, root=cifar10_read_once)
    assert train_iter.augment == Augment() and test_iter.augment is None
    assert capsys.readouterr().out.startswith(
        "quick profile: CIFAR-3 (airplane, automobile, bird) cut to 10,416 of 15,000 training and "
        "651 of 3,000 test examples"
    )
    X, y = next(iter(train_iter))
    assert X.shape == (128, 3, 32, 32) and set(y.tolist()) == {0, 1, 2}


# ------------------------------------------------------------------------- classic path


def test_classic_dataloader_yields_the_same_images_as_the_device_loader(fashion_read_once):
    cnnbook.use_profile("quick")  # the same fixed subsets on both paths, and a shorter test
    classic_train, classic_test = cnnbook.load_data_fashion_mnist_classic(256, num_workers=0)
    fast_train, fast_test = cnnbook.load_data_fashion_mnist(256)

    assert len(classic_train.dataset) == fast_train.num_examples
    assert np.array_equal(classic_train.dataset.images, fast_train.images.numpy())
    image, label = classic_train.dataset[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and isinstance(label, int)

    assert len(classic_test) == len(fast_test)
    for (X_classic, y_classic), (X_fast, y_fast) in zip(classic_test, fast_test, strict=True):
        assert torch.equal(X_classic, X_fast)  # ToTensor computes uint8 / 255 too, bit for bit
        assert torch.equal(y_classic, y_fast)


def test_classic_path_resizes_with_torchvision(fashion_read_once):
    cnnbook.use_profile("quick")
    train_iter, _ = cnnbook.load_data_fashion_mnist_classic(32, resize=64, num_workers=0)
    X, y = next(iter(train_iter))
    assert X.shape == (32, 1, 64, 64) and y.dtype == torch.int64
