"""cnnbook.train and cnnbook.history: the training loop, its safety nets, and what it records."""

import json

import pytest
import torch
from torch import nn

import cnnbook
import cnnbook.config
import cnnbook.data
from cnnbook import History, TrainingDivergedError, accuracy, evaluate_accuracy
from cnnbook.train import uses_channels_last


def modern_lenet() -> nn.Sequential:
    """LeNet with ReLU and max pooling: learns Fashion-MNIST in a couple of short epochs."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(fashion_small):
    """One real run, shared by the tests that inspect it: 2 epochs on 4,000 images (~3 s)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CNNBOOK_PROFILE", raising=False)
        mp.setattr(cnnbook.config, "_chosen_profile", None)
        s = fashion_small
        train_iter = cnnbook.DeviceLoader(s.train_images, s.train_labels, 128, shuffle=True)
        test_iter = cnnbook.DeviceLoader(s.test_images, s.test_labels, 500)
        cnnbook.seed_everything(0)
        net = modern_lenet()
        optimizer = torch.optim.Adam(net.parameters(), lr=0.003)
        history = cnnbook.train(net, train_iter, test_iter, 2, lr=0.003, optimizer=optimizer, plot=False)
    return net, test_iter, history


def test_a_short_run_learns(trained):
    net, _, history = trained
    assert history.epochs == [1, 2]
    assert history.train_loss[1] < history.train_loss[0] < 2.3  # 2.3 = ln(10), the loss of guessing
    assert history.train_acc[-1] > 0.6
    assert history.test_acc[-1] > 0.6  # chance is 0.1
    assert not history.interrupted
    assert (history.device, history.profile) == ("cpu", "full")
    assert history.wall_time >= sum(history.epoch_time) > 0
    assert all(rate > 0 for rate in history.examples_per_sec)
    assert not net.training  # left in eval mode, ready for predictions


def test_evaluate_accuracy_is_the_fraction_counted_by_hand(trained):
    net, test_iter, history = trained
    correct = total = 0
    with torch.no_grad():
        for X, y in test_iter:
            correct += (net(X).argmax(dim=1) == y).sum().item()
            total += len(y)
    assert total == 1000
    assert evaluate_accuracy(net, test_iter) == correct / total
    assert evaluate_accuracy(net, test_iter) == history.test_acc[-1]  # the model did not change since


def test_evaluate_accuracy_leaves_the_mode_as_it_was(trained):
    net, test_iter, _ = trained
    evaluate_accuracy(net, test_iter)
    assert not net.training
    net.train()
    try:
        evaluate_accuracy(net, test_iter)
        assert net.training
    finally:
        net.eval()


def test_accuracy_counts_correct_predictions_in_a_batch():
    y_hat = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = torch.tensor([1, 1, 1, 0])
    assert accuracy(y_hat, y).item() == 3


class BatchNumberLoss(nn.Module):
    """A loss whose value is 1 for the first batch, 2 for the second, ... (and no gradient)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, y_hat, y):
        self.calls += 1
        return y_hat.sum() * 0 + self.calls


def test_train_loss_is_the_mean_over_all_examples(fashion_loaders):
    train_iter, test_iter = fashion_loaders(batch_size=100, n_train=256)  # batches of 100, 100, 56
    history = cnnbook.train(
        modern_lenet(), train_iter, test_iter, 1, lr=0.1, loss=BatchNumberLoss(), plot=False
    )
    assert history.train_loss == [pytest.approx((1 * 100 + 2 * 100 + 3 * 56) / 256)]


@pytest.mark.parametrize("channels_last", [None, True, False])
def test_channels_last_is_the_cpu_default_and_can_be_turned_off(fashion_loaders, channels_last):
    """The stored layout of the conv weights shows which one training used."""
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=256)
    net = modern_lenet()
    cnnbook.train(
        net, train_iter, test_iter, 1, lr=0.1, device="cpu", channels_last=channels_last, plot=False
    )
    conv = net[3].weight  # the second conv: a single-channel one is both layouts at once
    expected = channels_last is not False  # None: on, because this run is on a CPU
    assert conv.is_contiguous(memory_format=torch.channels_last) == expected
    assert conv.is_contiguous() != expected
    assert uses_channels_last(None, torch.device("cuda")) is False


def test_inputs_without_channels_train_under_the_channels_last_default():
    """A network on flat feature vectors (no image layout to change) trains as before."""
    torch.manual_seed(0)
    X, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    batches = [(X[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    net = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
    history = cnnbook.train(net, batches, batches, 2, lr=0.1, device="cpu", plot=False)
    assert len(history.epochs) == 2 and history.train_loss[1] < history.train_loss[0]


# ------------------------------------------------------------------------ interrupted runs


class InterruptingNet(nn.Module):
    """Wraps a model and raises KeyboardInterrupt (as Ctrl-C does) at one training batch."""

    def __init__(self, net: nn.Module, at_call: int):
        super().__init__()
        self.net, self.at_call, self.calls = net, at_call, 0

    def forward(self, X):
        if self.training:
            self.calls += 1
            if self.calls == self.at_call:
                raise KeyboardInterrupt
        return self.net(X)


def test_ctrl_c_keeps_the_finished_epochs_and_a_usable_model(fashion_loaders, capsys):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000)  # 8 batches per epoch
    net = InterruptingNet(modern_lenet(), at_call=8 + 4)  # the 4th batch of epoch 2
    history = cnnbook.train(net, train_iter, test_iter, 3, lr=0.1, plot=False)

    assert history.interrupted
    assert history.epochs == [1] and len(history.test_acc) == 1
    out = capsys.readouterr().out
    assert "Interrupted in epoch 2, batch 4: returning the history of the 1 finished epochs" in out
    assert history.summary().endswith("INTERRUPTED")
    X, _ = next(iter(test_iter))
    with torch.no_grad():
        y_hat = net(X)
    assert y_hat.shape == (500, 10) and torch.isfinite(y_hat).all()
    assert all(torch.isfinite(p).all() for p in net.parameters())


class InterruptingLoader:
    """A loader that raises KeyboardInterrupt while fetching one batch (Ctrl-C between steps)."""

    def __init__(self, loader, epoch: int, batch: int):
        self.loader, self.stop, self.epoch = loader, (epoch, batch), 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.epoch += 1
        for i, batch in enumerate(self.loader):
            if (self.epoch, i) == self.stop:
                raise KeyboardInterrupt
            yield batch


def test_ctrl_c_in_the_data_loader_returns_the_history_too(fashion_loaders):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000)
    net = modern_lenet()
    history = cnnbook.train(net, InterruptingLoader(train_iter, 3, 2), test_iter, 5, lr=0.1, plot=False)
    assert history.interrupted and history.epochs == [1, 2]
    assert all(torch.isfinite(p).all() for p in net.parameters())


# ------------------------------------------------------------------------ diverging runs


class InfiniteLossAt(nn.Module):
    """Cross-entropy, except that call number ``at_call`` returns infinity (as an overflow would)."""

    def __init__(self, at_call: int):
        super().__init__()
        self.at_call, self.calls = at_call, 0

    def forward(self, y_hat, y):
        self.calls += 1
        loss = nn.functional.cross_entropy(y_hat, y)
        return loss * float("inf") if self.calls == self.at_call else loss


def test_an_infinite_loss_stops_training_naming_epoch_and_batch(fashion_loaders):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000)  # 8 batches per epoch
    with pytest.raises(TrainingDivergedError) as err:
        cnnbook.train(
            modern_lenet(), train_iter, test_iter, 3, lr=0.1, loss=InfiniteLossAt(8 + 3), plot=False
        )
    assert str(err.value) == (
        "The loss became NaN or infinite in epoch 2, batch 3 of 8; training stopped. The learning "
        "rate 0.1 is probably too high for this model: try lr=0.01. The model's weights are now "
        "unusable: rebuild or reload it."
    )
    assert isinstance(err.value, RuntimeError)
    assert err.value.history.epochs == [1]  # the finished epoch is kept


def test_a_huge_learning_rate_diverges_with_a_clear_message(fashion_loaders):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000)
    cnnbook.seed_everything(0)
    with pytest.raises(TrainingDivergedError, match=r"in epoch 1, batch \d+ of 8; .* try lr=1000\.") as err:
        cnnbook.train(modern_lenet(), train_iter, test_iter, 2, lr=1e4, plot=False)
    assert err.value.history.epochs == []


# ------------------------------------------------------------------------ options


def test_quick_profile_caps_the_epochs_and_says_so(fashion_loaders, capsys):
    cnnbook.use_profile("quick")
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=256, n_test=500)
    history = cnnbook.train(modern_lenet(), train_iter, test_iter, 7, lr=0.1, plot=False)
    assert capsys.readouterr().out.startswith("quick profile: training 5 of 7 epochs.\n")
    assert history.epochs == [1, 2, 3, 4, 5] and history.profile == "quick"


def test_init_none_keeps_the_weights_and_xavier_resets_them(fashion_loaders):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=256, n_test=500)
    net = modern_lenet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # lr=0: the optimizer changes nothing, so any change comes from the initialisation.
    cnnbook.train(net, train_iter, test_iter, 1, lr=0.0, init=None, plot=False)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    cnnbook.train(net, train_iter, test_iter, 1, lr=0.0, plot=False)
    assert not torch.equal(before["0.weight"], net.state_dict()["0.weight"])
    assert torch.equal(before["0.bias"], net.state_dict()["0.bias"])  # xavier touches weights only


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init must be 'xavier' or None, got 'kaiming'."):
        cnnbook.train(modern_lenet(), [], [], 1, lr=0.1, init="kaiming")


@pytest.mark.parametrize("plot", [False, True])
def test_plot_or_not_outside_jupyter(fashion_loaders, capsys, plot):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=256, n_test=500)
    history = cnnbook.train(modern_lenet(), train_iter, test_iter, 2, lr=0.1, plot=plot)
    out, err = capsys.readouterr()
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    # In a terminal the live plot falls back to one printed line per epoch.
    assert epoch_lines == ([history.epoch_line(0), history.epoch_line(1)] if plot else [])
    assert out.endswith(history.summary() + "\n")
    assert "2/2 epochs in" in err  # the progress line goes to stderr


# ------------------------------------------------------------------------ History


def one_epoch_history() -> History:
    history = History(device="cpu", device_name="AMD EPYC (2 cores, 2 torch threads)", profile="quick")
    history.record(0.4771, 0.8204, 0.7951, 12.5, 8004.2)
    history.wall_time = 12.34
    return history


def test_summary_reads_like_d2l_then_says_where_it_ran():
    assert one_epoch_history().summary() == (
        "loss 0.477, train acc 0.820, test acc 0.795, 8004.2 examples/sec on cpu\n"
        "profile quick · 1 epochs · AMD EPYC (2 cores, 2 torch threads) · wall time 12.3 s"
    )


def test_summary_of_an_interrupted_and_of_an_empty_run():
    history = one_epoch_history()
    history.interrupted = True
    assert history.summary().endswith("wall time 12.3 s · INTERRUPTED")
    assert (
        History(device_name="CPU", profile="full").summary() == "no epoch finished (profile full, device CPU)"
    )


def test_epoch_line():
    assert (
        one_epoch_history().epoch_line(0) == "epoch 1: loss 0.477, train acc 0.820, test acc 0.795 (12.5 s)"
    )


def test_mean_examples_per_sec_is_total_examples_over_total_time():
    history = History()
    history.record(1.0, 0.5, 0.5, 1.0, 1000.0)
    history.record(1.0, 0.5, 0.5, 1.0, 3000.0)
    # Equal epochs: 2 epochs' examples in 1/1000 + 1/3000 of the time per example.
    assert history.mean_examples_per_sec == pytest.approx(1500.0)
    assert "1500.0 examples/sec" in history.summary()
    assert History().mean_examples_per_sec == 0.0


def test_history_round_trips_through_a_plain_dict(trained):
    history = trained[2]
    data = history.to_dict()
    json.dumps(data)  # only plain lists, numbers and strings
    assert History.from_dict(data) == history
    assert History.from_dict(data).summary() == history.summary()


def test_chapter_1s_lenet_under_the_quick_profile_reaches_0_6(fashion_mnist, monkeypatch):
    """Chapter 1's own run (lr 0.9, batch 256, 10 epochs), as a reader on a laptop gets it."""
    monkeypatch.setattr(cnnbook.data, "read_fashion_mnist", lambda root=None: fashion_mnist)
    cnnbook.use_profile("quick")
    train_iter, test_iter = cnnbook.load_data_fashion_mnist(256)
    cnnbook.seed_everything(0)
    history = cnnbook.train(cnnbook.models.lenet(), train_iter, test_iter, 10, 0.9, "cpu", plot=False)
    assert (history.profile, len(history.epochs)) == ("quick", 5)
    assert history.test_acc[-1] >= 0.6, history.summary()
