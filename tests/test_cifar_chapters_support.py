"""What chapters 3 to 5 rely on: resuming from a checkpoint, a per-batch learning-rate
schedule, the quick profile's compute cap, and clear errors for bad class names."""

import importlib

import pytest
import torch
from torch import nn

import cnnbook
import cnnbook.config
from cnnbook import History, load_checkpoint, save_checkpoint
from cnnbook.config import Profile


def linear_net() -> nn.Sequential:
    """Softmax regression on 1x28x28 images: 2 * 784 * 10 = 15,680 forward FLOPs per image."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


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


def test_quick_profile_has_a_compute_cap_and_full_has_none():
    assert cnnbook.PROFILES["quick"].train_flops == 2_000_000_000_000
    assert cnnbook.PROFILES["full"].train_flops is None


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


def test_unknown_class_names_are_refused_before_any_file_is_read(tmp_path):
    # No data anywhere: the error is about the names, not about missing files.
    with pytest.raises(ValueError, match=r"names from: airplane, automobile, .* \('plane' unknown\)"):
        cnnbook.load_data_cifar10(64, classes=("airplane", "plane"), root=tmp_path)


def test_history_continues_numbering_after_a_loaded_history():
    history = History()
    history.record(0.7, 0.6, 0.55, 1.0, 100.0)
    history.record(0.5, 0.7, 0.65, 1.0, 100.0)
    restored = History.from_dict(history.to_dict())
    restored.record(0.4, 0.8, 0.7, 1.0, 100.0)
    assert restored.epochs == [1, 2, 3]


def test_new_figure_gives_a_figure_and_its_axes():
    fig, (left, right) = cnnbook.new_figure(ncols=2)
    left.plot([1, 2], [3, 4])
    assert list(fig.get_size_inches()) == [10, 3.2]
    assert cnnbook.plot.figure_png(fig).startswith(b"\x89PNG")
    _, ax = cnnbook.new_figure(figsize=(4, 3))
    assert ax.figure.get_size_inches().tolist() == [4, 3]
