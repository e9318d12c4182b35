"""``python -m cnnbook bench --operators``: where one training step's time goes, operator by operator.

A speed-up starts with knowing what to speed up. This runs a few training steps of a
network under ``torch.profiler`` and adds up, for each PyTorch operator (``aten::...``),
the time spent in the operator itself, not in the operators it calls. On a CPU that is
the CPU's time; on a GPU it is the time of the GPU kernels the operator launched, which
is the time that counts once the GPU is kept busy. The step is the one `cnnbook.train`
takes (`cnnbook.train.train_step`): forward and loss (in bf16 autocast with ``amp``),
zeroing the gradients, backward, SGD update.

Example::

    python -m cnnbook bench --operators --model alexnet --device cpu
    python -m cnnbook bench --operators --model alexnet --device cuda --amp --channels-last
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from cnnbook.speed.layouts import copy_in_layout, random_batch, seconds_per_step


@dataclass(frozen=True)
class OperatorTime:
    """One operator's own time in an average training step."""

    name: str
    seconds_per_step: float
    calls_per_step: float
    share: float  # of all operators' own time


def profile_operators(
    net: nn.Module,
    input_shape: tuple[int, ...],
    lr: float,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
    steps: int = 3,
) -> dict:
    """Seconds per training step of ``net``, and its operators' own time per step, largest first.

    ``input_shape`` is one batch's ``(N, C, H, W)``; the batch is random, with labels of 10
    classes. A copy of ``net`` trains, so the caller's network is left as it was. ``steps``
    untimed steps come first (one-off costs: allocations, kernel choices; on this book's
    2-core CPU LeNet's first five steps took twice as long as the next ones), then ``steps``
    steps are timed without the profiler (which slows each operator a little) and ``steps``
    more run under it. Returns ``{"seconds_per_step", "profiled_steps", "operators"}``, the
    operators as dicts of `OperatorTime`'s fields.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as in cnnbook.train: the fastest conv kernels per shape
    X, y = random_batch(input_shape, device)
    net, X = copy_in_layout(net, X, channels_last)
    seconds_per_step(net, X, y, lr, steps, amp=amp)
    seconds = seconds_per_step(net, X, y, lr, steps, amp=amp)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        seconds_per_step(net, X, y, lr, steps, amp=amp)
    return {
        "seconds_per_step": seconds,
        "profiled_steps": steps,
        "operators": [asdict(row) for row in operator_times(profiler.key_averages(), device, steps)],
    }


def operator_times(averages, device: torch.device, steps: int) -> list[OperatorTime]:
    """Each operator's own time per step on ``device``, from a profiler's ``key_averages()``.

    The rows of GPU kernels are left out: each kernel's time is already in the row of the
    operator that launched it (its own device time), and counting both would count it twice.
    """
    operators = [row for row in averages if row.device_type == DeviceType.CPU]
    own_time = [  # microseconds over all profiled steps
        row.self_device_time_total if device.type == "cuda" else row.self_cpu_time_total for row in operators
    ]
    total = sum(own_time) or 1
    rows = [
        OperatorTime(row.key, micros / 1e6 / steps, row.count / steps, micros / total)
        for row, micros in zip(operators, own_time)
        if micros > 0
    ]
    return sorted(rows, key=lambda row: row.seconds_per_step, reverse=True)


def operator_table(operators: list[dict], top: int = 12) -> str:
    """The ``top`` operators as a text table, and what share of the time they cover."""
    lines = [f"{'share':>7} {'ms/step':>9} {'calls/step':>11}  operator"]
    for row in operators[:top]:
        milliseconds = row["seconds_per_step"] * 1e3
        lines.append(f"{row['share']:7.1%} {milliseconds:9.2f} {row['calls_per_step']:11g}  {row['name']}")
    covered = sum(row["share"] for row in operators[:top])
    lines.append(
        f"(the top {min(top, len(operators))} of {len(operators)} operators: {covered:.1%} of the time)"
    )
    return "\n".join(lines)
