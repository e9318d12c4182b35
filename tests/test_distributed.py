"""cnnbook.distributed: `cnnbook.train` under torchrun, two real processes on this CPU (gloo).

Two ranks with batches of 32 each take the steps one process takes with batches of 64: the
ranks draw the same order, rank r takes positions r, r + 2, ... of it, and
DistributedDataParallel averages the two half-batches' gradients, which (the loss being a
mean) is the gradient of the combined batch. With plain SGD the weights after the same
steps are then equal up to rounding.

Starting two processes costs seconds of imports on a 2-core machine, so one torchrun job
runs the three scenes that need real processes, one after the other, and the tests below
read what each left behind.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import cnnbook
from cnnbook import distributed

BATCH_PER_RANK, N_TRAIN, N_TEST, EPOCHS, LR = 32, 384, 200, 2, 0.9

# A chapter-style script: nothing in it but running under torchrun makes it distributed.
SCRIPT = textwrap.dedent(
    """
    import contextlib, datetime, json, sys
    import torch
    import cnnbook
    from cnnbook import distributed

    folder, batch_size, epochs, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    # A short wait for peers, so that a broken test fails in seconds instead of hanging.
    distributed.start("cpu", timeout=datetime.timedelta(seconds=20))
    rank = distributed.rank()
    data = torch.load(f"{folder}/data.pt", weights_only=True)
    train_iter = cnnbook.DeviceLoader(data["train_images"], data["train_labels"], batch_size, shuffle=True)
    test_iter = cnnbook.DeviceLoader(data["test_images"], data["test_labels"], 50)


    def lenet():
        net = cnnbook.models.lenet()
        net.load_state_dict(torch.load(f"{folder}/initial.pt", weights_only=True))
        return net


    options = {"init": None, "profile": "full"}  # the initial weights as given, every batch
    quietly = {**options, "quiet": True}


    # 1. Train. Rank r writes what it printed to stdout-r.txt and its History to
    #    history-r.json; only rank 0's save_checkpoint writes a file.
    net = lenet()
    with open(f"{folder}/stdout-{rank}.txt", "w") as out, contextlib.redirect_stdout(out):
        history = cnnbook.train(net, train_iter, test_iter, epochs, lr, "cpu", **options, plot=False)
    cnnbook.save_checkpoint(f"{folder}/trained-by-rank{rank}.pt", net, history=history)
    with open(f"{folder}/history-{rank}.json", "w") as f:
        json.dump(history.to_dict(), f)


    # 2. Diverge on one rank: rank 1's loss turns NaN at its third step.
    class LossTurningNaN(torch.nn.CrossEntropyLoss):
        steps = 0

        def forward(self, y_hat, y):
            self.steps += 1
            return super().forward(y_hat, y) * (float("nan") if rank == 1 and self.steps >= 3 else 1.0)


    try:
        cnnbook.train(lenet(), train_iter, test_iter, 1, lr, "cpu", **quietly, loss=LossTurningNaN())
    except cnnbook.TrainingDivergedError as err:
        with open(f"{folder}/diverged-{rank}.txt", "w") as f:
            f.write(str(err))


    # 3. Fail on one rank: rank 1 raises after its first step; the job must end, not hang.
    def fail_on_rank_1(fraction, text):
        if rank == 1:
            raise RuntimeError("rank 1 fails on purpose after its first step")


    cnnbook.train(lenet(), train_iter, test_iter, 1, lr, "cpu", **quietly, progress=fail_on_rank_1)
    with open(f"{folder}/still-running-{rank}.txt", "w") as f:
        f.write("scene 3 trained to the end")
    """
)


@pytest.fixture(scope="module")
def job(tmp_path_factory, fashion_small):
    """SCRIPT's folder after ``torchrun --standalone --nproc-per-node 2`` ran it (one thread per
    process) on a real Fashion-MNIST subset from LeNet's initial weights, and its outcome."""
    folder = tmp_path_factory.mktemp("torchrun")
    s = fashion_small
    data = {
        "train_images": s.train_images[:N_TRAIN].clone(),
        "train_labels": s.train_labels[:N_TRAIN].clone(),
        "test_images": s.test_images[:N_TEST].clone(),
        "test_labels": s.test_labels[:N_TEST].clone(),
    }
    torch.save(data, folder / "data.pt")
    cnnbook.seed_everything(0)
    net = cnnbook.models.lenet()
    net.apply(cnnbook.init_xavier)
    torch.save(net.state_dict(), folder / "initial.pt")
    (folder / "script.py").write_text(SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    arguments = [str(folder), str(BATCH_PER_RANK), str(EPOCHS), str(LR)]
    result = subprocess.run(
        [*torchrun, str(folder / "script.py"), *arguments],
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=180,  # only a safety net: a hang fails the test instead of stalling the suite
    )
    return folder, result


def measured(history: cnnbook.History) -> tuple:
    """What a run measured (its times differ from rank to rank)."""
    return history.train_loss, history.train_acc, history.test_acc


def test_two_ranks_train_the_weights_one_process_trains_on_the_combined_batch(job):
    folder, result = job
    assert (folder / "history-1.json").exists(), result.stdout + result.stderr

    data = torch.load(folder / "data.pt", weights_only=True)
    net = cnnbook.models.lenet()
    net.load_state_dict(torch.load(folder / "initial.pt", weights_only=True))
    images, labels = data["train_images"], data["train_labels"]
    combined = cnnbook.DeviceLoader(images, labels, 2 * BATCH_PER_RANK, shuffle=True)
    test_iter = cnnbook.DeviceLoader(data["test_images"], data["test_labels"], 50)
    alone = cnnbook.train(net, combined, test_iter, EPOCHS, LR, "cpu", init=None, plot=False, profile="full")

    trained = cnnbook.models.lenet()
    checkpoint = cnnbook.load_checkpoint(folder / "trained-by-rank0.pt", trained)
    assert not (folder / "trained-by-rank1.pt").exists(), "only rank 0 writes checkpoints"
    # 12 SGD steps at lr 0.9 from the same weights. The two half-batch gradients are summed in
    # another order than the whole batch's, so float32 rounding differs: by about 1e-7 here,
    # while one process taking batches of 32 (steps of 32, not 64, examples) ends 0.5 away.
    for (name, p_ddp), p_alone in zip(trained.named_parameters(), net.parameters()):
        torch.testing.assert_close(p_ddp, p_alone, rtol=0, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    initial = torch.load(folder / "initial.pt", weights_only=True)
    assert max((p - initial[name]).abs().max().item() for name, p in trained.named_parameters()) > 0.01

    # Every rank reports the figures of the whole dataset, those of the single process.
    ddp = checkpoint["history"]
    for rank in (0, 1):
        history = cnnbook.History.from_dict(json.loads((folder / f"history-{rank}.json").read_text()))
        assert measured(history) == measured(ddp)
    torch.testing.assert_close(ddp.train_loss, alone.train_loss, rtol=1e-4, atol=0)
    one_example = 1 / N_TRAIN  # a prediction on the edge may flip from rounding
    torch.testing.assert_close(ddp.train_acc, alone.train_acc, rtol=0, atol=one_example)
    torch.testing.assert_close(ddp.test_acc, alone.test_acc, rtol=0, atol=1 / N_TEST)
    assert ddp.epochs == [1, 2]

    printed = [(folder / f"stdout-{rank}.txt").read_text() for rank in (0, 1)]
    assert "examples/sec on cpu" in printed[0] and printed[1] == "", "rank 0 alone prints"


def test_a_nan_loss_on_one_rank_stops_every_rank_at_that_batch(job):
    """Stopping alone would leave the other rank waiting for the gradients of the rank that
    stopped: the ranks agree on the earliest bad batch of any rank and stop together."""
    folder, result = job
    messages = [(folder / f"diverged-{rank}.txt").read_text() for rank in (0, 1)]
    assert messages[0] == messages[1]
    assert messages[0].startswith("The loss became NaN or infinite in epoch 1, batch 3 of 6;")


def test_a_rank_that_raises_ends_the_whole_job_with_its_error(job):
    folder, result = job
    assert result.returncode != 0
    assert "RuntimeError: rank 1 fails on purpose after its first step" in result.stdout + result.stderr
    assert not list(folder.glob("still-running-*")), "rank 0 stopped too, without finishing"


# ------------------------------------------------------------ shards, without starting processes


@pytest.fixture
def as_rank(monkeypatch):
    """``as_rank(r, world)``: this process believes it is rank r of world, as torchrun's variables say."""

    def become(rank: int, world: int):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))

    return become


def test_one_process_is_rank_0_of_1():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
    assert distributed.shard(5, pad=True).tolist() == [0, 1, 2, 3, 4]
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net, torch.device("cpu")) is net
    t = torch.tensor(3.0)
    distributed.sum_over_ranks(t)
    assert t.item() == 3.0 and distributed.same_number_of_steps(7, torch.device("cpu")) == 7


def test_padded_shards_are_equal_and_exact_shards_use_every_example_once(as_rank):
    padded, exact = [], []
    for rank in range(3):
        as_rank(rank, 3)
        padded.append(distributed.shard(10, pad=True).tolist())
        exact.append(distributed.shard(10, pad=False).tolist())
    assert padded == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]  # wraps around, as DistributedSampler
    assert exact == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_the_ranks_batches_together_are_the_batch_of_one_process_with_a_larger_batch(fashion_small, as_rank):
    images, labels = fashion_small.train_images[:100], torch.arange(100)  # labels name the examples
    alone = [y.tolist() for _, y in cnnbook.DeviceLoader(images, labels, 20, shuffle=True, seed=3)]
    per_rank = []
    for rank in (0, 1):
        as_rank(rank, 2)
        loader = cnnbook.DeviceLoader(images, labels, 10, shuffle=True, seed=3)
        per_rank.append([y.tolist() for _, y in loader])
        assert len(loader) == len(per_rank[-1]) == 5 and loader.num_examples == 100
    for k, batch in enumerate(alone):
        assert sorted(per_rank[0][k] + per_rank[1][k]) == sorted(batch)


def test_an_evaluation_loader_gives_each_example_to_one_rank(fashion_small, as_rank):
    images, labels = fashion_small.test_images[:11], torch.arange(11)
    seen = []
    for rank in (0, 1):
        as_rank(rank, 2)
        seen += [i for _, y in cnnbook.DeviceLoader(images, labels, 4) for i in y.tolist()]
    assert sorted(seen) == list(range(11))
