"""Training on several processes at once: which rank am I, and the few collective operations `train` needs.

``torchrun --nproc-per-node N script.py`` starts N copies of the same script, one per GPU (or
per group of CPU cores). Each copy is a *rank*, numbered 0 to N-1; torchrun tells it which
through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, and where rank 0
listens: ``MASTER_ADDR``, ``MASTER_PORT``). Data-parallel training then needs four things,
and `cnnbook.train` does them with the functions below:

1. every rank trains on its own shard of each epoch (`shard`, used by `DeviceLoader`);
2. after every backward pass the ranks average their gradients, so every rank takes the same
   step and the copies of the model stay equal (`wrap`: PyTorch's DistributedDataParallel,
   which sends gradients while the backward pass is still computing the others);
3. the epoch's loss and counts are summed over the ranks, so every rank reports the figures
   of the whole dataset (`sum_over_ranks`);
4. one rank, rank 0, prints, plots and saves (`is_main_process`).

In one process (no torchrun) every function here is a no-op that costs nothing: the process
is rank 0 of 1.
"""

from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

# How long a rank waits for the others in one collective operation before the job fails.
# Without a limit a rank whose peer died or went down another code path would wait forever;
# ten minutes (NCCL's own default) leaves room for a slow first epoch (torch.compile).
DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)


def _group_is_up() -> bool:
    return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (its environment names a rank)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """How many processes train together: the process group's size, torchrun's ``WORLD_SIZE``, or 1.

    torchrun's variable counts even before the group is started, so a loader built first
    already knows its shard (and ``len(loader)`` its number of steps).
    """
    if _group_is_up():
        return dist.get_world_size()
    return int(os.environ["WORLD_SIZE"]) if launched_by_torchrun() else 1


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1`` (0 in a single process)."""
    if _group_is_up():
        return dist.get_rank()
    return int(os.environ["RANK"]) if launched_by_torchrun() else 0


def is_main_process() -> bool:
    """Whether this process is rank 0, the one that prints, plots and saves."""
    return rank() == 0


def start(device: torch.device | str = "cpu", timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> torch.device:
    """Join the other ranks (once) and return the device this rank computes on.

    Under torchrun, the first call starts the process group: the ``gloo`` backend for a CPU,
    ``nccl`` for CUDA GPUs. A CUDA ``device`` becomes this rank's own GPU,
    ``cuda:LOCAL_RANK``, so the script's ``try_gpu()`` needs no change. Outside torchrun, or
    when the group is already up, it only returns ``device``.

    timeout: how long a collective operation waits for the other ranks before it fails, ending
        the job instead of hanging when a rank died (see `DEFAULT_TIMEOUT`).
    """
    device = torch.device(device)
    if world_size() == 1:
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank() % torch.cuda.device_count()))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)  # NCCL talks to the current device
    if not _group_is_up():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timeout, device_id=device if device.type == "cuda" else None)
        atexit.register(_stop)  # a group left open makes NCCL complain at exit
    return device


def _stop() -> None:
    if _group_is_up():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when several ranks train, else ``model`` itself.

    Wrapping copies rank 0's weights to every rank, so all start from the same model. The
    wrapper's backward averages the gradients over the ranks: with the loss a mean over each
    rank's batch, that is the gradient of the mean over the combined batch of all ranks.
    """
    if world_size() == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard_size(n: int, pad: bool) -> int:
    """How many of an epoch's ``n`` examples this rank takes (see `shard`)."""
    world = world_size()
    return -(-n // world) if pad else len(range(rank(), n, world))


def shard(n: int, pad: bool) -> torch.Tensor:
    """The positions in an epoch's order of ``n`` examples that this rank takes: ``rank, rank + world, ...``.

    Every rank draws the same order (the same seed), so the shards are disjoint and together
    cover the epoch; batch k of all ranks together is batch k of one process whose batches
    are ``world`` times larger.

    pad: make every shard the same size by wrapping around to the start of the order (as
        PyTorch's DistributedSampler does), for training, where every rank must take the same
        number of steps. Without it each example is used exactly once, for evaluation, where
        the counts must be exact.
    """
    world = world_size()
    return torch.arange(rank(), world * shard_size(n, pad=True) if pad else n, world) % max(n, 1)


def sum_over_ranks(*tensors: torch.Tensor) -> None:
    """Replace each tensor, on every rank, by its sum over all ranks (in place; nothing in one process)."""
    if world_size() == 1:
        return
    start(tensors[0].device)
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def min_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` replaced, on every rank, by its smallest value over all ranks (in place); returns it."""
    if world_size() > 1:
        start(tensor.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def same_number_of_steps(batches: int, device: torch.device) -> int:
    """The fewest ``batches`` any rank has: every rank must take the same number of steps, for a
    rank that took one more would wait forever for the others to average its gradients."""
    if world_size() == 1:
        return batches
    return int(min_over_ranks(torch.tensor(batches, device=device)).item())
