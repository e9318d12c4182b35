"""The chapters' slider experiments, built on `cnnbook.widgets.Explorer`.

* `TrainingExplorer`: a short training run for every setting of the sliders (learning
  rate, dropout, width, number of blocks, ...) and the curves after 1, 2, ... epochs;
* `ConvExplorer`: kernel size, stride and padding of a convolution on a real image, with
  the output size worked out by the formula and checked by PyTorch, and the feature maps.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from cnnbook.config import Profile, resolve_profile, try_gpu
from cnnbook.history import History
from cnnbook.loader import DeviceLoader
from cnnbook.plot import draw_history
from cnnbook.progress import in_jupyter
from cnnbook.train import TrainingDivergedError, init_xavier, train
from cnnbook.widgets import ExperimentCancelled, Explorer, figure_html, png_html


class TrainingExplorer(Explorer):
    """Train ``make_net(**settings)`` for each setting of the sliders; show the curves per epoch.

    Every setting trains through `cnnbook.train`, with plain SGD at a constant learning rate
    from the same seed, on the same data in the same order. It trains once for the largest
    number of ``epochs``; the result after fewer epochs is the start of that run (what a
    shorter run computes).

    Under the full profile `show` trains every setting (that is what the website shows).
    Under the quick profile it trains none and says so: press Run to train the chosen one,
    with the quick profile's caps, as `cnnbook.train` applies them.

    make_net: builds the model from the slider settings other than ``lr`` and ``epochs``.
    lr: one learning rate, or a list of them for a slider.
    epochs: the largest number of epochs (the slider offers 1, 2, ..., epochs), or a list.
    train_examples, test_examples: use a fixed class-balanced subset of this many examples
        (default: all the loaders hold) for a shorter experiment.
    start: slider name -> the value it starts at (default: the largest number of epochs).
    init: applied to every module of a new net, as in `cnnbook.train` (default: Xavier);
        ``None`` keeps the net's own initialisation (e.g. a ResNet's Kaiming weights).
    profile: the budget every run trains under (default: the profile active when the
        explorer is made).
    **sliders: further settings for ``make_net``, e.g. ``dropout=[0.0, 0.2, 0.5]``.

    Example::

        explorer = TrainingExplorer(lenet, train_iter, test_iter, lr=[0.1, 0.3, 0.9], epochs=10)
        explorer.show()  # full profile: 3 runs of 10 epochs, then the sliders switch between them
    """

    def __init__(
        self,
        make_net: Callable[..., nn.Module],
        train_iter: DeviceLoader,
        test_iter: DeviceLoader,
        *,
        lr: float | Sequence[float],
        epochs: int | Sequence[int],
        train_examples: int | None = None,
        test_examples: int | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
        title: str = "",
        start: dict | None = None,
        init: Callable[[nn.Module], None] | None = init_xavier,
        profile: Profile | str | None = None,
        **sliders: Sequence,
    ):
        for name, loader in (("train_iter", train_iter), ("test_iter", test_iter)):
            if not isinstance(loader, DeviceLoader):
                raise TypeError(
                    f"TrainingExplorer needs cnnbook's DeviceLoaders (from cnnbook.load_data_...) as "
                    f"{name}; got {type(loader).__name__}."
                )
        epochs = list(range(1, epochs + 1)) if isinstance(epochs, int) else sorted(epochs)
        if not epochs or epochs[0] < 1:
            raise ValueError(f"epochs must be positive numbers of epochs, got {epochs}.")
        self.make_net, self.seed, self.init = make_net, seed, init
        self.device = torch.device(device) if device is not None else try_gpu()
        self.profile = resolve_profile(profile)
        self.fixed_lr = None if isinstance(lr, Sequence) else float(lr)
        if self.fixed_lr is None:
            sliders["lr"] = list(lr)
        sliders["epochs"] = epochs
        self.train_iter = train_iter.subset(train_examples, seed).to(self.device)
        self.test_iter = test_iter.subset(test_examples, seed).to(self.device)
        self.live_runs, self.current_seed, self.draw_while_training = 0, seed, True
        self.histories: dict[tuple[int, ...], History] = {}  # the latest run of each setting
        size = f"{self.train_iter.num_examples:,} training images, batches of {train_iter.batch_size}, SGD"
        start = {"epochs": epochs[-1], **(start or {})}  # open on the whole run's curves
        super().__init__(None, sliders, title=f"{title} ({size})" if title else size, start=start)

    def targets(self) -> list[tuple[int, ...]]:
        """One run per setting of the other sliders, each as long as the longest epochs choice."""
        last = len(self.options["epochs"]) - 1
        return [index for index in super().targets() if index[-1] == last]

    def precompute(self) -> None:
        """Full profile: train every setting with the explorer's seed. Quick: say how to run one."""
        profile = self.profile
        if profile.epochs is not None:
            self.status.value = message = (
                f"{profile.name} profile: nothing trained in advance; press Run to train the chosen "
                f"settings (at most {profile.epochs} epochs). The website shows them all from a full run."
            )
            if not in_jupyter():
                print(message)
            return
        self.current_seed, self.draw_while_training = self.seed, False
        super().precompute()

    def run(self, index=None):
        """Train the chosen settings again, live, with the next seed (to see the run-to-run spread)."""
        self.live_runs += 1
        self.current_seed, self.draw_while_training = self.seed + self.live_runs, True
        return super().run(index)

    def compute(self, index: tuple[int, ...], progress: Callable) -> None:
        """Train the settings at ``index``; show the curves after every epoch up to its count."""
        settings = self.settings(index)
        chosen, lr = settings.pop("epochs"), settings.pop("lr", self.fixed_lr)
        planned = self.profile.cap_epochs(chosen)
        seed = self.current_seed

        def after_epoch(history: History, diverged: bool = False, cancelled: bool = False) -> None:
            done = len(history.epochs)
            for i, e in enumerate(self.options["epochs"]):
                # every epoch count this run has reached, and the chosen one, drawn in place as it
                # trains; when it stops early, the views it will not reach say why
                drawn_live = e == chosen and self.draw_while_training
                if e == done or (diverged and e > done) or drawn_live:
                    result = self._render(settings, lr, history, e, planned, seed, diverged, cancelled)
                    self.show_result(index[:-1] + (i,), result)

        torch.manual_seed(seed)
        net = self.make_net(**settings)
        if self.init is not None:
            net.apply(self.init)
        self.train_iter.reseed(seed)  # every run of this seed sees the same order
        history = self.histories[index[:-1]] = History()  # the latest run, kept if cancelled
        try:
            train(net, self.train_iter, self.test_iter, chosen, lr, self.device, init=None, history=history,
                  profile=self.profile, progress=progress, on_epoch=after_epoch, quiet=True)  # fmt: skip
        except TrainingDivergedError:
            after_epoch(history, diverged=True)
        except ExperimentCancelled:
            history.interrupted = True
            after_epoch(history, cancelled=True)  # no "training..." left behind
            raise

    def summary(self, **settings) -> str:
        """The latest run of every setting (or of those matching ``settings``), as text.

        Two lines per run, as `cnnbook.train` prints them: the last epoch's loss and
        accuracies with the device, then the profile, epochs and time. E.g.
        ``explorer.summary(dropout=0.5)``.
        """
        allowed = [name for name in self.options if name != "epochs"]
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            raise ValueError(
                f"summary() takes slider settings other than epochs: {', '.join(allowed)}; "
                f"got {', '.join(unknown)}."
            )
        lines = []
        for index, history in self.histories.items():
            chosen = self.settings(index + (len(self.options["epochs"]) - 1,))
            if all(chosen[name] == value for name, value in settings.items()):
                chosen.pop("epochs")
                lines.append(f"{_run_name(chosen, chosen.pop('lr', self.fixed_lr))}: {history.summary()}")
        return (
            "\n".join(lines) or "Nothing trained yet for these settings: press Run (or use the full profile)."
        )

    def _render(
        self, settings, lr, history: History, epochs: int, planned: int, seed: int, diverged, cancelled=False
    ) -> str:
        """HTML for the result after ``epochs`` epochs of a run planned for ``planned`` epochs."""
        shown = history.first(epochs)
        done = len(shown.epochs)
        name = _run_name(settings, lr)
        fig = Figure(figsize=(4.6, 2.7), layout="constrained")  # 460 CSS px: readable shrunk on a phone
        ax = fig.add_subplot()
        # fitted to the run's loss (a fixed 0-2.5 flattens the train-test gap), the same scale
        # for the run's every epoch so that the epochs slider's frames compare
        ax.set_ylim(0, max([1.0, *(loss for loss in history.train_loss if math.isfinite(loss))]) * 1.05)
        if done:
            draw_history(shown, ax, num_epochs=self.options["epochs"][-1])
        ax.set_title(f"{name}, {epochs} epochs (seed {seed})", fontsize=10)
        if diverged and len(history.epochs) < epochs:
            bad = len(history.epochs) + 1
            text = f"the loss became NaN or infinite in epoch {bad}: lr {lr:g} is too high"
        elif done < min(epochs, planned) and cancelled:
            scores = f": {shown.scores()}" if done else ""
            text = f"cancelled after {done} of {min(epochs, planned)} epochs{scores} (seed {seed})"
        elif done < min(epochs, planned):
            text = f"training... {done} of {min(epochs, planned)} epochs done"
        else:
            text = (
                f"after {done} epoch{'s' if done > 1 else ''}: {shown.scores()} "
                f"(seed {seed}, {history.device} · {history.device_name})"
            )
            if done < epochs:
                text = f"{self.profile.name} profile: trained {done} of {epochs} epochs; {text}"
        text = f"{name}: {text}"  # the settings as text too: a screen reader cannot read the PNG
        return f"{figure_html(fig)}<br><code>{html.escape(text)}</code>"


def _run_name(settings: dict, lr: float) -> str:
    """``'width 32, dropout 0.2, lr 0.05'``: a run's model settings and learning rate as text."""
    return ", ".join([f"{k} {_text(v)}" for k, v in settings.items()] + [f"lr {lr:g}"])


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def edge_and_blur_kernels(k: int) -> torch.Tensor:
    """Three fixed k x k kernels, shape (3, 1, k, k): vertical edges, horizontal edges, blur.

    An edge kernel is -1 on its left (top) half and +1 on its right (bottom) half, the middle
    column (row) 0; a 1x1 kernel has no halves, so its edge kernels are all zero.
    """
    vertical = torch.zeros(k, k)
    vertical[:, : k // 2], vertical[:, (k + 1) // 2 :] = -1.0, 1.0
    return torch.stack([vertical, vertical.T, torch.full((k, k), 1.0 / k**2)]).unsqueeze(1)


class ConvExplorer(Explorer):
    """Kernel size, stride and padding of a convolution on ``image``: output size and maps.

    image: one grayscale image, (H, W) or (1, H, W), values in [0, 1].
    Every combination is computed at once (a fraction of a second), so there is no Run button.
    """

    def __init__(
        self,
        image: torch.Tensor,
        kernel_size=(1, 3, 5, 7),
        stride=(1, 2, 3),
        padding=(0, 1, 2, 3),
        scale: int = 4,
        title: str = "A convolution on a real image",
    ):
        image = torch.as_tensor(image, dtype=torch.float32).detach().cpu()
        if image.ndim == 3 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 2:
            raise ValueError(
                f"ConvExplorer wants one grayscale image, (H, W) or (1, H, W); got {tuple(image.shape)}."
            )
        self.image, self.scale = image, scale
        super().__init__(
            self.convolve,
            {"kernel_size": kernel_size, "stride": stride, "padding": padding},
            start={"kernel_size": 3, "padding": 1} if 3 in kernel_size and 1 in padding else None,
            title=title,
            live=False,
        )

    def convolve(self, progress, kernel_size: int, stride: int, padding: int) -> str:
        """HTML: the formula for the output size, PyTorch's answer, the padded input and three maps."""
        n, k, s, p = self.image.shape[-1], kernel_size, stride, padding
        maps = F.conv2d(self.image[None, None], edge_and_blur_kernels(k), stride=s, padding=p)[0]
        formula = (n + 2 * p - k) // s + 1
        padded = F.pad(self.image, (p, p, p, p), value=float("nan"))  # NaN marks the padding
        figures = [(f"input {n}x{n}, padded to {n + 2 * p}x{n + 2 * p}", padded)] + [
            (f"{name} {m.shape[-2]}x{m.shape[-1]}", m)
            for name, m in zip(("vertical edges", "horizontal edges", "blur"), maps, strict=True)
        ]
        cells = "".join(
            f'<figure style="display:inline-block;margin:4px 10px 4px 0;vertical-align:top">'
            f"{png_html(_gray_png(m), width=m.shape[-1] * self.scale, title=caption)}"
            f'<figcaption style="font-size:80%">{html.escape(caption)}</figcaption></figure>'
            for caption, m in figures
        )
        return (
            f"<div>output size = &lfloor;({n} + 2&middot;{p} &minus; {k}) / {s}&rfloor; + 1 "
            f"= <b>{formula}</b>; "
            f"PyTorch's output: <code>{tuple(maps.shape)}</code> "
            f"(3 maps of {maps.shape[-2]}x{maps.shape[-1]})</div>{cells}"
        )


def _gray_png(values: torch.Tensor) -> bytes:
    """A 2-D tensor as a grayscale PNG scaled to its own range; NaN (padding) is drawn light blue."""
    v = values.numpy().astype(np.float64)
    pad = np.isnan(v)
    lo, hi = (np.nanmin(v), np.nanmax(v)) if not pad.all() else (0.0, 1.0)
    gray = np.where(pad, 0.0, (v - lo) / (hi - lo) if hi > lo else 0.5)
    rgb = np.repeat((gray * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    rgb[pad] = (170, 200, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="png", optimize=True)
    return buffer.getvalue()
