"""cnnbook.checkpoint: atomic saves, safe loads, and clear errors for the wrong model."""

import pytest
import torch
from torch import nn

import cnnbook.checkpoint
from cnnbook import CheckpointError, History, load_checkpoint, save_checkpoint


def small_net(hidden: int = 32) -> nn.Sequential:
    """A conv layer and two linear ones, for 1x28x28 images."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 26 * 26, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


@pytest.fixture
def trained_net(fashion_small):
    """A small net and its SGD-with-momentum optimizer after three real steps (so it has state)."""
    torch.manual_seed(0)
    net = small_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    X, y = fashion_small.train_images[:192].float() / 255, fashion_small.train_labels[:192]
    for Xb, yb in zip(X.split(64), y.split(64), strict=True):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(Xb), yb).backward()
        optimizer.step()
    history = History(device="cpu", device_name="CPU", profile="quick")
    history.record(0.9, 0.7, 0.68, 1.5, 2000.0)
    return net, optimizer, history


def test_save_and_load_round_trip(tmp_path, trained_net):
    net, optimizer, history = trained_net
    config = {"lr": 0.05, "batch_size": 64}
    path = save_checkpoint(
        tmp_path / "run" / "net.pt", net, optimizer, epoch=3, history=history, config=config
    )
    assert path == tmp_path / "run" / "net.pt" and path.is_file()

    fresh = small_net()
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9)
    checkpoint = load_checkpoint(path, fresh, fresh_optimizer)

    for (name, a), b in zip(net.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    momentum = [fresh_optimizer.state[p]["momentum_buffer"] for p in fresh.parameters()]
    expected = [optimizer.state[p]["momentum_buffer"] for p in net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, expected, strict=True))
    assert checkpoint["epoch"] == 3
    assert checkpoint["config"] == config
    assert checkpoint["version"] == cnnbook.checkpoint.FORMAT_VERSION
    assert isinstance(checkpoint["history"], History) and checkpoint["history"] == history
    X = torch.rand(2, 1, 28, 28)
    assert torch.equal(net(X), fresh(X))


def test_a_bare_state_dict_loads_too(tmp_path, trained_net):
    net = trained_net[0]
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    fresh = small_net()
    checkpoint = load_checkpoint(tmp_path / "weights.pt", fresh)
    assert torch.equal(fresh[0].weight, net[0].weight)
    assert set(checkpoint) == {"model"}


def test_loading_into_another_architecture_lists_the_mismatches(tmp_path, trained_net):
    path = save_checkpoint(tmp_path / "net.pt", trained_net[0])
    other = nn.Sequential(*small_net(hidden=64), nn.Softmax(dim=1), nn.Linear(10, 2))
    first_layer = other[0].weight.clone()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, other)
    assert str(err.value) == (
        f"The checkpoint {path} was saved from a different architecture than Sequential:\n"
        "  - missing in the checkpoint: 7.weight (2, 10)\n"
        "  - missing in the checkpoint: 7.bias (2,)\n"
        "  - shape of 3.weight: model has (64, 2704), checkpoint has (32, 2704)\n"
        "  - shape of 3.bias: model has (64,), checkpoint has (32,)\n"
        "  - shape of 5.weight: model has (10, 64), checkpoint has (10, 32)"
    )
    assert torch.equal(other[0].weight, first_layer)  # nothing was half-loaded into it


def test_wrong_architecture_error_is_short_even_for_a_big_mismatch(tmp_path, make_lenet):
    path = save_checkpoint(tmp_path / "lenet.pt", make_lenet())
    many_layers = nn.Sequential(*[nn.Linear(8, 8) for _ in range(40)])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, many_layers)
    message = str(err.value)
    assert "tensor(" not in message  # shapes, never a wall of numbers
    assert len(message.splitlines()) == 1 + 20 + 1  # the first 20 problems, then a count
    # 70 keys missing from the checkpoint and 10 of different shape: 80 problems.
    assert message.endswith("  - ... and 60 more")
    assert len(message) < 2500


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "nowhere.pt", small_net())
    assert str(err.value) == f"No checkpoint at {tmp_path / 'nowhere.pt'}: the file does not exist."


def test_unreadable_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights")
    with pytest.raises(CheckpointError, match=f"Cannot read the checkpoint {path}: "):
        load_checkpoint(path, small_net())


def test_resuming_needs_the_optimizer_state(tmp_path, trained_net):
    net, optimizer, _ = trained_net
    path = save_checkpoint(tmp_path / "net.pt", net)
    with pytest.raises(CheckpointError, match="holds no optimizer state to resume from"):
        load_checkpoint(path, small_net(), torch.optim.SGD(small_net().parameters(), lr=0.1))


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, trained_net, monkeypatch):
    net = trained_net[0]
    path = save_checkpoint(tmp_path / "net.pt", net, epoch=1)
    good_bytes = path.read_bytes()

    def save_then_ctrl_c(obj, f):
        f.write(b"PK\x03\x04 the first bytes of a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(cnnbook.checkpoint.torch, "save", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, small_net(), epoch=2)
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pt"]  # no temporary file left
    assert path.read_bytes() == good_bytes
    assert load_checkpoint(path, small_net())["epoch"] == 1


class Payload:
    """Stands for any object a malicious checkpoint might smuggle in."""


def test_loading_refuses_arbitrary_pickled_objects(tmp_path):
    path = tmp_path / "suspicious.pt"
    torch.save({"model": small_net().state_dict(), "extra": Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, small_net())
    assert f"Cannot read the checkpoint {path}: UnpicklingError" in str(err.value)
    assert "Payload" in str(err.value)  # torch names the class it refused


# ------------------------------------------------------- resuming a run (chapters 3 to 5)


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 14 * 14, 10),
    )  # fmt: skip


def test_resuming_from_a_checkpoint_continues_the_run(tmp_path, fashion_loaders):
    torch.manual_seed(0)
    net = small_cnn()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000)
    history = cnnbook.train(net, train_iter, test_iter, 2, 0.05, "cpu", optimizer=optimizer, plot=False)
    path = save_checkpoint(tmp_path / "run.pt", net, optimizer, epoch=2, history=history)

    # A new session: a fresh model and optimizer, filled from the file.
    fresh = small_cnn()
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9)
    checkpoint = load_checkpoint(path, fresh, fresh_optimizer)
    assert checkpoint["epoch"] == 2 and checkpoint["history"] == history

    # The original run and the resumed one, continued on identical data, stay identical:
    # the weights, the momentum buffers and the history all came back.
    kept = cnnbook.train(
        net,
        *fashion_loaders(128, 1000),
        1,
        0.05,
        "cpu",
        init=None,
        optimizer=optimizer,
        history=history,
        plot=False,
    )
    resumed = cnnbook.train(
        fresh,
        *fashion_loaders(128, 1000),
        1,
        0.05,
        "cpu",
        init=None,
        optimizer=fresh_optimizer,
        history=checkpoint["history"],
        plot=False,
    )
    assert resumed.epochs == [1, 2, 3]
    assert resumed.train_loss[:2] == history.train_loss[:2] == kept.train_loss[:2]
    assert resumed.train_loss[2] == pytest.approx(kept.train_loss[2], rel=1e-5)
    assert resumed.test_acc[2] == pytest.approx(kept.test_acc[2])
    for a, b in zip(net.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_resuming_without_init_none_would_restart_from_random_weights(tmp_path, fashion_loaders):
    torch.manual_seed(0)
    net = small_cnn()
    cnnbook.train(net, *fashion_loaders(128, 500), 1, 0.05, "cpu", plot=False)
    path = save_checkpoint(tmp_path / "run.pt", net)
    fresh = small_cnn()
    load_checkpoint(path, fresh)
    fresh.apply(cnnbook.init_xavier)  # what the default init="xavier" does first
    assert not torch.equal(fresh[0].weight, net[0].weight)
