"""cnnbook.loader: the in-memory DeviceLoader and its batch augmentation."""

import pytest
import torch

import cnnbook
from cnnbook import Augment, DeviceLoader
from cnnbook.loader import augment_batch


@pytest.fixture
def images(fashion_small):
    """1,000 real Fashion-MNIST images, uint8 (1000, 1, 28, 28)."""
    return fashion_small.train_images[:1000]


def index_loader(images, batch_size=128, **options):
    """A loader whose "labels" are the example indices, so a batch tells which examples it holds."""
    return DeviceLoader(images, torch.arange(len(images)), batch_size, **options)


def epoch_order(loader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


def test_batches_are_float_images_in_0_1_with_their_labels(fashion_small):
    loader = DeviceLoader(fashion_small.train_images, fashion_small.train_labels, batch_size=256)
    X, y = next(iter(loader))
    assert X.shape == (256, 1, 28, 28) and X.dtype == torch.float32
    assert y.shape == (256,) and y.dtype == torch.int64
    assert 0.0 <= X.min() and X.max() <= 1.0
    torch.testing.assert_close(X, fashion_small.train_images[:256].float() / 255)
    assert torch.equal(y, fashion_small.train_labels[:256])


def test_every_example_exactly_once_per_epoch(images):
    loader = index_loader(images, shuffle=True)
    for _ in range(2):
        seen = []
        for X, idx in loader:
            # Each image arrives with its own label: the batch is images[idx], as floats.
            assert torch.equal(X, images[idx].float() / 255)
            seen += idx.tolist()
        assert sorted(seen) == list(range(1000))


def test_a_new_order_every_epoch(images):
    loader = index_loader(images, shuffle=True)
    first, second = epoch_order(loader), epoch_order(loader)
    assert first != second
    assert first != list(range(1000))  # shuffled, not dataset order


def test_without_shuffle_the_order_is_the_dataset_order(images):
    loader = index_loader(images, shuffle=False)
    assert epoch_order(loader) == epoch_order(loader) == list(range(1000))


def test_the_order_is_fixed_by_the_seed(images):
    a, b = index_loader(images, shuffle=True, seed=7), index_loader(images, shuffle=True, seed=7)
    assert [epoch_order(a), epoch_order(a)] == [epoch_order(b), epoch_order(b)]
    assert epoch_order(index_loader(images, shuffle=True, seed=8)) != epoch_order(
        index_loader(images, shuffle=True, seed=7)
    )


def test_reseed_restarts_the_order_and_the_augmentation(images):
    loader = index_loader(images, shuffle=True, seed=7, augment=Augment())
    loader.reseed(3)
    first_run = [(X.clone(), idx) for X, idx in loader]
    epoch_order(loader)  # move on, as a second epoch would
    loader.reseed(3)
    for (X, idx), (X_again, idx_again) in zip(first_run, loader, strict=True):
        assert torch.equal(idx, idx_again) and torch.equal(X, X_again)
    fresh = index_loader(images, shuffle=True, seed=3)
    assert epoch_order(fresh)[:10] == first_run[0][1][:10].tolist()  # as if built with seed=3
    assert loader.seed == 3
    elsewhere = loader.to("meta")  # a copy on another device shares the generator, so the seed too
    loader.reseed(5)
    assert elsewhere.seed == loader.seed == 5


def test_the_last_batch_may_be_short(images):
    loader = index_loader(images, batch_size=300)
    assert len(loader) == 4 and loader.num_examples == 1000
    assert [len(y) for _, y in loader] == [300, 300, 300, 100]


def test_resize_gives_the_asked_size(images):
    X, _ = next(iter(index_loader(images, resize=64)))
    assert X.shape == (128, 1, 64, 64)
    X, _ = next(iter(index_loader(images, resize=(32, 48))))
    assert X.shape == (128, 1, 32, 48)


def test_mean_and_std_normalise_each_channel(images):
    mean, std = 0.286, 0.353
    X_plain, _ = next(iter(index_loader(images)))
    X_norm, _ = next(iter(index_loader(images, mean=(mean,), std=(std,))))
    torch.testing.assert_close(X_norm, (X_plain - mean) / std)


def test_augment_keeps_shapes_and_changes_pixels(images):
    plain = index_loader(images, batch_size=256)
    augmented = index_loader(images, batch_size=256, augment=Augment(crop_padding=4, flip=True))
    (X_plain, y_plain), (X_aug, y_aug) = next(iter(plain)), next(iter(augmented))
    assert X_aug.shape == X_plain.shape and X_aug.dtype == X_plain.dtype
    assert torch.equal(y_aug, y_plain)  # augmentation moves pixels, never labels
    changed = (X_aug != X_plain).flatten(1).any(dim=1)
    assert changed.float().mean() > 0.9  # (1/9 chance of no shift) x (1/2 of no flip) leaves ~5%
    assert 0.0 <= X_aug.min() and X_aug.max() <= 1.0


def test_crop_keeps_the_image_content_shifted(images):
    X = images[:64].float() / 255
    augment = Augment(crop_padding=2, flip=False)
    out = augment_batch(X, augment, augment.draw(len(X), torch.Generator().manual_seed(0)))
    for original, cropped in zip(X, out, strict=True):
        # Some shift (dy, dx) in -2..2 maps the original onto the crop, zeros filling the border.
        padded = torch.nn.functional.pad(original, (2, 2, 2, 2))
        windows = [padded[:, dy : dy + 28, dx : dx + 28] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(cropped, w) for w in windows)


def test_flip_is_a_left_right_mirror(images):
    X = images[:256].float() / 255
    augment = Augment(crop_padding=0, flip=True)
    out = augment_batch(X, augment, augment.draw(len(X), torch.Generator().manual_seed(0)))
    mirrored = torch.tensor([torch.equal(o, x.flip(-1)) for o, x in zip(out, X, strict=True)])
    unchanged = torch.tensor([torch.equal(o, x) for o, x in zip(out, X, strict=True)])
    assert (mirrored | unchanged).all()
    assert 0.35 < mirrored.float().mean() < 0.65  # about half of them
    i = int(mirrored.nonzero()[0])
    assert torch.equal(out[i][..., 0], X[i][..., -1])  # the left column is the old right one
    assert not torch.equal(out[i], X[i])  # and a real image is not symmetric


def test_to_the_same_device_returns_the_loader_itself(images):
    loader = index_loader(images)
    assert loader.device == torch.device("cpu")
    assert loader.to("cpu") is loader
    assert loader.to(torch.device("cpu")) is loader


def test_subset_is_a_class_balanced_loader_with_the_same_options(fashion_small):
    images, labels = fashion_small.train_images, fashion_small.train_labels
    options = {"resize": 32, "mean": (0.3,), "std": (0.35,), "augment": Augment(crop_padding=2)}
    loader = DeviceLoader(images, labels, 100, shuffle=True, **options)
    small = loader.subset(500, seed=3)
    assert small.num_examples == 500 and len(small) == 5
    assert torch.bincount(small.labels).tolist() == [50] * 10
    kept = torch.from_numpy(cnnbook.balanced_subset(labels.numpy(), 500, seed=3))
    assert torch.equal(small.images, images[kept]) and torch.equal(small.labels, labels[kept])
    assert (small.batch_size, small.shuffle, small.resize) == (100, True, (32, 32))
    assert (small.mean, small.std, small.augment, small.seed) == ((0.3,), (0.35,), Augment(crop_padding=2), 3)
    assert loader.num_examples == 4000, "the loader itself is left as it was"


def test_a_subset_of_everything_shares_the_images_and_has_its_own_order(images):
    loader = index_loader(images, shuffle=True, seed=1)
    everything = loader.subset(None, seed=7)
    assert everything.images.data_ptr() == loader.images.data_ptr() and everything.num_examples == 1000
    assert epoch_order(everything) == epoch_order(index_loader(images, shuffle=True, seed=7))
    assert loader.subset(5000).num_examples == 1000


def test_float_images_are_refused():
    with pytest.raises(ValueError) as err:
        DeviceLoader(torch.rand(10, 1, 28, 28), torch.zeros(10, dtype=torch.long), 4)
    assert str(err.value) == (
        "DeviceLoader wants uint8 images of shape (N, C, H, W); got torch.float32 of shape (10, 1, 28, 28)."
    )


def test_images_without_a_channel_axis_are_refused(images):
    with pytest.raises(ValueError, match=r"got torch.uint8 of shape \(1000, 28, 28\)"):
        DeviceLoader(images[:, 0], torch.zeros(1000, dtype=torch.long), 4)


def test_labels_of_the_wrong_shape_are_refused(images):
    with pytest.raises(ValueError) as err:
        DeviceLoader(images, torch.zeros(1000, 1, dtype=torch.long), 4)
    assert str(err.value) == "1000 images but labels of shape (1000, 1); expected one label per image."
    with pytest.raises(ValueError, match=r"1000 images but labels of shape \(999,\)"):
        DeviceLoader(images, torch.zeros(999, dtype=torch.long), 4)


def test_batch_size_zero_is_refused(images):
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0."):
        DeviceLoader(images, torch.zeros(1000, dtype=torch.long), 0)


def test_augmentation_is_drawn_once_per_epoch_not_per_batch(images, monkeypatch):
    # A draw per batch would mean a CPU-to-GPU copy per batch, each one a wait for the GPU.
    draws = []
    original = Augment.draw
    monkeypatch.setattr(Augment, "draw", lambda self, n, g: draws.append(n) or original(self, n, g))
    loader = index_loader(images, batch_size=100, shuffle=True, augment=Augment())
    for _ in range(2):
        assert len(list(loader)) == 10
    assert draws == [1000, 1000]  # one draw for each epoch's 1,000 images


def test_an_augmented_epoch_is_reproducible_from_the_seed(images):
    a, b = (index_loader(images, shuffle=True, augment=Augment(), seed=5) for _ in range(2))
    for (Xa, ya), (Xb, yb) in zip(a, b, strict=True):
        assert torch.equal(ya, yb) and torch.equal(Xa, Xb)
