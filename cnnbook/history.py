"""`History`: what a training run measured, epoch by epoch, and how to print it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class History:
    """Per-epoch results of `cnnbook.train`, plus where and how the run happened.

    ``train_loss`` is the mean loss over all training examples of the epoch (not the last
    batch's); accuracies are fractions in [0, 1]; times are in seconds.
    """

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)  # whole epoch, evaluation included
    examples_per_sec: list[float] = field(default_factory=list)  # training phase only
    device: str = ""
    device_name: str = ""
    profile: str = ""
    wall_time: float = 0.0
    interrupted: bool = False

    def record(self, train_loss, train_acc, test_acc, epoch_time, examples_per_sec) -> None:
        """Append one finished epoch."""
        self.epochs.append(len(self.epochs) + 1)
        self.train_loss.append(float(train_loss))
        self.train_acc.append(float(train_acc))
        self.test_acc.append(float(test_acc))
        self.epoch_time.append(float(epoch_time))
        self.examples_per_sec.append(float(examples_per_sec))

    def first(self, n: int) -> History:
        """The first ``n`` epochs of this run as a new `History` (what a shorter run recorded)."""
        kept = {name: value[:n] if isinstance(value, list) else value for name, value in asdict(self).items()}
        return History(**kept)

    def scores(self, i: int = -1) -> str:
        """Epoch ``i``'s loss and accuracies as text, e.g. ``loss 0.612, train acc 0.765, test acc 0.741``."""
        return (
            f"loss {self.train_loss[i]:.3f}, train acc {self.train_acc[i]:.3f}, "
            f"test acc {self.test_acc[i]:.3f}"
        )

    def epoch_line(self, i: int) -> str:
        """One epoch as text, e.g. ``epoch 3: loss 0.612, train acc 0.765, test acc 0.741 (4.1 s)``."""
        return f"epoch {self.epochs[i]}: {self.scores(i)} ({self.epoch_time[i]:.1f} s)"

    @property
    def mean_examples_per_sec(self) -> float:
        """Training throughput over all epochs (total examples / total training time)."""
        if not self.examples_per_sec:
            return 0.0
        seconds = sum(1 / r for r in self.examples_per_sec if r > 0)
        return len(self.examples_per_sec) / seconds if seconds else 0.0

    def summary(self) -> str:
        """The d2l summary line, then profile, device and wall time on a second line."""
        if not self.epochs:
            return f"no epoch finished (profile {self.profile}, device {self.device_name})"
        return (
            f"{self.scores(-1)}, {self.mean_examples_per_sec:.1f} examples/sec on {self.device}\n"
            f"profile {self.profile} · {len(self.epochs)} epochs · {self.device_name} · "
            f"wall time {self.wall_time:.1f} s" + (" · INTERRUPTED" if self.interrupted else "")
        )

    def to_dict(self) -> dict:
        """Plain lists, numbers and strings (safe for ``torch.load(weights_only=True)``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        """The inverse of `to_dict`."""
        return cls(**data)
