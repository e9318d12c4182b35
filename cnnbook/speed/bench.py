"""``python -m cnnbook bench``: cnnbook's training loop against a faithful d2l-style loop.

Both train the same model from the same initial weights on the same data in the same order,
in one process, one epoch each in turn (interleaved, so a machine that slows down or warms
up affects both alike). The reference is *Dive into Deep Learning*'s ``train_ch6``: a torchvision-style
``Dataset`` decoding one image at a time, a ``DataLoader`` with 4 worker processes, a copy
to the device per batch, two host synchronisations per batch (``float(loss)`` and the
accuracy count), its animated plot redrawn five times per epoch, and an evaluation that
synchronises after every batch. Times are whole epochs, evaluation included.

Example::

    python -m cnnbook bench --model lenet --epochs 3
    python -m cnnbook bench --model lenet --amp --compile   # fastest on a CPU (channels-last is its default)
    python -m cnnbook bench --model resnet --device cuda --amp --channels-last
    python -m cnnbook bench --short --json bench.json      # what CI runs
    python -m cnnbook bench --layouts --model resnet         # one step in NCHW against channels-last
    python -m cnnbook bench --operators --model alexnet      # where one step's time goes, by operator
    python -m cnnbook bench --nproc 2                        # cnnbook's loop in 1 and 2 processes (torchrun)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnbook import distributed, models
from cnnbook.config import device_name, seed_everything, synchronize, try_gpu
from cnnbook.datafiles import read_fashion_mnist
from cnnbook.loader import DeviceLoader
from cnnbook.speed.d2l_reference import d2l_loaders, d2l_train_epoch
from cnnbook.speed.layouts import compare_layouts
from cnnbook.speed.operators import operator_table, profile_operators
from cnnbook.train import init_xavier, train, uses_channels_last


@dataclass(frozen=True)
class Workload:
    """What a benchmark trains: a model on Fashion-MNIST at some size, with d2l's settings."""

    build: callable
    resize: int | None
    batch_size: int
    lr: float


WORKLOADS = {
    "lenet": Workload(models.lenet, None, 256, 0.9),
    "alexnet": Workload(models.alexnet, 224, 128, 0.01),
    "resnet": Workload(models.resnet18, 96, 256, 0.05),  # d2l section 8.6's settings
}


@dataclass
class LoopResult:
    """Per-epoch measurements of one training loop."""

    name: str
    epoch_seconds: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)

    def examples_per_sec(self, num_examples: int) -> float:
        """Training examples per second of whole-epoch wall time (evaluation included)."""
        return num_examples * len(self.epoch_seconds) / sum(self.epoch_seconds)


def add_arguments(parser) -> None:
    """The options of ``python -m cnnbook bench``."""
    parser.add_argument("--model", choices=sorted(WORKLOADS), default="lenet")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best there is)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per loop (default 3)")
    parser.add_argument(
        "--train-examples",
        type=int,
        default=None,
        help="train on a class-balanced subset of this size (default: all)",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="a quick check that it works: 4,096 training images, 1 epoch each",
    )
    parser.add_argument(
        "--amp",
        action="store_true",
        help="cnnbook side: bf16 autocast (a GPU, or a CPU with AVX-512 BF16 or AMX)",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cnnbook side: NHWC memory layout (default: on for a CPU, off for a GPU)",
    )
    parser.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=False,
        metavar="MODE",
        help="cnnbook side: torch.compile the model (optionally a mode, e.g. reduce-overhead)",
    )
    parser.add_argument(
        "--cuda-graph", action="store_true", help="cnnbook side: replay each training step as one CUDA graph"
    )
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="instead of the two loops: time --model's training step in NCHW and in channels-last",
    )
    parser.add_argument(
        "--operators",
        action="store_true",
        help="instead of the two loops: where --model's training step spends its time, operator by "
        "operator (torch.profiler; honours --amp and --channels-last)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="instead of the two loops: cnnbook's loop in one process and in N processes under torchrun "
        "(one per GPU, or each with its share of the CPU cores), and the scaling efficiency",
    )
    parser.add_argument("--scaling-out", default=None, help=argparse.SUPPRESS)  # a --nproc worker's result
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the d2l loop (d2l: 4)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")


def run(args) -> dict:
    """Run the benchmark described by parsed ``args``; returns the results as a dict."""
    workload = WORKLOADS[args.model]
    device = torch.device(args.device) if args.device else try_gpu()
    if args.layouts:
        return run_layouts(args, workload, device)
    if args.operators:
        return run_operators(args, workload, device)
    if args.scaling_out:
        return run_scaling_worker(args, workload, device)
    if args.nproc is not None:
        return run_scaling(args, workload, device)
    epochs, n_train = _epochs_and_train_examples(args)
    train_split, test_split = read_fashion_mnist()
    train_split = train_split.subset(n_train)
    test_split = test_split.subset(1024 if args.short else None)

    seed_everything(0)
    reference_net = workload.build()
    reference_net.apply(init_xavier)
    cnnbook_net = copy.deepcopy(reference_net)  # the same initial weights on both sides
    reference_net.to(device)
    reference_opt = torch.optim.SGD(reference_net.parameters(), lr=workload.lr)
    cnnbook_opt = torch.optim.SGD(cnnbook_net.parameters(), lr=workload.lr)
    order_seed = 0  # both loops draw the same permutations from it
    d2l_train, d2l_test = d2l_loaders(
        train_split, test_split, workload.batch_size, workload.resize, args.workers, seed=order_seed
    )
    fast_train = DeviceLoader(
        torch.from_numpy(train_split.images),
        torch.from_numpy(train_split.labels),
        workload.batch_size,
        shuffle=True,
        seed=order_seed,
        resize=workload.resize,
    )
    fast_test = DeviceLoader(
        torch.from_numpy(test_split.images),
        torch.from_numpy(test_split.labels),
        workload.batch_size,
        resize=workload.resize,
    )
    figure = Figure(figsize=(3.5, 2.5))
    figure.add_subplot().plot(np.arange(10), np.arange(10))

    reference, fast = LoopResult("d2l-style"), LoopResult("cnnbook")
    history = None
    print(
        f"bench: {args.model} on Fashion-MNIST, {len(train_split.labels):,} training and "
        f"{len(test_split.labels):,} test images, batch {workload.batch_size}, {epochs} epoch(s) per loop, "
        f"on {device} ({device_name(device)})",
        flush=True,
    )
    for epoch in range(epochs):
        synchronize(device)
        start = time.perf_counter()
        loss, acc = d2l_train_epoch(reference_net, d2l_train, d2l_test, reference_opt, device, figure)
        synchronize(device)
        reference.epoch_seconds.append(time.perf_counter() - start)
        reference.train_loss.append(loss)
        reference.test_acc.append(acc)

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            history = train(
                cnnbook_net,
                fast_train,
                fast_test,
                1,
                workload.lr,
                device,
                optimizer=cnnbook_opt,
                init=None,
                plot=False,
                history=history,
                profile="full",  # the benchmark picks its own data sizes and epochs
                amp=args.amp,
                channels_last=args.channels_last,
                compile=args.compile,
                cuda_graph=args.cuda_graph,
            )
        fast.epoch_seconds.append(history.epoch_time[-1])
        fast.train_loss.append(history.train_loss[-1])
        fast.test_acc.append(history.test_acc[-1])
        print(
            f"epoch {epoch + 1}: d2l-style {reference.epoch_seconds[-1]:6.2f} s (test acc {acc:.3f}) | "
            f"cnnbook {fast.epoch_seconds[-1]:6.2f} s (test acc {fast.test_acc[-1]:.3f})",
            flush=True,
        )

    n = len(train_split.labels)
    # The first cnnbook epoch may include one-off costs (compilation, cuDNN autotuning): report
    # the steady state (epochs after the first) when there is more than one epoch.
    steady = slice(1, None) if epochs > 1 else slice(None)
    ref_rate = n * len(reference.epoch_seconds[steady]) / sum(reference.epoch_seconds[steady])
    fast_rate = n * len(fast.epoch_seconds[steady]) / sum(fast.epoch_seconds[steady])
    results = {
        "model": args.model,
        "device": str(device),
        "device_name": device_name(device),
        "train_examples": n,
        "test_examples": len(test_split.labels),
        "batch_size": workload.batch_size,
        "epochs": epochs,
        "options": {
            "amp": args.amp,
            "channels_last": uses_channels_last(args.channels_last, device),
            "compile": args.compile,
            "cuda_graph": args.cuda_graph,
            "d2l_workers": args.workers,
        },
        "d2l_style": asdict(reference) | {"examples_per_sec": ref_rate},
        "cnnbook": asdict(fast) | {"examples_per_sec": fast_rate},
        "speedup": fast_rate / ref_rate,
    }
    return _report(
        results,
        f"d2l-style: {ref_rate:9,.0f} examples/s, epoch {n / ref_rate:6.2f} s, final test acc "
        f"{reference.test_acc[-1]:.3f}\n"
        f"cnnbook:   {fast_rate:9,.0f} examples/s, epoch {n / fast_rate:6.2f} s, final test acc "
        f"{fast.test_acc[-1]:.3f}\n"
        f"speed-up:  {results['speedup']:.2f}x (whole epochs, evaluation included"
        f"{', epochs after the first' if epochs > 1 else ''})",
        args.json,
    )


def _initialised_net_and_batch_shape(workload: Workload) -> tuple[nn.Module, tuple[int, int, int, int]]:
    """The workload's model, Xavier-initialised from seed 0, and the shape of one of its batches."""
    size = workload.resize or 28
    seed_everything(0)
    net = workload.build()
    net.apply(init_xavier)
    return net, (workload.batch_size, 1, size, size)


def run_layouts(args, workload: Workload, device: torch.device) -> dict:
    """``--layouts``: one training step of the workload's model in NCHW and in channels-last."""
    net, shape = _initialised_net_and_batch_shape(workload)
    steps, rounds = (1, 1) if args.short else (5, 3)
    print(f"layouts: {args.model}, batch {shape}, on {device} ({device_name(device)})", flush=True)
    results = {"model": args.model, "device": str(device), "device_name": device_name(device)}
    results |= compare_layouts(net, shape, workload.lr, device, steps=steps, rounds=rounds)
    return _report(
        results,
        f"NCHW:          {results['nchw_seconds_per_step'] * 1e3:9.1f} ms per training step\n"
        f"channels-last: {results['channels_last_seconds_per_step'] * 1e3:9.1f} ms per training step\n"
        f"speed-up:      {results['speedup']:9.2f}x (best of {rounds} round(s) of {steps} step(s) each)",
        args.json,
    )


def run_operators(args, workload: Workload, device: torch.device) -> dict:
    """``--operators``: the operators that take the time of one training step of the workload's model."""
    if args.compile or args.cuda_graph:
        raise SystemExit(
            "bench --operators profiles the step operator by operator, as the eager loop runs it; "
            "--compile and --cuda-graph fuse or replay the operators out of its sight. Leave them off."
        )
    net, shape = _initialised_net_and_batch_shape(workload)
    channels_last = uses_channels_last(args.channels_last, device)
    steps = 1 if args.short else 5
    options = ", ".join(
        ["channels-last" if channels_last else "NCHW"] + (["bf16 autocast"] if args.amp else [])
    )
    where = f"on {device} ({device_name(device)})"
    print(f"operators: {args.model} training step, batch {shape}, {options}, {where}")
    results = {"model": args.model, "device": str(device), "device_name": device_name(device)}
    results |= {"batch_shape": list(shape), "amp": args.amp, "channels_last": channels_last}
    results |= profile_operators(net, shape, workload.lr, device, args.amp, channels_last, steps)
    clock = "GPU kernel time" if device.type == "cuda" else "CPU time"
    return _report(
        results,
        f"{results['seconds_per_step'] * 1e3:.1f} ms per training step (without the profiler); "
        f"each operator's own {clock} over {steps} profiled step(s):\n{operator_table(results['operators'])}",
        args.json,
    )


def run_scaling(args, workload: Workload, device: torch.device) -> dict:
    """``--nproc N``: examples/s of cnnbook's loop in one process and in N, and the scaling efficiency.

    Each process trains with the workload's batch size, so N processes take steps of N times
    as many examples (weak scaling, as data-parallel training is used). The efficiency is the
    N-process throughput over N times the one-process throughput: 100% when adding processes
    costs nothing. On a CPU every process, the lone one included, gets cores / N threads: the
    N processes share the machine as N devices would, and the figure measures the loop and its
    communication, not how threads share cores.
    """
    n = args.nproc
    if n < 1:
        raise SystemExit(f"--nproc must be at least 1, got {n}.")
    if device.type == "cuda" and n > torch.cuda.device_count():
        raise SystemExit(
            f"--nproc {n} needs {n} GPUs (one per process); this machine has {torch.cuda.device_count()}."
        )
    threads = max(1, (os.cpu_count() or 1) // n) if device.type == "cpu" else torch.get_num_threads()
    epochs, n_train = _epochs_and_train_examples(args)
    print(
        f"scaling: {args.model} on Fashion-MNIST, {n_train:,} training images, batch {workload.batch_size} "
        f"per process, {epochs} epoch(s), on {device} ({device_name(device)}), "
        f"{threads} thread(s) per process",
        flush=True,
    )
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        one = _scaling_throughput(args, workload, device)
    finally:
        torch.set_num_threads(threads_before)
    print(f"1 process:    {one:9,.0f} examples/s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "scaling.json")
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
        worker = ["-m", "cnnbook", "bench", *_scaling_options(args), "--scaling-out", out]
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        done = subprocess.run([*launch, *worker], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"bench --nproc {n}: the {n} processes under torchrun failed (exit {done.returncode}); "
                f"their output:\n{done.stdout}{done.stderr}"
            )
        with open(out) as f:
            many = json.load(f)["examples_per_sec"]
    results = {
        "model": args.model,
        "device": str(device),
        "device_name": device_name(device),
        "train_examples": n_train,
        "batch_size_per_process": workload.batch_size,
        "epochs": epochs,
        "nproc": n,
        "threads_per_process": threads,
        "one_process": {"examples_per_sec": one},
        "n_processes": {"examples_per_sec": many},
        "efficiency": many / (n * one),
    }
    return _report(
        results,
        f"{n} processes: {many:9,.0f} examples/s\n"
        f"scaling efficiency: {results['efficiency']:.0%} ({n}-process throughput / ({n} x 1-process "
        f"throughput), training phase of {'the epochs after the first' if epochs > 1 else 'the epoch'})",
        args.json,
    )


def run_scaling_worker(args, workload: Workload, device: torch.device) -> dict:
    """One of the ``--nproc`` processes (under torchrun): train, and rank 0 writes the throughput."""
    rate = _scaling_throughput(args, workload, device)
    if distributed.is_main_process():
        with open(args.scaling_out, "w") as f:
            json.dump({"examples_per_sec": rate}, f)
    return {"examples_per_sec": rate}


def _epochs_and_train_examples(args) -> tuple[int, int]:
    """How many epochs a run trains, on how many training images (``--short``: 1 on 4,096)."""
    epochs = 1 if args.short else args.epochs
    n_train = 4096 if args.short else (args.train_examples or 60_000)
    return epochs, n_train


def _scaling_options(args) -> list[str]:
    """The options a ``--nproc`` run passes on to its processes."""
    options = ["--model", args.model, "--epochs", str(args.epochs)]
    options += ["--device", args.device] if args.device else []
    options += ["--train-examples", str(args.train_examples)] if args.train_examples else []
    options += ["--short"] if args.short else []
    options += ["--amp"] if args.amp else []
    if args.channels_last is not None:
        options += ["--channels-last" if args.channels_last else "--no-channels-last"]
    return options


def _scaling_throughput(args, workload: Workload, device: torch.device) -> float:
    """Training examples per second of `train` on the workload, over all processes together.

    The rate of the training phase (`History.examples_per_sec`), of the epochs after the
    first when there are several: the first pays one-off costs (allocations, warm-up).
    """
    epochs, n_train = _epochs_and_train_examples(args)
    train_split, test_split = read_fashion_mnist()
    train_split, test_split = train_split.subset(n_train), test_split.subset(512)
    seed_everything(0)
    train_iter = DeviceLoader(
        torch.from_numpy(train_split.images),
        torch.from_numpy(train_split.labels),
        workload.batch_size,
        shuffle=True,
        resize=workload.resize,
    )
    test_iter = DeviceLoader(
        torch.from_numpy(test_split.images), torch.from_numpy(test_split.labels), 512, resize=workload.resize
    )
    history = train(
        workload.build(),
        train_iter,
        test_iter,
        epochs,
        workload.lr,
        device,
        plot=False,
        quiet=True,
        profile="full",
        amp=args.amp,
        channels_last=args.channels_last,
    )
    rates = history.examples_per_sec[1:] if epochs > 1 else history.examples_per_sec
    return len(rates) / sum(1 / r for r in rates)  # total examples / total seconds


def _report(results: dict, summary: str, json_path: str | None) -> dict:
    """Print the summary, write the results to ``json_path`` if given, and return them."""
    print(summary)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
    return results


def main(args) -> int:
    """Entry point used by ``python -m cnnbook bench``."""
    cores = os.cpu_count() or 1
    with warnings.catch_warnings():
        two_loops = not (args.layouts or args.operators or args.nproc is not None or args.scaling_out)
        if args.workers > cores and two_loops:  # d2l's choice, kept on purpose: say so once, not per loader
            print(f"note: the d2l-style loop uses {args.workers} DataLoader workers on {cores} cores, as d2l")
            warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        run(args)
    return 0
