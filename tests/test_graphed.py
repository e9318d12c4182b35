"""cnnbook.graphed: a training step recorded as a CUDA graph trains exactly as the plain step.

The state-restoring warm-up is plain PyTorch and is tested everywhere; recording and
replaying need a CUDA GPU (run these on one: ``pytest tests/test_graphed.py``).
"""

import pytest
import torch
from torch import nn

import cnnbook
from cnnbook.graphed import state_restored

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)
    )


def sgd_steps(net, optimizer, batches):
    losses = []
    for X, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(X), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def batches(n=4):
    """``n`` random batches of 32 one-channel 28x28 images with labels."""
    g = torch.Generator().manual_seed(0)
    return [
        (torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(n)
    ]


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
    lambda p: torch.optim.Adam(p, lr=0.01),
])  # fmt: skip
def test_steps_inside_state_restored_leave_no_trace(make_optimizer):
    data = batches()
    torch.manual_seed(0)
    reference = small_net()
    warmed = small_net()
    warmed.load_state_dict(reference.state_dict())
    reference_opt, warmed_opt = make_optimizer(reference.parameters()), make_optimizer(warmed.parameters())
    weights = [p.data_ptr() for p in warmed.parameters()]
    with state_restored(warmed, warmed_opt):
        sgd_steps(warmed, warmed_opt, data[:1] * 3)  # the warm-up: three steps on one batch
    assert [p.data_ptr() for p in warmed.parameters()] == weights  # restored in place
    for a, b in zip(reference.state_dict().values(), warmed.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # weights and batch-norm statistics are back
    # The optimizer state made during warm-up (momentum, Adam's moments) now acts as a fresh start.
    torch.testing.assert_close(sgd_steps(warmed, warmed_opt, data), sgd_steps(reference, reference_opt, data))


def test_cuda_graph_is_refused_off_cuda_and_with_a_scheduler(fashion_loaders):
    train_iter, test_iter = fashion_loaders()
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        cnnbook.train(net, train_iter, test_iter, 1, 0.1, "cpu", cuda_graph=True, plot=False)
    if torch.cuda.is_available():
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, 1)
        with pytest.raises(ValueError, match="scheduler or cuda_graph"):
            cnnbook.train(net, train_iter, test_iter, 1, 0.1, "cuda", optimizer=optimizer,
                          scheduler=schedule, cuda_graph=True, plot=False)  # fmt: skip


@needs_cuda
@pytest.mark.parametrize("amp", [False, True])
def test_a_graphed_run_matches_the_plain_run_on_cuda(fashion_loaders, amp):
    train_iter, test_iter = fashion_loaders()  # the last batch is short: it runs unrecorded
    runs = []
    for cuda_graph in (False, True):
        torch.manual_seed(0)
        net = small_net()
        train_iter.reseed(0)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        runs.append(cnnbook.train(net, train_iter, test_iter, 2, 0.05, "cuda", optimizer=optimizer,
                                  amp=amp, cuda_graph=cuda_graph, plot=False))  # fmt: skip
    plain, graphed = runs
    tolerance = 1e-2 if amp else 1e-4
    assert graphed.train_loss == pytest.approx(plain.train_loss, rel=tolerance)
    assert graphed.test_acc == pytest.approx(plain.test_acc, abs=tolerance)
