"""A Sphinx extension: the API page renders the package's argument lists as parameters.

``cnnbook``'s docstrings describe the arguments that need it in plain lines, one per
argument, continued by indented lines, readable in ``help()`` and in the source::

    optimizer: defaults to ``SGD(net.parameters(), lr)``.
    scheduler: a learning-rate scheduler of that optimizer, stepped once per batch,
        after the optimizer.

In reStructuredText those lines are a paragraph followed by an unexpected indentation,
an error under ``-W``. Before autodoc parses a docstring, this hook turns each such line
whose names are parameters of the object (``a, b:`` and ``**sliders:`` included) into a
``:param a:`` field, so the page shows a *Parameters* list in the signature's order, with
the types that ``autodoc_typehints = "description"`` adds. Any other line is left as written.
"""

import inspect
import re

ARGUMENT = re.compile(r"^(\*{0,2}\w+(?:, \*{0,2}\w+)*): (.*)$")


def _parameters(obj) -> list[str]:
    """The parameter names of a function, or of a class's constructor, in order; ``self`` left out."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    names = [stars.get(p.kind, "") + p.name for p in signature.parameters.values()]
    return [n for n in names if n not in ("self", "cls")]


def _field(name: str) -> str:
    return name.replace("*", r"\*")


def argument_fields(lines: list[str], parameters: list[str]) -> list[str]:
    """``lines`` with the argument lines (``name: text``) made ``:param name: text`` fields.

    The fields go where the first argument line was, in the signature's order, and every
    other parameter gets a field too, so that the *Parameters* list reads like the signature.
    """
    out, fields, start, current = [], {}, None, None
    for line in lines:
        match = ARGUMENT.match(line)
        names = match.group(1).split(", ") if match else []
        if current and line.startswith((" ", "\t")) and line.strip():
            fields[current].append(line)  # a continuation of the argument above
        elif names and all(n in parameters for n in names):
            start = len(out) if start is None else start
            current = names[0]
            fields[current] = [f":param {_field(current)}: {match.group(2)}"]
            fields.update({n: [f":param {_field(n)}: as ``{current}``."] for n in names[1:]})
        else:
            current = None
            out.append(line)
    if start is None:
        return out
    listed = [line for n in parameters for line in fields.get(n, [f":param {_field(n)}:"])]
    before, after = out[:start], out[start:]
    # A field list stands between blank lines.
    return (
        before
        + [""] * bool(before and before[-1].strip())
        + listed
        + [""] * bool(after and after[0].strip())
        + after
    )


def _process_docstring(app, what, name, obj, options, lines):
    if what in ("function", "method", "class", "exception"):
        lines[:] = argument_fields(lines, _parameters(obj))


def setup(app):
    app.connect("autodoc-process-docstring", _process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
