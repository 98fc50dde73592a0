"""The base of every registered component: parameters declared once, in ``__init__``'s signature.

A component (encoder, fusion, head, objective, augmentation, or a plugin's) lists its parameters
with their types and ranges in its constructor (see :mod:`mmkeras.params`) and keeps each as an
attribute of the same name. From that one declaration :class:`Component` derives

- the checks: a constructor call with a value out of its declared range raises ``ValueError``
  naming the class, the parameter and what was expected (the recipe checks use the same
  declaration, so a recipe and a Python call are refused alike);
- ``get_config``: the Keras base config plus every declared parameter's attribute, so a saved
  component reloads with the same parameters (defaults included).
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any

_depth = threading.local()


class Component:
    """Mixin for Keras layers that are registered components (put it before the Keras base:
    ``class MyFusion(Component, keras.layers.Layer)``)."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_checks_parameters", False):
            cls.__init__ = _checked(init)

    def get_config(self) -> dict[str, Any]:
        from mmkeras.registry import parameters

        config = super().get_config()
        for name in parameters(type(self)):
            if not hasattr(self, name):
                raise AttributeError(
                    f"{type(self).__name__} declares the parameter {name!r} but keeps no attribute of that "
                    f"name; set self.{name} in __init__ so get_config can save it"
                )
            config[name] = _plain(getattr(self, name))
        return config


def _checked(init: Any) -> Any:
    """``init`` that first checks the declared parameters it is given (the outermost call only:
    a component's own sub-components and its base classes' constructors are not checked again)."""

    @functools.wraps(init)
    def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
        depth = getattr(_depth, "value", 0)
        if depth == 0:
            check_arguments(type(self), args, kwargs)
        _depth.value = depth + 1
        try:
            init(self, *args, **kwargs)
        finally:
            _depth.value = depth

    checked_init._checks_parameters = True  # type: ignore[attr-defined]
    # Keras reads the constructor's arguments with getfullargspec, which does not follow __wrapped__
    checked_init.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]
    return checked_init


def check_arguments(cls: type, args: tuple, kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` when ``cls(*args, **kwargs)`` gives a declared parameter a value
    outside its declared type or range."""
    from mmkeras.recipe import check_params
    from mmkeras.registry import parameters

    declared = parameters(cls)
    if not declared:
        return
    try:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__}: {exc}") from None
    given = {k: _plain(v) for k, v in bound.arguments.items() if k in declared}
    _, problems = check_params(cls, cls.__name__, given, ())
    if problems:
        raise ValueError(f"{cls.__name__}: " + "; ".join(p.removeprefix("params.") for p in problems))


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers (for the checks and for JSON configs)."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    return value
