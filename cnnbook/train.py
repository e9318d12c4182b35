"""The training loop of the book: chapter 3's five steps, made fast and safe.

Inside every epoch the loop is the one chapter 3 writes by hand, one `train_step` per batch::

    for X, y in train_iter:
        y_hat = net(X)              # 1. forward
        l = loss(y_hat, y)          # 2. loss
        optimizer.zero_grad()       # 3. clear old gradients
        l.backward()                # 4. backward
        optimizer.step()            # 5. update

What `train` adds around it, and why:

* metrics are summed on the device and read once per epoch: a ``.item()`` per batch
  would make the CPU wait for the GPU every step;
* a progress line with an ETA and a live plot (`cnnbook.plot`), or, for callers that show
  their own (the slider explorers), a ``progress`` and an ``on_epoch`` hook and ``quiet``;
* a NaN/inf loss stops training at once, naming the epoch and batch;
* Ctrl-C returns the history so far (marked interrupted) and a usable model;
* optional bf16 autocast, channels_last, ``torch.compile`` and a whole step replayed as
  one CUDA graph (`cnnbook.graphed`) for GPUs;
* the quick profile caps the number of epochs and the compute per run (and says so); the
  profile is the active one unless ``profile=`` names another;
* under ``torchrun`` the same call trains on every rank at once (`cnnbook.distributed`):
  each rank takes its shard of the data, DistributedDataParallel averages the gradients,
  the metrics are summed over the ranks, and rank 0 alone prints and plots.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnbook import distributed
from cnnbook.config import Profile, device_name, resolve_profile, synchronize, try_gpu
from cnnbook.graphed import GraphedStep
from cnnbook.history import History
from cnnbook.plot import LivePlot
from cnnbook.progress import Progress


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite. ``.history`` holds the epochs finished before."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


def init_xavier(module: nn.Module) -> None:
    """Xavier-uniform weights for linear and conv layers (d2l's ``init_weights``); use with ``net.apply``."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(module.weight)


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The number of correct predictions in a batch, as a tensor on the batch's device."""
    return (y_hat.argmax(dim=1) == y).sum()


@torch.no_grad()
def evaluate_accuracy(net: nn.Module, data_iter, device: torch.device | str | None = None) -> float:
    """The fraction of examples in ``data_iter`` that ``net`` classifies correctly.

    Runs in eval mode on the model's device (or ``device``); counts stay on that device
    until the end, so the GPU never waits for the CPU. Under torchrun each rank counts its
    shard and the counts are summed over the ranks: every rank returns the whole set's figure.
    """
    if device is None:
        device = next(iter(net.parameters())).device
    device = torch.device(device)
    was_training = net.training
    net.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = torch.zeros((), dtype=torch.long, device=device)
    for X, y in _on_device(data_iter, device):
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += accuracy(net(X), y)
        total += y.numel()
    net.train(was_training)
    distributed.sum_over_ranks(correct, total)
    return correct.item() / max(total.item(), 1)


def _on_device(data_iter, device: torch.device):
    """A `DeviceLoader` moves its stored images once; any other iterable is used as is."""
    return data_iter.to(device) if hasattr(data_iter, "to") else data_iter


class _DivergenceGuard:
    """Notices the first NaN/inf loss. On a GPU it checks on the device and reads the
    verdict every ``check_every`` batches (one sync each), not after every batch. Under
    torchrun the verdict is the earliest bad batch of any rank, so all ranks stop together
    (a rank that stopped alone would leave the others waiting for its gradients)."""

    NONE = torch.iinfo(torch.long).max  # no bad batch yet

    def __init__(self, device: torch.device, check_every: int):
        self.check_every = check_every
        self.first_bad = torch.full((), self.NONE, dtype=torch.long, device=device)

    def watch(self, loss: torch.Tensor, batch: int) -> None:
        bad_now = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where((self.first_bad == self.NONE) & bad_now, batch, self.first_bad)

    def due(self, batch: int, last_batch: bool) -> bool:
        return last_batch or (batch + 1) % self.check_every == 0

    def bad_batch(self) -> int | None:
        value = int(distributed.min_over_ranks(self.first_bad.clone()).item())
        return None if value == self.NONE else value


def train_step(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step on the batch ``(X, y)``: chapter 3's five steps. Returns ``(y_hat, loss)``.

    amp: forward and loss in bfloat16 autocast (see `train`). Its cache of bf16 weights is
        off: a CNN's forward uses each weight once, so the cache saves nothing, and it would
        not survive recording the step as a CUDA graph (`cnnbook.graphed`).
    """
    fp32 = contextlib.nullcontext()
    autocast = torch.autocast(X.device.type, torch.bfloat16, cache_enabled=False) if amp else fp32
    with autocast:
        y_hat = model(X)  # 1. forward
        loss = loss_fn(y_hat, y)  # 2. loss (mean over the batch)
    optimizer.zero_grad(set_to_none=True)  # 3. clear old gradients
    loss.backward()  # 4. backward: compute new gradients
    optimizer.step()  # 5. update the parameters
    return y_hat, loss


def train(
    net: nn.Module,
    train_iter,
    test_iter,
    num_epochs: int,
    lr: float,
    device: torch.device | str | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    loss: nn.Module | None = None,
    init: str | None = "xavier",
    amp: bool = False,
    channels_last: bool | None = None,
    compile: bool | str = False,
    cuda_graph: bool = False,
    plot: bool = True,
    title: str | None = None,
    history: History | None = None,
    profile: Profile | str | None = None,
    progress: Callable[[float, str], None] | None = None,
    on_epoch: Callable[[History], None] | None = None,
    quiet: bool = False,
) -> History:
    """Train ``net`` and return its `History` (d2l's ``train_ch6`` call shape).

    optimizer: defaults to ``SGD(net.parameters(), lr)``; pass e.g. ``torch.optim.Adam(...)``.
    scheduler: a learning-rate scheduler of that optimizer, stepped once per batch, after the
        optimizer (e.g. ``OneCycleLR(optimizer, max_lr, epochs=num_epochs,
        steps_per_epoch=len(train_iter))``).
    loss: defaults to ``nn.CrossEntropyLoss()``.
    init: ``"xavier"`` re-initialises linear and conv weights first (as d2l does);
        ``None`` keeps the model's own initialisation (needed to resume training).
    amp: run forward and loss in bfloat16 autocast: about 2x on a GPU's tensor cores, and
        faster on a CPU with bfloat16 instructions (AVX-512 BF16 or AMX); on other CPUs
        bfloat16 is emulated and slower than float32.
    channels_last: store image batches and activations as NHWC, the layout the fastest conv
        kernels use, both cuDNN's and, on a CPU, oneDNN's (which would otherwise convert every
        NCHW activation to its own layout and back around each convolution). ``None`` (the
        default) means on for a CPU, where ``python -m cnnbook bench --layouts`` measured a training
        step 1.2x to 1.3x faster for LeNet, AlexNet and ResNet-18, and off elsewhere: on a GPU
        it pays with ``amp``, so pass ``True``.
    compile: ``torch.compile`` the model; a string picks the mode, e.g. ``"reduce-overhead"``
        (CUDA graphs: one launch per step instead of one per kernel). The first epoch pays
        the compilation: tens of seconds.
    cuda_graph: record the whole step (forward, loss, backward, update) once as a CUDA graph
        and replay it for every full-size batch: one launch per step instead of dozens, for
        small models whose GPU waits on Python (`cnnbook.graphed`). CUDA only, no
        ``scheduler``; costs three warm-up steps, undone before training starts.
    plot: draw the live plot (Jupyter) or print one line per epoch (terminal).
    history: a `History` to continue (e.g. from `load_checkpoint`): new epochs are appended
        and numbered after it. Use with ``init=None`` and the restored optimizer to resume.
    profile: the budget to train under, a `cnnbook.config.Profile` or its name (default:
        the active profile, see `cnnbook.use_profile`).
    progress: called after every batch as ``progress(fraction_done, text)``. It may raise to
        stop training (the slider explorers' Cancel does): the exception goes to the caller,
        and the `History` given as ``history`` keeps the finished epochs.
    on_epoch: called with the `History` after every epoch (the explorers draw their plot).
    quiet: print and draw nothing (notes, progress line, plot, summary): for callers that
        show their own.

    Under ``torchrun --nproc-per-node N`` every rank runs this same call: a CUDA ``device``
    becomes the rank's own GPU, each rank trains on its shard of every epoch (a `DeviceLoader`
    shards itself; a ``DataLoader`` needs a ``DistributedSampler``), and DistributedDataParallel
    averages the gradients. One step then learns from N x ``batch_size`` examples: the
    effective batch is N times larger, and ``lr`` is used as given, not scaled. The returned
    `History` holds the figures of the whole dataset on every rank; only rank 0 prints, plots
    and shows progress (the ``progress`` and ``on_epoch`` hooks run on every rank).

    Example::

        history = cnnbook.train(net, train_iter, test_iter, num_epochs=10, lr=0.9)
    """
    if init not in ("xavier", None):
        raise ValueError(f"init must be 'xavier' or None, got {init!r}.")
    device = distributed.start(torch.device(device) if device is not None else try_gpu())
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a CUDA device; this run is on {device}. Leave it off there.")
    if cuda_graph and scheduler is not None:
        raise ValueError(
            "cuda_graph=True records the learning rate into the graph, so a scheduler could not "
            "change it: use either a scheduler or cuda_graph, not both."
        )
    if cuda_graph and distributed.world_size() > 1:
        raise ValueError(
            "cuda_graph=True records one process's step; under torchrun the step also averages "
            "gradients with the other ranks, which the recording cannot replay. Leave it off there."
        )
    quiet = quiet or not distributed.is_main_process()  # under torchrun rank 0 speaks for all
    say = _say_nothing if quiet else print  # every line train prints goes through say
    profile = resolve_profile(profile)
    if profile.cap_epochs(num_epochs) < num_epochs:
        say(f"{profile.name} profile: training {profile.cap_epochs(num_epochs)} of {num_epochs} epochs.")
        num_epochs = profile.cap_epochs(num_epochs)

    if init == "xavier":
        net.apply(init_xavier)
    net.to(device)
    channels_last = uses_channels_last(channels_last, device)
    if channels_last:
        net.to(memory_format=torch.channels_last)  # 4-D weights only; others keep their layout
    model = net
    if compile:
        model = torch.compile(net, mode=compile if isinstance(compile, str) else None)
    # Under torchrun: DistributedDataParallel, which averages the gradients over the ranks in
    # backward. Evaluation runs `model` itself: it needs no gradients to average.
    trained_model = distributed.wrap(model, device)
    optimizer = optimizer or torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = loss or nn.CrossEntropyLoss()

    def step(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return train_step(trained_model, loss_fn, optimizer, X, y, amp)

    train_iter, test_iter = _on_device(train_iter, device), _on_device(test_iter, device)
    train_batches, test_batches = compute_cap(profile, net, train_iter, test_iter, num_epochs, device, say)
    train_batches = distributed.same_number_of_steps(train_batches, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # pick the fastest conv algorithm per shape, once

    history = history if history is not None else History()
    history.device, history.device_name, history.profile = str(device), device_name(device), profile.name
    history.interrupted = False
    first_epoch = len(history.epochs)
    live_plot = (
        LivePlot(first_epoch + num_epochs, title or f"training on {device}") if plot and not quiet else None
    )
    progress_line = Progress(num_epochs, train_batches, draw=not quiet, report=progress)
    # On a CPU reading the verdict costs nothing; on a GPU, or under torchrun, where it is a
    # collective operation, it is read every 50 batches.
    alone_on_cpu = device.type == "cpu" and distributed.world_size() == 1
    guard = _DivergenceGuard(device, check_every=1 if alone_on_cpu else 50)
    earlier_seconds, start = history.wall_time, time.perf_counter()  # a resumed run adds to it
    epoch = batch = 0
    graphed = None  # the recorded step, made from the first batch when cuda_graph is on
    try:
        for epoch in range(num_epochs):
            epoch_start = time.perf_counter()
            net.train()
            loss_sum = torch.zeros((), device=device)  # sums stay on the device: no sync per batch
            correct = torch.zeros((), dtype=torch.long, device=device)
            seen = 0
            for batch, (X, y) in enumerate(itertools.islice(train_iter, train_batches)):
                X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if channels_last and X.dim() == 4:  # image batches; other inputs have no channels
                    X = X.contiguous(memory_format=torch.channels_last)
                if cuda_graph and graphed is None:
                    graphed = GraphedStep(step, model, optimizer, X, y)
                if graphed is not None and graphed.fits(X):
                    y_hat, l = graphed.replay(X, y)  # the same step, replayed as one graph
                else:
                    y_hat, l = step(X, y)  # chapter 3's five steps (`train_step`)
                if scheduler is not None:
                    scheduler.step()  # a per-batch schedule: the next step's learning rate
                with torch.no_grad():
                    loss_sum += l.detach().float() * y.shape[0]
                    correct += accuracy(y_hat, y)
                seen += y.shape[0]
                guard.watch(l, batch)
                if guard.due(batch, batch == train_batches - 1):
                    bad_batch = guard.bad_batch()
                    if bad_batch is not None:
                        raise TrainingDivergedError(
                            _divergence_message(first_epoch + epoch, bad_batch, train_batches, lr), history
                        )
                progress_line.batch_done(epoch, batch)
            synchronize(device)  # so the clock measures finished work
            train_seconds = time.perf_counter() - epoch_start
            seen = torch.tensor(seen, device=device)
            distributed.sum_over_ranks(loss_sum, correct, seen)  # under torchrun: all ranks' examples
            seen = seen.item()
            test_acc = evaluate_accuracy(model, itertools.islice(test_iter, test_batches), device)
            history.record(
                loss_sum.item() / seen,
                correct.item() / seen,
                test_acc,
                time.perf_counter() - epoch_start,
                seen / train_seconds,
            )
            if live_plot:
                live_plot.update(history)
            if on_epoch is not None:
                on_epoch(history)
    except KeyboardInterrupt:
        history.interrupted = True
        say(
            f"Interrupted in epoch {first_epoch + epoch + 1}, batch {batch + 1}: returning the history "
            f"of the {len(history.epochs)} finished epochs; the model keeps its current weights."
        )
    finally:
        net.eval()
        seconds = time.perf_counter() - start  # this call's epochs only
        history.wall_time = earlier_seconds + seconds
        progress_line.close(f"{len(history.epochs) - first_epoch}/{num_epochs} epochs in {seconds:.1f} s")
    say(history.summary())
    return history


def uses_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """Whether `train` stores image batches as NHWC: ``channels_last`` if given, else only on a CPU."""
    return device.type == "cpu" if channels_last is None else channels_last


def compute_cap(
    profile: Profile,
    net: nn.Module,
    train_iter,
    test_iter,
    num_epochs: int,
    device: torch.device,
    say: Callable[[str], None] = print,
) -> tuple[int, int]:
    """How many training and test batches per epoch the profile's ``train_flops`` allows.

    The cost of a run is estimated from one test batch: forward FLOPs per example (counted by
    ``FlopCounterMode``), three times that per training example (forward and backward) and
    once per test example, for every epoch. A run over the budget trains on the first batches
    of each epoch (a new random sample each epoch when the loader shuffles) and is tested on
    the first test batches, in the same proportion; it says so in one line (``say``: print).
    """
    n_train, n_test = len(train_iter), len(test_iter)
    if profile.train_flops is None or n_test == 0:
        return n_train, n_test
    X, _ = next(iter(test_iter))
    X = X.to(device)
    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(X)
    net.train(was_training)
    per_example = counter.get_total_flops() / X.shape[0]
    examples = {
        name: getattr(it, "num_examples", None) or n * X.shape[0]
        for name, it, n in (("train", train_iter, n_train), ("test", test_iter, n_test))
    }
    cost = num_epochs * per_example * (3 * examples["train"] + examples["test"])
    if cost <= profile.train_flops:
        return n_train, n_test
    fraction = profile.train_flops / cost
    train_batches, test_batches = max(1, int(fraction * n_train)), max(1, math.ceil(fraction * n_test))
    say(
        f"{profile.name} profile: this run would cost {cost / 1e12:.1f} TFLOP, over the profile's "
        f"budget of {profile.train_flops / 1e12:g} TFLOP; training on {train_batches} of {n_train} "
        f"batches per epoch, testing on {test_batches} of {n_test} test batches."
    )
    return train_batches, test_batches


def _say_nothing(text: str) -> None:
    """What `train` prints with, when it is quiet."""


def _divergence_message(epoch: int, batch: int, batches: int, lr: float) -> str:
    return (
        f"The loss became NaN or infinite in epoch {epoch + 1}, batch {batch + 1} of {batches}; "
        f"training stopped. The learning rate {lr:g} is probably too high for this model: try "
        f"lr={lr / 10:g}. The model's weights are now unusable: rebuild or reload it."
    )
