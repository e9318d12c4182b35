"""The benchmark's two loops train identically, and `python -m cnnbook bench` runs and reports."""

import copy
import json
import os
from types import SimpleNamespace

import pytest
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader
from torchvision import transforms

import cnnbook
from cnnbook.__main__ import main
from cnnbook.data import ImageArrayDataset
from cnnbook.datafiles import Split, balanced_subset
from cnnbook.speed.bench import WORKLOADS
from cnnbook.speed.d2l_reference import SamePermutations, d2l_train_epoch
from cnnbook.speed.layouts import compare_layouts
from cnnbook.speed.operators import operator_times, profile_operators


def _small_fashion_mnist(fashion_mnist, n_train=2048, n_test=512):
    train, test = fashion_mnist
    i, j = balanced_subset(train.labels, n_train), balanced_subset(test.labels, n_test)
    return Split(train.images[i], train.labels[i], train.source), Split(
        test.images[j], test.labels[j], test.source
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_cnnbook_loop_matches_the_d2l_reference_loop_in_fp32(channels_last, fashion_mnist):
    """Same model, weights, data order and learning rate: the same losses and weights, in
    either memory layout (channels-last changes which kernels run, not what they compute)."""
    cnnbook.use_profile("full")
    train, test = _small_fashion_mnist(fashion_mnist)
    torch.manual_seed(0)
    reference_net = cnnbook.models.lenet()
    reference_net.apply(cnnbook.init_xavier)
    fast_net = copy.deepcopy(reference_net)

    to_tensor = transforms.ToTensor()
    reference_train = DataLoader(ImageArrayDataset(train, to_tensor), batch_size=256, shuffle=False)
    reference_test = DataLoader(ImageArrayDataset(test, to_tensor), batch_size=256, shuffle=False)
    reference_opt = torch.optim.SGD(reference_net.parameters(), lr=0.9)
    reference_losses = [
        d2l_train_epoch(reference_net, reference_train, reference_test, reference_opt, torch.device("cpu"),
                        Figure())[0]
        for _ in range(2)
    ]  # fmt: skip

    fast_train = cnnbook.DeviceLoader(torch.from_numpy(train.images), torch.from_numpy(train.labels), 256)
    fast_test = cnnbook.DeviceLoader(torch.from_numpy(test.images), torch.from_numpy(test.labels), 256)
    history = cnnbook.train(
        fast_net, fast_train, fast_test, 2, 0.9, "cpu", init=None, plot=False, channels_last=channels_last
    )

    torch.testing.assert_close(history.train_loss, reference_losses, rtol=1e-5, atol=1e-6)
    for fast_p, reference_p in zip(fast_net.parameters(), reference_net.parameters()):
        torch.testing.assert_close(fast_p, reference_p, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "channels_last", "amp"), [([], True, False), (["--no-channels-last", "--amp"], False, True)]
)
def test_bench_short_mode_runs_and_reports(tmp_path, capsys, options, channels_last, amp, data_in_env):
    out = tmp_path / "bench.json"
    cnnbook.use_profile("quick")  # bench trains under the full profile without switching to it
    assert main(["bench", "--short", "--workers", "2", "--json", str(out), *options]) == 0
    assert cnnbook.active_profile().name == "quick"
    printed = capsys.readouterr().out
    assert "d2l-style:" in printed and "cnnbook:" in printed and "speed-up:" in printed
    results = json.loads(out.read_text())
    assert results["model"] == "lenet" and results["train_examples"] == 4096
    assert (results["options"]["channels_last"], results["options"]["amp"]) == (channels_last, amp)
    assert results["d2l_style"]["examples_per_sec"] > 0 and results["cnnbook"]["examples_per_sec"] > 0
    assert (
        results["speedup"]
        == results["cnnbook"]["examples_per_sec"] / results["d2l_style"]["examples_per_sec"]
    )
    for loop in ("d2l_style", "cnnbook"):
        assert len(results[loop]["epoch_seconds"]) == 1 and results[loop]["epoch_seconds"][0] > 0
        assert (
            0 <= results[loop]["test_acc"][0] <= 1
            and results[loop]["train_loss"][0] == results[loop]["train_loss"][0]
        )


def test_the_resnet_workload_is_d2ls_resnet18():
    """d2l section 8.6 prints these shapes for a 1x96x96 input, and 11.2M parameters."""
    net = cnnbook.models.resnet18()
    X, shapes = torch.zeros(1, 1, 96, 96), []
    for layer in net:
        X = layer(X)
        shapes.append(tuple(X.shape))
    assert shapes[3:] == [(1, 64, 24, 24), (1, 64, 24, 24), (1, 128, 12, 12), (1, 256, 6, 6),
                          (1, 512, 3, 3), (1, 512, 1, 1), (1, 512), (1, 10)]  # fmt: skip
    assert sum(p.numel() for p in net.parameters()) == 11_178_378
    workload = WORKLOADS["resnet"]
    assert (workload.resize, workload.batch_size, workload.lr) == (96, 256, 0.05)


def test_the_reference_loop_visits_examples_in_the_cnnbook_loaders_order():
    labels = torch.arange(1000)
    loader = cnnbook.DeviceLoader(
        torch.zeros(1000, 1, 2, 2, dtype=torch.uint8), labels, 100, shuffle=True, seed=3
    )
    sampler = SamePermutations(1000, seed=3)
    for _ in range(2):  # a new, identical permutation each epoch
        assert torch.cat([y for _, y in loader]).tolist() == list(sampler)


def test_bench_layouts_times_both_layouts_and_reports_their_ratio(tmp_path, capsys):
    out = tmp_path / "layouts.json"
    assert main(["bench", "--layouts", "--short", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NCHW:" in printed and "channels-last:" in printed and "speed-up:" in printed
    results = json.loads(out.read_text())
    assert results["nchw_seconds_per_step"] > 0 and results["channels_last_seconds_per_step"] > 0
    assert results["speedup"] == results["nchw_seconds_per_step"] / results["channels_last_seconds_per_step"]


def test_compare_layouts_leaves_the_given_network_as_it_was():
    """Both layouts train copies: the caller's network keeps its weights and its layout."""
    net = cnnbook.models.lenet()
    before = [p.detach().clone() for p in net.parameters()]
    compare_layouts(net, (8, 1, 28, 28), lr=0.1, device=torch.device("cpu"), steps=1, rounds=1)
    for p, p0 in zip(net.parameters(), before):
        assert torch.equal(p, p0) and p.is_contiguous()


def test_bench_operators_lists_the_steps_operators_with_their_share_of_the_time(tmp_path, capsys):
    out = tmp_path / "operators.json"
    assert main(["bench", "--operators", "--short", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ms per training step" in printed and "aten::convolution_backward" in printed
    results = json.loads(out.read_text())
    assert results["seconds_per_step"] > 0 and results["channels_last"] is True and results["amp"] is False
    operators = {row["name"]: row for row in results["operators"]}
    # LeNet has two convolutions: each step runs each forward once and backward once.
    assert operators["aten::convolution_backward"]["calls_per_step"] == 2
    assert operators["aten::mkldnn_convolution"]["calls_per_step"] == 2
    times = [row["seconds_per_step"] for row in results["operators"]]
    assert times == sorted(times, reverse=True) and min(times) > 0
    assert sum(row["share"] for row in results["operators"]) == pytest.approx(1.0)


def test_bench_operators_refuses_options_that_hide_the_operators():
    with pytest.raises(SystemExit, match="Leave them off"):
        main(["bench", "--operators", "--short", "--device", "cpu", "--cuda-graph"])


def test_the_profiled_step_runs_in_bf16_with_amp_and_leaves_the_network_as_it_was():
    net = cnnbook.models.lenet()
    before = [p.detach().clone() for p in net.parameters()]
    casts = {}
    for amp in (False, True):
        result = profile_operators(net, (8, 1, 28, 28), lr=0.1, device=torch.device("cpu"), amp=amp, steps=1)
        casts[amp] = {row["name"]: row["calls_per_step"] for row in result["operators"]}.get(
            "aten::_to_copy", 0
        )
    # autocast casts each of LeNet's 10 weights and biases (and the input) to bfloat16 in every step
    assert casts[True] >= casts[False] + 10
    for p, p0 in zip(net.parameters(), before):
        assert torch.equal(p, p0)


def test_on_a_gpu_each_kernels_time_is_counted_once_in_the_operator_that_launched_it():
    """Kernel rows carry the same time as their operator's own device time: only operators count."""
    cpu, cuda = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA
    rows = [
        SimpleNamespace(key="aten::cudnn_convolution", device_type=cpu, count=4, self_cpu_time_total=50,
                        self_device_time_total=3000),
        SimpleNamespace(key="aten::relu_", device_type=cpu, count=4, self_cpu_time_total=40,
                        self_device_time_total=1000),
        SimpleNamespace(key="aten::conv2d", device_type=cpu, count=4, self_cpu_time_total=10,
                        self_device_time_total=0),
        SimpleNamespace(key="sm90_xmma_fprop_kernel", device_type=cuda, count=4, self_cpu_time_total=0,
                        self_device_time_total=3000),
    ]  # fmt: skip
    on_gpu = operator_times(rows, torch.device("cuda"), steps=2)
    assert [(r.name, r.seconds_per_step, r.calls_per_step, r.share) for r in on_gpu] == [
        ("aten::cudnn_convolution", 1.5e-3, 2, 0.75),
        ("aten::relu_", 0.5e-3, 2, 0.25),
    ]
    on_cpu = operator_times(rows, torch.device("cpu"), steps=2)
    assert [r.name for r in on_cpu] == ["aten::cudnn_convolution", "aten::relu_", "aten::conv2d"]


def test_more_workers_than_cores_is_said_once_not_warned_per_loader(capsys, recwarn, data_in_env):
    """d2l's 4 workers on a 2-core machine are kept on purpose: one note, no PyTorch warnings."""
    cores = len(os.sched_getaffinity(0))
    assert main(["bench", "--short", "--workers", str(cores + 1), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(f"uses {cores + 1} DataLoader workers on") == 1
    assert not [w for w in recwarn if "DataLoader will create" in str(w.message)]


def test_bench_nproc_reports_one_and_n_processes_and_their_scaling_efficiency(tmp_path, capsys, data_in_env):
    """A tiny run (two batches per process and epoch) under torchrun: the report's shape, not its speed."""
    out = tmp_path / "scaling.json"
    argv = ["bench", "--nproc", "2", "--train-examples", "1024", "--epochs", "2", "--device", "cpu"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("scaling: lenet on Fashion-MNIST, 1,024 training images, batch 256 per")
    assert [line.split(":")[0] for line in printed[1:]] == ["1 process", "2 processes", "scaling efficiency"]
    results = json.loads(out.read_text())
    one, two = results["one_process"]["examples_per_sec"], results["n_processes"]["examples_per_sec"]
    assert one > 0 and two > 0 and results["efficiency"] == two / (2 * one)
    assert (results["nproc"], results["train_examples"], results["epochs"]) == (2, 1024, 2)
    assert f"{results['efficiency']:.0%}" in printed[3]


def test_bench_nproc_refuses_zero_processes(capsys):
    with pytest.raises(SystemExit, match="--nproc must be at least 1, got 0"):
        main(["bench", "--nproc", "0", "--device", "cpu"])
