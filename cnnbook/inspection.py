"""`layer_table`: what each layer of a model does to an input, measured by running it.

For every layer it reports the output shape, the number of parameters, the memory of the
output activations and the floating-point operations (counted by PyTorch's own
``FlopCounterMode``, where one multiply-add is 2 FLOPs). When a shape does not fit, the
table stops at the layer that failed and the error says what it got and which input
sizes would fit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


class ShapeMismatchError(RuntimeError):
    """A layer could not take the shape its predecessor produced. ``.table`` holds the rows so far."""

    def __init__(self, message: str, table: LayerTable):
        super().__init__(message)
        self.table = table


@dataclass
class LayerRow:
    """One layer: its name, type, output shape, parameters, activation bytes and FLOPs."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    activation_bytes: int
    flops: int


@dataclass
class LayerTable:
    """The rows of `layer_table`, printable as a text table; totals as properties."""

    input_shape: tuple[int, ...]
    rows: list[LayerRow]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def total_activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.rows)

    def to_text(self, columns: tuple[str, ...] = ("shape", "params", "memory", "flops")) -> str:
        """The table as aligned text; ``columns`` picks among shape, params, memory, flops."""
        headers = {"shape": "output shape", "params": "params", "memory": "activations", "flops": "FLOPs"}
        cells = {
            "shape": lambda r: "x".join(map(str, r.output_shape)),
            "params": lambda r: f"{r.params:,}",
            "memory": lambda r: _human_bytes(r.activation_bytes),
            "flops": lambda r: _human_count(r.flops),
        }
        totals = {
            "shape": "",
            "params": f"{self.total_params:,}",
            "memory": _human_bytes(self.total_activation_bytes),
            "flops": _human_count(self.total_flops),
        }
        table = [["layer", *(headers[c] for c in columns)]]
        table.append(
            ["input", "x".join(map(str, self.input_shape))] + [""] * (len(columns) - 1)
            if columns[0] == "shape"
            else ["input", *[""] * len(columns)]
        )
        for r in self.rows:
            table.append([f"{r.name} {r.kind}", *(cells[c](r) for c in columns)])
        table.append(["total", *(totals[c] for c in columns)])
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
            )
            for row in table
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the text table
        printer.text(self.to_text())


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _human_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _leaf_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules that do the work: those with no children (Conv2d, ReLU, Linear, ...)."""
    return [(name, m) for name, m in net.named_modules() if not list(m.children()) and name]


def layer_table(
    net: nn.Module, input_shape: tuple[int, ...], device: torch.device | str | None = None
) -> LayerTable:
    """Run one random input of ``input_shape`` through ``net`` and measure every layer.

    Example: ``print(cnnbook.layer_table(net, (1, 1, 28, 28)))``.
    Raises `ShapeMismatchError` naming the layer where shapes stop fitting.
    """
    if device is None:
        params = list(net.parameters())
        device = params[0].device if params else torch.device("cpu")
    rows: list[LayerRow] = []
    layers = _leaf_layers(net)
    last_output: dict[str, tuple[int, ...]] = {"shape": tuple(input_shape)}
    counter = FlopCounterMode(display=False)

    def record(name, module):
        def hook(_module, _inputs, output):
            rows.append(
                LayerRow(
                    name=name,
                    kind=type(module).__name__,
                    output_shape=tuple(output.shape),
                    params=sum(p.numel() for p in module.parameters(recurse=False)),
                    activation_bytes=output.numel() * output.element_size(),
                    flops=counter.get_total_flops(),  # running total; see _per_layer_flops
                )
            )
            last_output["shape"] = tuple(output.shape)

        return hook

    handles = [m.register_forward_hook(record(n, m)) for n, m in layers]
    was_training = net.training
    net.eval()
    failure = None
    try:
        with torch.no_grad(), counter:
            net(torch.randn(*input_shape, device=device))
    except RuntimeError as err:
        failure = err
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    table = LayerTable(tuple(input_shape), _per_layer_flops(rows))
    if failure is not None:
        done = {r.name for r in rows}
        failing = next(((n, m) for n, m in layers if n not in done), ("?", None))
        raise ShapeMismatchError(
            f"Shapes stop fitting at layer {failing[0]} ({failing[1]}), which got an input of "
            f"shape {'x'.join(map(str, last_output['shape']))} from the layer before.\n"
            f"{_fitting_sizes_hint(net, tuple(input_shape))}"
            f"PyTorch said: {failure}\nThe layers that worked:\n{table.to_text()}",
            table,
        ) from None
    return table


def fitting_sizes(net: nn.Module, input_shape: tuple[int, ...], largest: int | None = None) -> list[int]:
    """The sizes ``n`` for which a square input ``(1, C, n, n)`` runs through ``net`` without error.

    ``C`` comes from ``input_shape``. Sizes 1 to ``largest`` (default: twice the larger side
    of ``input_shape``, at least 256) are tried on PyTorch's *meta* device, which works out
    every shape without computing anything, so hundreds of sizes take well under a second.
    Example: ``fitting_sizes(alexnet, (1, 1, 28, 28))`` is ``[193, ..., 224]``.
    """
    if len(input_shape) != 4:
        return []
    largest = largest or max(256, 2 * max(input_shape[-2:]))
    meta = {
        name: torch.empty_like(t, device="meta")
        for name, t in itertools.chain(net.named_parameters(), net.named_buffers())
    }
    was_training = net.training
    net.eval()
    fits = []
    try:
        for n in range(1, largest + 1):
            try:
                torch.func.functional_call(net, meta, (torch.empty(1, input_shape[1], n, n, device="meta"),))
            except Exception:  # any error means "does not fit"; an op without meta support fits nowhere
                continue
            fits.append(n)
    finally:
        net.train(was_training)
    return fits


def _fitting_sizes_hint(net: nn.Module, input_shape: tuple[int, ...]) -> str:
    """One line saying which square inputs would fit, or nothing for non-image inputs."""
    if len(input_shape) != 4:
        return ""
    sizes = fitting_sizes(net, input_shape)
    if not sizes:
        return f"No square input with {input_shape[1]} channel(s) fits this network.\n"
    runs, start = [], sizes[0]  # group consecutive sizes into ranges
    for previous, current in zip(sizes, sizes[1:] + [None]):
        if current != previous + 1:
            runs.append(
                f"{start}x{start}" if start == previous else f"{start}x{start} to {previous}x{previous}"
            )
            start = current
    return f"Square inputs of {', '.join(runs)} pixels fit this network.\n"


def _per_layer_flops(rows: list[LayerRow]) -> list[LayerRow]:
    """Each hook saw the running FLOP total just after its layer ran; a layer's own FLOPs are
    the difference to the total after the layer before."""
    previous = 0
    for row in rows:
        row.flops, previous = row.flops - previous, row.flops
    return rows
