"""Parameter types with their ranges, for components' constructor signatures (core and plugins).

A component declares each parameter once, in its ``__init__`` signature::

    def __init__(self, temperature: PositiveFloat = 0.1, num_heads: PositiveInt = 4, **kwargs): ...

The registry reads these for recipe validation (``mmkeras validate``, the builder) and the JSON
Schema (``mmkeras schema``); a range of your own is ``Annotated[float, Field(ge=1.0, allow_inf_nan=False)]``.
Integers are strict (``true`` and ``1.5`` are not integers) and ranged floats refuse NaN and infinity.
This module imports no Keras: ``validate`` must stay fast.
"""

from __future__ import annotations

import inspect
import re
from typing import Annotated, Any

from pydantic import Field, Strict

#: an integer; ``true``, ``1.5`` and ``"3"`` are refused
Int = Annotated[int, Strict()]
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
#: a seed for NumPy, Python and TensorFlow generators
Seed = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: a probability or a fraction, in [0, 1]
UnitFloat = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
#: a dropout rate, in [0, 1)
DropoutRate = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]

_ARG = re.compile(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def parameter_docs(cls: Any) -> dict[str, str]:
    """Parameter descriptions from the ``Args:`` section of ``cls``'s docstring (or its ``__init__``'s),
    Google style: ``name: text`` lines, continued by deeper-indented lines."""
    return parameter_docs_from(inspect.getdoc(cls), inspect.getdoc(getattr(cls, "__init__", None)))


def parameter_docs_from(*docs: str | None) -> dict[str, str]:
    """:func:`parameter_docs` from the cleaned docstrings themselves (the first to describe a name wins)."""
    out: dict[str, str] = {}
    for doc in docs:
        lines = (doc or "").splitlines()
        heads = [i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:", "Parameters:")]
        if not heads:
            continue
        indent, current = None, None
        for line in lines[heads[0] + 1 :]:
            if not line.strip():
                continue
            depth = len(line) - len(line.lstrip())
            if indent is None:
                indent = depth
            if depth < indent:
                break  # the section ended
            match = _ARG.match(line.strip()) if depth == indent else None
            if match:
                current = match.group(1)
                out.setdefault(current, match.group(2))
            elif current is not None and depth > indent:
                out[current] = f"{out[current]} {line.strip()}".strip()
    return out


__all__ = [
    "DropoutRate",
    "Field",
    "FiniteFloat",
    "Int",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "Seed",
    "parameter_docs",
    "parameter_docs_from",
    "UnitFloat",
]
