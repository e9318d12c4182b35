"""`draw_model`: a network's diagram, drawn from the model itself rather than by hand.

``torch.fx`` traces the model's ``forward`` into a graph of operations, and one random input
run through that graph records every output's shape. Each layer becomes a box labelled with
its type and output shape; a normalisation or activation right after a layer joins that
layer's box, so a box reads like a line of the code ("Conv2d 3x3 + BatchNorm2d + ReLU").
Boxes sit in rows by depth (the longest path from the input), and the branches of a block
(Inception's four paths, a skip connection, a dense block's concatenations) side by side.
Because the picture comes from the traced graph, it shows what ``forward`` does, including
mistakes: a branch that is built but never used does not appear.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from cnnbook.plot import new_figure

# Layers that join the box of the layer before them (when that layer feeds nothing else).
FOLDED = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.ReLU, nn.GELU, nn.SiLU, nn.Dropout, nn.Dropout2d)
FOLDED_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.gelu}
FUNCTION_NAMES = {operator.add: "add", operator.iadd: "add", operator.mul: "mul", torch.cat: "concatenate"}
MAX_WIDTH = 6.8  # inches: as wide as the book's text column, so the text shows at full size
COLOURS = {"input": "#e0e0e0", "conv": "#cfe2f3", "pool": "#d9ead3", "merge": "#fce5cd", "other": "#ffffff"}


@dataclass
class Box:
    """One box of a diagram: a layer (with the layers folded into it) or an operation."""

    name: str  # the traced node's name
    label: str  # the layer's type and settings, e.g. "Conv2d 3x3, stride 2"
    shape: tuple[int, ...]  # output shape without the batch dimension
    inputs: list[str]  # names of the boxes that feed this one
    kind: str = "other"  # input, conv, pool, merge or other: picks the colour
    folded: list[str] = field(default_factory=list)  # e.g. ["BatchNorm2d", "ReLU"]
    row: int = 0
    x: float = 0.0

    def text(self) -> str:
        """The box's text: its label, what was folded into it, its output shape."""
        lines = [self.label]
        if self.folded:
            lines.append("+ " + " + ".join(self.folded))
        if self.shape:  # an output that is not one tensor (a tuple, a number) has no shape to show
            lines.append("x".join(map(str, self.shape)))
        return "\n".join(lines)


class _LayerTracer(fx.Tracer):
    """Traces into blocks, stops at layers: a module without children is one box (as in
    `cnnbook.layer_table`), so a chapter's own small layers (a LayerNorm over channels) are too."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return not list(module.children()) or super().is_leaf_module(module, qualified_name)


def model_graph(net: nn.Module, input_shape: tuple[int, ...]) -> list[Box]:
    """The boxes of ``net``'s diagram for an input of ``input_shape``, placed in rows and columns.

    Raises ``ValueError`` when ``forward`` cannot be traced (e.g. an ``if`` on the input's
    values): draw the blocks inside such a model instead.
    """
    try:
        graph = _LayerTracer().trace(net)
    except Exception as err:  # fx raises several types; all mean "this forward cannot be traced"
        raise ValueError(
            f"torch.fx cannot trace {type(net).__name__}.forward ({err}). Draw its blocks one by one, "
            "or take data-dependent control flow out of forward."
        ) from err
    module = fx.GraphModule(net, graph)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            device = next(net.parameters(), torch.empty(0)).device  # where the model lives
            ShapeProp(module).propagate(torch.randn(*input_shape, device=device))
    finally:
        net.train(was_training)
    boxes = _boxes(module)
    _place(boxes)
    return list(boxes.values())


def _boxes(module: fx.GraphModule) -> dict[str, Box]:
    boxes: dict[str, Box] = {}
    alias: dict[str, str] = {}  # a folded node -> the box it joined
    for node in module.graph.nodes:
        if node.op in ("output", "get_attr"):
            continue  # the output is the last box; get_attr fetches a parameter, not a layer
        meta = node.meta.get("tensor_meta")
        shape = tuple(meta.shape[1:]) if hasattr(meta, "shape") else ()
        inputs = list(dict.fromkeys(alias.get(n.name, n.name) for n in node.all_input_nodes))
        inputs = [name for name in inputs if name in boxes]
        layer = module.get_submodule(node.target) if node.op == "call_module" else None
        if _folds(node, layer) and len(inputs) == 1 and len(_users(module, inputs[0], alias)) == 1:
            name = type(layer).__name__ if layer is not None else node.target.__name__
            boxes[inputs[0]].folded.append(name)
            alias[node.name] = inputs[0]
            continue
        label, kind = _describe(node, layer)
        boxes[node.name] = Box(node.name, label, shape, inputs, kind)
    return boxes


def _folds(node: fx.Node, layer: nn.Module | None) -> bool:
    return isinstance(layer, FOLDED) or (node.op == "call_function" and node.target in FOLDED_FUNCTIONS)


def _users(module: fx.GraphModule, box: str, alias: dict[str, str]) -> set[str]:
    """The nodes that use the output of ``box`` (which may stand for several folded nodes)."""
    members = {box} | {name for name, target in alias.items() if target == box}
    return {user.name for node in module.graph.nodes if node.name in members for user in node.users} - members


def _describe(node: fx.Node, layer: nn.Module | None) -> tuple[str, str]:
    """A box's label and kind for a traced node."""
    if node.op == "placeholder":
        return "input", "input"
    if isinstance(layer, nn.Conv2d):
        k, s, groups = layer.kernel_size, layer.stride[0], layer.groups
        label = f"Conv2d {k[0]}x{k[1]}" + (f", stride {s}" if s > 1 else "")
        if groups > 1:
            label += ", depthwise" if groups == layer.in_channels else f", {groups} groups"
        return label, "conv"
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        s = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
        return f"{type(layer).__name__} {k}x{k}" + (f", stride {s}" if s != k else ""), "pool"
    if isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return type(layer).__name__, "pool"
    if layer is not None:
        return type(layer).__name__, "other"
    if node.op == "call_method":
        return node.target, "other"
    name = FUNCTION_NAMES.get(node.target, getattr(node.target, "__name__", str(node.target)))
    return name, "merge" if name in ("add", "mul", "concatenate") else "other"


def _place(boxes: dict[str, Box]) -> None:
    """Rows by depth; in each row, boxes near the mean column of their inputs, branches side by side."""
    for box in boxes.values():  # the graph is in execution order: inputs come first
        box.row = max((boxes[i].row + 1 for i in box.inputs), default=0)
    for row in range(max(b.row for b in boxes.values()) + 1):
        members = [b for b in boxes.values() if b.row == row]
        ideal = {b.name: sum(boxes[i].x for i in b.inputs) / max(len(b.inputs), 1) for b in members}
        siblings: dict[float, list[Box]] = {}  # boxes that would sit on one spot spread around it
        for b in members:
            siblings.setdefault(ideal[b.name], []).append(b)
        for spot, group in siblings.items():
            for i, b in enumerate(group):
                b.x = spot + i - (len(group) - 1) / 2
        members.sort(key=lambda b: b.x)
        for left, right in zip(members, members[1:]):
            right.x = max(right.x, left.x + 1)  # one column apart at least


def draw_model(net: nn.Module, input_shape: tuple[int, ...], title: str | None = None, ax=None):
    """Draw ``net``'s diagram for an input of ``input_shape``; returns a new figure (or draws on ``ax``).

    Example: ``cnnbook.draw_model(InceptionBlock(64), (1, 64, 16, 16))``.
    """
    boxes = model_graph(net, input_shape)
    rows = max(b.row for b in boxes) + 1
    fig = None
    if ax is None:
        fig, ax = new_figure(figsize=(MAX_WIDTH, 0.62 * rows + 0.5))
    width, height, pitch = 0.86, 0.66, 1.0  # in column units; rows are one unit apart
    by_name = {b.name: b for b in boxes}
    right = max(b.x for b in boxes) + 0.6
    for box in boxes:
        y = -box.row * pitch
        ax.add_patch(
            FancyBboxPatch(
                (box.x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.02",
                facecolor=COLOURS[box.kind], edgecolor="#555555", linewidth=0.8,
            )
        )  # fmt: skip
        ax.text(box.x, y, box.text(), ha="center", va="center", fontsize=8, linespacing=1.1)
        for name in box.inputs:
            right = max(right, _arrow(ax, by_name[name], box, boxes, width, height, pitch) + 0.1)
    left = min(b.x for b in boxes) - 0.6
    ax.set_xlim(left, right)
    if fig is not None:  # about 2 inches per column, arcs included, and no wider than the page
        fig.set_figwidth(min(MAX_WIDTH, max(2.8, 2.1 * (right - left))))
    ax.set_ylim(-(rows - 1) * pitch - 0.5, 0.5)
    ax.axis("off")
    ax.set_title(title or type(net).__name__, fontsize=10)
    return fig


def _arrow(ax, source: Box, target: Box, boxes: list[Box], width: float, height: float, pitch: float):
    """An arrow from ``source`` down to ``target``: straight where no box is in the way, else down
    its own column and across (a branch that ends early), else around the side (a skip).
    Returns the rightmost x it reaches."""
    start = (source.x, -source.row * pitch - height / 2)
    end = (target.x, -target.row * pitch + height / 2)
    between = [b for b in boxes if source.row < b.row < target.row]

    def blocked(x_at_row) -> bool:
        return any(abs(b.x - x_at_row(b.row)) < width for b in between)

    slope = (target.x - source.x) / (target.row - source.row)
    if not blocked(lambda row: source.x + slope * (row - source.row)):
        path = Path([start, end])
    elif not blocked(lambda row: source.x):
        bend = (source.x, -(target.row - 1) * pitch - height / 2)
        path = Path([start, bend, end])
    else:  # leave and enter from the side, so the curve clears the boxes in between
        start, end = (source.x + width / 2, -source.row * pitch), (target.x + width / 2, -target.row * pitch)
        bulge = 0.3 * (start[1] - end[1])  # a longer skip bows out further
        control = ((start[0] + end[0]) / 2 + bulge, (start[1] + end[1]) / 2)
        path = Path([start, control, end], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
    ax.add_patch(
        FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=8, linewidth=0.8, color="#555555")
    )
    return path.get_extents().x1
