"""cnnbook.explorers.TrainingExplorer on real data: a run of the explorer is a run of
`cnnbook.train`, Cancel keeps what was done, a diverging learning rate says so, and the
explorer trains under its own profile."""

import pytest
import torch
from torch import nn

import cnnbook
from cnnbook.explorers import TrainingExplorer


@pytest.fixture
def relu_lenet(make_lenet):
    """LeNet with ReLU and max pooling: learns Fashion-MNIST in a couple of short epochs."""
    return lambda: make_lenet(nn.ReLU, nn.MaxPool2d)


def test_a_run_of_the_explorer_is_a_run_of_cnnbook_train(fashion_loaders, relu_lenet):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=2000, n_test=500)
    explorer = TrainingExplorer(
        relu_lenet, train_iter, test_iter, lr=0.1, epochs=2, train_examples=1000, seed=3, device="cpu"
    )
    explorer.show()  # the full profile: trains its one setting, from seed 3
    shown = explorer.histories[()]

    torch.manual_seed(3)  # the same net, initial weights, subset and order, through train
    by_hand = cnnbook.train(
        relu_lenet(), train_iter.subset(1000, seed=3), test_iter, 2, 0.1, "cpu", plot=False
    )
    assert shown.epochs == by_hand.epochs == [1, 2]
    for curve in ("train_loss", "train_acc", "test_acc"):
        assert getattr(shown, curve) == pytest.approx(getattr(by_hand, curve), abs=1e-6), curve
    assert (shown.device, shown.profile, shown.interrupted) == ("cpu", "full", False)
    assert f"after 2 epochs: {by_hand.scores()} (seed 3, cpu · " in explorer.results[(1,)].value
    assert f"after 1 epoch: {by_hand.first(1).scores()} (seed 3, cpu · " in explorer.results[(0,)].value


class PressCancelAt(nn.Module):
    """Wraps a net and presses the explorer's Cancel button in training batch ``at_call``."""

    def __init__(self, net: nn.Module, at_call: int):
        super().__init__()
        self.net, self.at_call, self.calls, self.explorer = net, at_call, 0, None

    def forward(self, X):
        if self.training:
            self.calls += 1
            if self.calls == self.at_call:
                self.explorer.cancel()
        return self.net(X)


def test_cancel_stops_the_run_and_keeps_the_finished_epochs(fashion_loaders, relu_lenet):
    train_iter, test_iter = fashion_loaders(batch_size=125, n_train=1000, n_test=500)  # 8 batches
    net = PressCancelAt(relu_lenet(), at_call=8 + 3)  # in the 3rd batch of epoch 2
    explorer = TrainingExplorer(lambda: net, train_iter, test_iter, lr=0.1, epochs=3, device="cpu")
    net.explorer = explorer
    explorer.run().join(60)

    assert explorer.last_error is None, explorer.last_error
    assert explorer.status.value.startswith("Cancelled")
    assert net.calls == 8 + 3, "no batch trained after the one that pressed Cancel"
    history = explorer.histories[()]
    assert history.epochs == [1] and history.interrupted
    assert history.summary().endswith("INTERRUPTED")
    assert f"after 1 epoch: {history.scores()} (seed 1, cpu · " in explorer.results[(0,)].value
    chosen = explorer.results[(2,)].value
    assert f"cancelled after 1 of 3 epochs: {history.scores()} (seed 1)" in chosen
    assert "training..." not in chosen, "the view the run was drawing says it was cancelled, not training"
    assert explorer.results[(1,)].value == cnnbook.widgets.NOT_COMPUTED


def test_a_diverging_learning_rate_shows_the_nan_message(fashion_loaders, relu_lenet):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000, n_test=500)
    explorer = TrainingExplorer(relu_lenet, train_iter, test_iter, lr=[0.1, 1e4], epochs=2, device="cpu")
    explorer.show()
    for epochs in (0, 1):
        assert (
            "lr 10000: the loss became NaN or infinite in epoch 1: lr 10000 is too high"
            in explorer.results[(1, epochs)].value
        )
    assert explorer.histories[(1,)].epochs == []
    assert "after 2 epochs" in explorer.results[(0, 1)].value, "the other learning rate trained"


def test_the_explorer_trains_under_its_own_profile(fashion_loaders, relu_lenet, capsys):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=500, n_test=500)
    quick = TrainingExplorer(
        relu_lenet, train_iter, test_iter, lr=0.1, epochs=6, profile="quick", device="cpu"
    )
    quick.show()  # the active profile is full, but this explorer's is quick: nothing in advance
    assert not quick.computed and "quick profile: nothing trained in advance" in capsys.readouterr().out
    quick.run().join(60)
    assert quick.last_error is None, quick.last_error
    assert quick.histories[()].epochs == [1, 2, 3, 4, 5] and quick.histories[()].profile == "quick"
    assert "quick profile: trained 5 of 6 epochs" in quick.results[(5,)].value
    assert capsys.readouterr().out == "", "a run of the explorer prints nothing: the widget shows it"
