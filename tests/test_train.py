"""cnnbook.train and cnnbook.history: the training loop, its safety nets, and what it records."""

import copy
import importlib

import pytest
import torch
from torch import nn

import cnnbook
import cnnbook.config
import cnnbook.data
from cnnbook import History, TrainingDivergedError, accuracy, evaluate_accuracy
from cnnbook.config import Profile
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


def chapter_3_training_loop(n_epochs, optimizer, model, loss_fn, train_loader):
    """Chapter 3's hand-written ``training_loop``: its five steps, without its curves and prints."""
    for _ in range(n_epochs):
        for imgs, labels in train_loader:
            outputs = model(imgs)  # 1. forward
            loss = loss_fn(outputs, labels)  # 2. loss: the mean over the batch
            optimizer.zero_grad()  # 3. clear the gradients of the last batch
            loss.backward()  # 4. backward: new gradients
            optimizer.step()  # 5. update the parameters


@pytest.mark.parametrize("channels_last", [False, True])
def test_train_takes_the_steps_of_chapter_3s_loop(fashion_loaders, make_lenet, channels_last):
    """Same initial weights, data order and SGD: the same weights after two epochs, exactly in
    NCHW; in channels-last other kernels add in another order (a last-digit difference)."""
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000, n_test=500)
    torch.manual_seed(0)
    by_hand = make_lenet()
    by_hand.apply(cnnbook.init_xavier)
    net = copy.deepcopy(by_hand)

    train_iter.reseed(0)
    optimizer = torch.optim.SGD(by_hand.parameters(), lr=0.9)
    chapter_3_training_loop(2, optimizer, by_hand, nn.CrossEntropyLoss(), train_iter)
    train_iter.reseed(0)
    cnnbook.train(
        net, train_iter, test_iter, 2, 0.9, "cpu", init=None, channels_last=channels_last, plot=False
    )

    for p, p_by_hand in zip(net.parameters(), by_hand.parameters(), strict=True):
        if channels_last:
            torch.testing.assert_close(p, p_by_hand, rtol=1e-4, atol=1e-5)
        else:
            assert torch.equal(p, p_by_hand)


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


def test_a_profile_passed_to_train_wins_over_the_active_one(fashion_loaders, capsys):
    cnnbook.use_profile("quick")
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=256, n_test=500)
    history = cnnbook.train(modern_lenet(), train_iter, test_iter, 7, lr=0.1, plot=False, profile="full")
    assert "profile:" not in capsys.readouterr().out, "no cap, so no note"
    assert history.epochs == [1, 2, 3, 4, 5, 6, 7] and history.profile == "full"
    assert cnnbook.active_profile().name == "quick", "the active profile is left as it was"


def test_quiet_prints_nothing_and_the_hooks_see_every_batch_and_epoch(fashion_loaders, capsys):
    cnnbook.use_profile("quick")  # its epoch cap would print a note
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=256, n_test=500)  # 2 batches
    reports, epochs = [], []
    history = cnnbook.train(
        modern_lenet(), train_iter, test_iter, 7, lr=0.1, quiet=True,
        progress=lambda fraction, text: reports.append((fraction, text)),
        on_epoch=lambda h: epochs.append(len(h.epochs)),
    )  # fmt: skip
    assert capsys.readouterr() == ("", "")
    assert epochs == [1, 2, 3, 4, 5] and len(history.epochs) == 5
    assert reports[:2] == [(0.1, "epoch 1/5 · batch 1/2"), (0.2, "epoch 1/5 · batch 2/2")]
    assert reports[-1] == (1.0, "epoch 5/5 · batch 2/2")


def test_an_exception_from_a_hook_stops_training_and_the_given_history_keeps_the_epochs(fashion_loaders):
    class Stop(Exception):
        pass

    def stop_in_epoch_2(fraction, text):
        if text.startswith("epoch 2/"):
            raise Stop

    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=256, n_test=500)
    history = History()
    with pytest.raises(Stop):
        cnnbook.train(
            modern_lenet(), train_iter, test_iter, 3, 0.1, history=history, progress=stop_in_epoch_2
        )
    assert history.epochs == [1] and history.wall_time > 0


def test_a_resumed_run_reports_its_own_time_and_adds_it_to_the_history(fashion_loaders, capsys):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=256, n_test=500)
    earlier = History()
    earlier.record(1.0, 0.5, 0.5, 900.0, 1.0)
    earlier.wall_time = 900.0  # as if loaded from a checkpoint of a long first run
    history = cnnbook.train(modern_lenet(), train_iter, test_iter, 1, 0.1, history=earlier, plot=False)
    err = capsys.readouterr().err
    new_seconds = history.wall_time - 900.0
    assert 0 < new_seconds < 900.0
    assert f"1/1 epochs in {new_seconds:.1f} s" in err, "the progress line times this call's epochs"
    assert "wall time 9" in history.summary(), "the summary keeps the whole run's time"


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


def test_chapter_1s_lenet_under_the_quick_profile_reaches_0_6(fashion_mnist, monkeypatch):
    """Chapter 1's own run (lr 0.9, batch 256, 10 epochs), as a reader on a laptop gets it."""
    monkeypatch.setattr(cnnbook.data, "read_fashion_mnist", lambda root=None: fashion_mnist)
    cnnbook.use_profile("quick")
    train_iter, test_iter = cnnbook.load_data_fashion_mnist(256)
    cnnbook.seed_everything(0)
    history = cnnbook.train(cnnbook.models.lenet(), train_iter, test_iter, 10, 0.9, "cpu", plot=False)
    assert (history.profile, len(history.epochs)) == ("quick", 5)
    assert history.test_acc[-1] >= 0.6, history.summary()


# ------------------------------------------------------- schedules and the compute cap


def linear_net() -> nn.Sequential:
    """Softmax regression on 1x28x28 images: 2 * 784 * 10 = 15,680 forward FLOPs per image."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def test_scheduler_steps_once_per_batch(fashion_loaders):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000)  # 8 batches
    net = linear_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    steps_seen = []

    def halve(step):
        steps_seen.append(step)
        return 0.5**step

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, halve)
    cnnbook.train(
        net, train_iter, test_iter, 2, 0.1, "cpu", optimizer=optimizer, scheduler=scheduler, plot=False
    )
    assert steps_seen == list(range(17))  # step 0 at construction, then one per batch
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**16)


def test_one_cycle_schedule_runs_its_course(fashion_loaders):
    train_iter, test_iter = fashion_loaders(batch_size=128, n_train=1000)
    net = linear_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, epochs=3, steps_per_epoch=len(train_iter))
    used = []  # the learning rate of every update
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    history = cnnbook.train(
        net, train_iter, test_iter, 3, 0.1, "cpu", optimizer=optimizer, scheduler=scheduler, plot=False
    )
    assert len(used) == scheduler.total_steps == 3 * len(train_iter)
    assert used[0] == pytest.approx(0.1 / 25)  # OneCycle starts at max_lr / div_factor
    assert max(used) == pytest.approx(0.1, rel=0.01)  # at 30% of the run
    assert used[-1] < 1e-5  # and anneals to almost zero
    assert history.test_acc[-1] > 0.6


@pytest.fixture
def quick_with_budget(monkeypatch):
    """``set_budget(flops)``: the quick profile with a chosen compute cap, made active."""

    def set_budget(flops):
        profile = Profile("quick", train_flops=flops)
        monkeypatch.setitem(cnnbook.config.PROFILES, "quick", profile)
        cnnbook.use_profile("quick")
        return profile

    return set_budget


def count_steps(optimizer) -> list[int]:
    """A list that grows by one entry per optimizer step (read through a LambdaLR)."""
    steps = []
    return steps, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: steps.append(step) or 1.0)


def test_a_run_over_the_compute_cap_uses_fewer_batches(quick_with_budget, fashion_loaders, capsys):
    train_iter, test_iter = fashion_loaders(batch_size=125, n_train=4000, n_test=1000)  # 32 and 2 batches
    # One epoch costs 15,680 FLOPs x (3 x 4,000 + 1,000) = 203.84 MFLOP; allow a quarter.
    quick_with_budget(203_840_000 // 4)
    net = linear_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    steps, scheduler = count_steps(optimizer)
    history = cnnbook.train(
        net, train_iter, test_iter, 1, 0.1, "cpu", optimizer=optimizer, scheduler=scheduler, plot=False
    )
    assert (
        "quick profile: this run would cost 0.0 TFLOP, over the profile's budget of 5.096e-05 TFLOP; "
        "training on 8 of 32 batches per epoch, testing on 1 of 2 test batches." in capsys.readouterr().out
    )
    assert len(steps) == 1 + 8
    assert history.epochs == [1]
    by_hand = cnnbook.evaluate_accuracy(net, [next(iter(test_iter))])  # the first test batch only
    assert history.test_acc == [by_hand]


def test_each_epoch_under_the_cap_sees_a_new_sample_of_batches(quick_with_budget, fashion_loaders):
    train_iter, test_iter = fashion_loaders(batch_size=100, n_train=1000, n_test=1000)
    quick_with_budget(2 * 15_680 * 4_000 // 5)  # a fifth of 2 epochs x (3 x 1,000 + 1,000) examples
    seen = []

    def remember_training_batches(module, args):
        if module.training:
            seen.append(args[0].sum().item())

    net = nn.Sequential(linear_net())
    net.register_forward_pre_hook(remember_training_batches)
    cnnbook.train(net, train_iter, test_iter, 2, 0.1, "cpu", plot=False)
    assert len(seen) == 2 * 2  # 2 of 10 batches per epoch, 2 epochs
    assert len(set(seen)) == 4


def test_a_run_under_the_compute_cap_is_untouched(quick_with_budget, fashion_loaders, capsys):
    train_iter, test_iter = fashion_loaders(batch_size=125, n_train=4000, n_test=1000)
    quick_with_budget(203_840_000)  # exactly one epoch's cost
    net = linear_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    steps, scheduler = count_steps(optimizer)
    cnnbook.train(
        net, train_iter, test_iter, 1, 0.1, "cpu", optimizer=optimizer, scheduler=scheduler, plot=False
    )
    assert "TFLOP" not in capsys.readouterr().out
    assert len(steps) == 1 + 32


def test_the_full_profile_never_counts_flops(fashion_loaders, monkeypatch):
    def no_counting(*args, **kwargs):
        raise AssertionError("the full profile must not estimate the cost")

    monkeypatch.setattr(importlib.import_module("cnnbook.train"), "FlopCounterMode", no_counting)
    cnnbook.train(linear_net(), *fashion_loaders(125, 500, 500), 1, 0.1, "cpu", plot=False)
