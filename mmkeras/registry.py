"""The component registry: every encoder, fusion, head, objective, dataset, augmentation and
evaluator, and the ``files`` dataset's file readers, found through Python entry points.

Discovery is lazy: names and the distribution that provides each are read from package
metadata without importing anything; a component's module is imported on first use. A plugin
that fails to import is recorded with its error and raised (naming the plugin, its
distribution and the cause) only when something asks for it. Two distributions providing the
same name are a clash, reported and never resolved by import order.

A distribution declares the plugin API it targets in its metadata, one entry point per version in
the group ``mmkeras.api`` named ``v<N>`` (``v1 = "my_package"``; the value is not imported). A
distribution whose declarations miss :data:`PLUGIN_API_VERSION` is ``incompatible``: listed, and
refused before import when something asks for it. One that declares nothing is loaded as before.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmkeras.errors import ComponentError

KINDS: tuple[str, ...] = (
    "encoders",
    "fusions",
    "heads",
    "objectives",
    "datasets",
    "augmentations",
    "evaluators",
    "readers",  # file decoders of the ``files`` dataset, named by file extension (see mmkeras.data.files)
)
#: the kinds a recipe names (Keras layers and datasets with typed parameters); readers are chosen by extension
COMPONENT_KINDS: tuple[str, ...] = KINDS[:-1]
GROUP_PREFIX = "mmkeras."
IN_PROCESS = "<in-process>"
#: the plugin API this mmkeras provides; raise it only when a plugin written for the old one would break
PLUGIN_API_VERSION = 1
API_GROUP = "mmkeras.api"


@dataclass
class Entry:
    """One registered component: where it comes from and whether it loaded."""

    kind: str
    name: str
    target: str  # "module:attr", or the qualified name of an in-process class
    distribution: str
    version: str
    loader: Callable[[], Any] | None = None
    obj: Any = None
    status: str = "not loaded"  # "not loaded" | "loaded" | "broken" | "incompatible"
    error: str | None = None
    traceback: str | None = None
    api: tuple[int, ...] | None = None  # plugin API versions its distribution declares; None: undeclared

    def load(self) -> Any:
        if self.status == "loaded":
            return self.obj
        if self.status == "incompatible":  # refused before import: its code targets another API
            raise ComponentError(self.describe_failure())
        try:
            obj = self.loader() if self.loader else self.obj
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin's SystemExit at import must not end the process
            self.status = "broken"
            self.error = f"{type(exc).__name__}: {exc}"
            self.traceback = traceback.format_exc()
            raise ComponentError(self.describe_failure()) from exc
        self.obj, self.status, self.error = obj, "loaded", None
        return obj

    def describe_failure(self) -> str:
        if self.status == "incompatible":
            return (
                f"{self.kind[:-1]} {self.name!r} from distribution {self.distribution!r} "
                f"({self.target}) is incompatible: {self.error}"
            )
        return (
            f"{self.kind[:-1]} {self.name!r} from distribution {self.distribution!r} "
            f"({self.target}) failed to load: {self.error}"
        )


@dataclass
class Registry:
    """All components by kind. Use the module-level :data:`registry`."""

    entries: dict[str, dict[str, list[Entry]]] = field(default_factory=dict)
    _discovered: bool = False
    _shadowed: dict[tuple[str, str], list[Entry]] = field(default_factory=dict)  # hidden by in-process overrides

    # -- discovery -----------------------------------------------------------------------
    def discover(self, force: bool = False) -> None:
        """Read every ``mmkeras.*`` entry point (metadata only, nothing imported)."""
        if self._discovered and not force:
            return
        kept: dict[str, dict[str, list[Entry]]] = {k: {} for k in KINDS}
        for kind in KINDS:  # keep what was registered in-process across a re-discovery
            for name, lst in self.entries.get(kind, {}).items():
                own = [e for e in lst if e.distribution == IN_PROCESS]
                if own:
                    kept[kind][name] = own
        self.entries = {k: dict(v) for k, v in kept.items()}
        self._shadowed = {}
        every = md.entry_points()  # one scan of the installed distributions, not one per group
        declared = _declared_apis(every)
        about: dict[int, tuple[str, str]] = {}  # each distribution's METADATA parsed once, not once per entry point
        for kind in KINDS:
            seen: set[tuple[str, str, str]] = set()
            for ep in every.select(group=GROUP_PREFIX + kind):
                dist = getattr(ep, "dist", None)
                if id(dist) not in about:
                    about[id(dist)] = (dist.metadata["Name"], dist.version) if dist is not None else ("<unknown>", "?")
                dist_name, dist_version = about[id(dist)]
                key = (ep.name, ep.value, dist_name)
                if key in seen:  # the same distribution seen twice on sys.path
                    continue
                seen.add(key)
                entry = Entry(kind, ep.name, ep.value, dist_name, dist_version, loader=ep.load)
                _check_api(entry, declared.get(dist_name))
                if ep.name in kept[kind]:  # an in-process registration wins until remove()
                    self._shadowed.setdefault((kind, ep.name), []).append(entry)
                    continue
                self.entries[kind].setdefault(ep.name, []).append(entry)
        self._discovered = True

    # -- in-process registration -------------------------------------------------------
    def add(self, kind: str, name: str, obj: Any, override: bool = False) -> Any:
        """Register ``obj`` under ``name`` in this process (notebooks, tests)."""
        _check_kind(kind)
        self.discover()
        existing = self.entries[kind].get(name, [])
        if existing and not override:
            where = ", ".join(e.distribution for e in existing)
            raise ComponentError(
                f"{kind[:-1]} {name!r} is already provided by {where}; pass override=True to replace it in this process"
            )
        target = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
        entry = Entry(kind, name, target, IN_PROCESS, "", obj=obj, status="loaded")
        installed = [e for e in existing if e.distribution != IN_PROCESS]
        if installed:  # remove() brings them back
            self._shadowed[(kind, name)] = installed
        self.entries[kind][name] = [entry]
        return obj

    def remove(self, kind: str, name: str) -> None:
        """Forget an in-process registration."""
        lst = self.entries.get(kind, {}).get(name, [])
        rest = [e for e in lst if e.distribution != IN_PROCESS] or self._shadowed.pop((kind, name), [])
        if rest:
            self.entries[kind][name] = rest
        else:
            self.entries.get(kind, {}).pop(name, None)

    # -- lookup --------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        _check_kind(kind)
        self.discover()
        return sorted(self.entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """The single entry for ``name``; raises on unknown names and on clashes."""
        _check_kind(kind)
        self.discover()
        lst = self.entries[kind].get(name)
        if not lst:
            raise ComponentError(unknown_name_message(kind, name, self.names(kind)))
        if len(lst) > 1:
            provided = ", ".join(f"{e.distribution} ({e.target})" for e in lst)
            raise ComponentError(
                f"{kind[:-1]} {name!r} is provided by more than one distribution: {provided}; uninstall one of them"
            )
        return lst[0]

    def get(self, kind: str, name: str) -> Any:
        """The component class registered as ``name``, importing it on first use."""
        return self.entry(kind, name).load()

    def load_all(self) -> list[Entry]:
        """Import every component; returns the entries that are broken or clash."""
        self.discover()
        bad = []
        for kind in KINDS:
            for lst in self.entries[kind].values():
                for e in lst:
                    try:
                        e.load()
                    except ComponentError:
                        bad.append(e)
                if len(lst) > 1:
                    bad.extend(e for e in lst if e not in bad)
        return bad

    def clashes(self) -> list[list[Entry]]:
        self.discover()
        return [lst for kind in KINDS for lst in self.entries[kind].values() if len(lst) > 1]

    def all_entries(self) -> list[Entry]:
        self.discover()
        return [e for kind in KINDS for name in sorted(self.entries[kind]) for e in self.entries[kind][name]]


def _declared_apis(every: md.EntryPoints) -> dict[str, set[str]]:
    """Distribution name -> the names of its ``mmkeras.api`` entry points (metadata only)."""
    out: dict[str, set[str]] = {}
    for ep in every.select(group=API_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            out.setdefault(dist.metadata["Name"], set()).add(ep.name)
    return out


def _check_api(entry: Entry, names: set[str] | None) -> None:
    """Mark ``entry`` incompatible when its distribution declares plugin APIs without this one."""
    if names is None:
        return
    bad = sorted(n for n in names if not (n.startswith("v") and n[1:].isdigit()))
    entry.api = tuple(sorted(int(n[1:]) for n in names if n not in bad))
    if bad:
        entry.status, entry.error = (
            "incompatible",
            (
                f"its {API_GROUP} entry points {bad} are not plugin API versions; "
                f'declare the one it targets as v<N>, e.g. v{PLUGIN_API_VERSION} = "<package>"'
            ),
        )
    elif PLUGIN_API_VERSION not in entry.api:
        targets = ", ".join(map(str, entry.api))
        entry.status, entry.error = (
            "incompatible",
            (
                f"it targets mmkeras plugin API {targets}; this mmkeras provides plugin API {PLUGIN_API_VERSION}. "
                f"Install a release of {entry.distribution} made for plugin API {PLUGIN_API_VERSION}, "
                f"or an mmkeras that provides API {targets}"
            ),
        )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; expected one of {list(KINDS)}")


def did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    avail = ", ".join(known) if known else "none installed"
    return f"unknown {kind[:-1]} {name!r}{did_you_mean(name, known)} (available: {avail})"


registry = Registry()


def _decorator(kind: str) -> Callable[..., Any]:
    def register(name: str, override: bool = False) -> Callable[[Any], Any]:
        def wrap(obj: Any) -> Any:
            return registry.add(kind, name, obj, override=override)

        return wrap

    register.__doc__ = f"Register a class as {kind[:-1]} ``name`` in this process: ``@{register.__name__}('name')``."
    return register


register_encoder = _decorator("encoders")
register_fusion = _decorator("fusions")
register_head = _decorator("heads")
register_objective = _decorator("objectives")
register_dataset = _decorator("datasets")
register_augmentation = _decorator("augmentations")
register_evaluator = _decorator("evaluators")


def parameters(cls: Any) -> dict[str, inspect.Parameter]:
    """The typed parameters a component declares: the keyword arguments of its ``__init__``
    (``**kwargs`` for Keras base-class arguments excluded)."""
    if getattr(cls.__init__, "__module__", "").startswith("keras"):
        return {}  # no __init__ of its own: only Keras's base-class arguments, which are not recipe parameters
    sig = inspect.signature(cls.__init__)
    return {
        n: p for n, p in sig.parameters.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
