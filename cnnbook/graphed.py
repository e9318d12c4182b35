"""One training step as one CUDA graph: record its kernels once, replay them every batch.

A LeNet training step on a GPU is a few dozen tiny kernels (forward, loss, backward, the
update of each parameter). Launching each from Python takes longer than the GPU takes to
run it, so the GPU spends most of the step waiting for the CPU. A CUDA graph records the
step's kernel launches once, with the memory addresses of every tensor they touch, and
replays them all with a single call.

The price of replaying instead of running:

* the inputs must live at the recorded addresses: each batch is copied into fixed
  ("static") tensors, and only batches of the recorded shape can be replayed (an epoch's
  short last batch runs the ordinary way);
* what Python decided while recording is frozen: the learning rate, the batch size, which
  branch an ``if`` took. A learning-rate schedule therefore cannot be used with it;
* recording needs a few warm-up steps first (cuDNN and cuBLAS pick their kernels, the
  optimizer creates its momentum buffers). They would train the model on the first batch,
  so the weights and the optimizer's state are put back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn


@contextlib.contextmanager
def state_restored(model: nn.Module, optimizer: torch.optim.Optimizer):
    """Undo, on exit, every change the steps inside make to ``model`` and ``optimizer``.

    Weights and buffers (batch-norm statistics) get their old values back, in place, so
    every tensor keeps its address. Optimizer state created inside (momentum buffers) is
    set to zero, which is how SGD (without dampening) and Adam start, and state that
    existed before gets its old values back.
    """
    saved_model = {name: t.detach().clone() for name, t in model.state_dict().items()}
    saved_optimizer = {
        p: {k: v.detach().clone() for k, v in state.items() if torch.is_tensor(v)}
        for p, state in optimizer.state.items()
    }
    try:
        yield
    finally:
        with torch.no_grad():
            current = model.state_dict()
            for name, value in saved_model.items():
                current[name].copy_(value)
            for p, state in optimizer.state.items():
                before = saved_optimizer.get(p, {})
                for k, v in state.items():
                    if not torch.is_tensor(v):
                        continue
                    if k in before:
                        v.copy_(before[k])
                    else:
                        v.zero_()


class GraphedStep:
    """A training step (`cnnbook.train.train_step`) recorded as a CUDA graph.

    step: ``step(X, y)`` does one whole step (forward, loss, backward, update) of ``model``
        with ``optimizer`` and returns ``(y_hat, loss)``; it is run a few times to warm up
        (then undone) and once more to record.

    Built from the first batch; ``replay(X, y)`` then does one whole step on a batch of the
    same shape and returns ``(y_hat, loss)``: tensors the next replay overwrites, so use
    them before it.
    """

    def __init__(
        self,
        step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        X: torch.Tensor,
        y: torch.Tensor,
        warm_up_steps: int = 3,
    ):
        self.static_X, self.static_y = X.clone(), y.clone()  # clone keeps channels_last
        rng = torch.cuda.get_rng_state(X.device)
        with state_restored(model, optimizer):
            side = torch.cuda.Stream(X.device)  # warm up off the default stream, as recording wants
            side.wait_stream(torch.cuda.current_stream(X.device))
            with torch.cuda.stream(side):
                for _ in range(warm_up_steps):
                    step(self.static_X, self.static_y)
            torch.cuda.current_stream(X.device).wait_stream(side)
        torch.cuda.set_rng_state(rng, X.device)
        # Recording then allocates the gradients it fills: backward writes them, it does not add
        # (the step's own zero_grad(set_to_none=True) records no work).
        optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):  # records the launches; runs nothing
            self.y_hat, self.loss = step(self.static_X, self.static_y)

    def fits(self, X: torch.Tensor) -> bool:
        """Whether ``X`` has the recorded batch's shape (a short last batch does not)."""
        return X.shape == self.static_X.shape

    def replay(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on ``(X, y)``; returns ``(y_hat, loss)`` of this batch."""
        self.static_X.copy_(X)
        self.static_y.copy_(y)
        self.graph.replay()
        return self.y_hat, self.loss
