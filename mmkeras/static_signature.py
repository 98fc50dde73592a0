"""Read a component's declared parameters from its source, without importing it.

``mmkeras validate`` needs, for each component a recipe names, what :func:`mmkeras.registry.parameters`
and :func:`mmkeras.recipe.params_model` would give, the encoders' ``input_layouts`` and whether the
class has a ``check_recipe`` hook. Importing a component imports Keras (seconds); this module finds
the component's source file, parses it with :mod:`ast` and follows its bases through the module's
imports. A base from ``keras`` contributes nothing (its ``__init__`` takes only Keras's own arguments).

Annotations are evaluated in a namespace of builtins and the names the module imports from
:data:`SAFE_MODULES` (imported for real: none of them imports Keras); defaults must be literals.
Whatever the reader cannot resolve exactly makes :func:`read` return ``None``, and the caller imports
the class as before: correctness never depends on this module.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import operator
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkeras.params import parameter_docs_from

#: modules whose names may appear in annotations; each is keras-free and imported for real
SAFE_MODULES = ("typing", "collections.abc", "mmkeras.params", "pydantic", "typing_extensions")
#: ``check_recipe`` defaults of the known bases: (module, class) -> "module:function", each keras-free
KNOWN_HOOKS = {
    ("mmkeras.evaluators.base", "Evaluator"): "mmkeras.recipe_checks:modality_name_problems",
    ("mmkeras.objectives.base", "Objective"): "mmkeras.recipe_checks:pair_problems",
    ("mmkeras.encoders.keras_model", "KerasModelEncoder"): "mmkeras.recipe_checks:network_source_problems",
    ("mmkeras.encoders.pretrained", "PretrainedEncoder"): "mmkeras.recipe_checks:preset_problems",
}
#: the module that re-exports the plugin API's names from where they are defined
PLUGIN_API = "mmkeras.plugin"
_SERIALIZABLE = {"keras.saving.register_keras_serializable", "keras.utils.register_keras_serializable"}
_MAX_DEPTH = 16


class _Unresolved(Exception):
    """Raised inside the reader for anything it cannot resolve exactly; :func:`read` returns None."""


@dataclass
class StaticComponent:
    """What validation needs of one component class, read from its source."""

    name: str  #: the class's ``__name__``
    params: list[tuple[str, Any, Any]]  #: (name, type hint, default or ``inspect.Parameter.empty``)
    docs: dict[str, str]  #: parameter descriptions, as :func:`mmkeras.params.parameter_docs` gives them
    input_layouts: Any = None
    check_recipe: Callable[[dict[str, Any], list[str]], list[tuple[str, str]]] | None = None
    model: Any = field(default=None, repr=False)  #: the params model, built once by the caller


@dataclass
class _Module:
    name: str
    path: Path
    tree: ast.Module
    future_annotations: bool
    imports: dict[str, tuple[str, str | None]]  # local name -> (module, attribute or None for `import m`)
    classes: dict[str, ast.ClassDef]
    bound: dict[str, int]  # how many times each top-level name is bound
    star: bool
    namespace: dict[str, Any] | None = None


@dataclass
class _Class:
    module: _Module
    node: ast.ClassDef
    bases: list[Any]  # _Class, or a str naming an opaque keras class, or "object"

    @property
    def key(self) -> tuple[str, str]:
        return (self.module.name, self.node.name)


_MODULES: dict[tuple[str, int], _Module] = {}
_READ: dict[tuple[str, tuple[tuple[str, int], ...]], StaticComponent | None] = {}


def read(target: str) -> StaticComponent | None:
    """The parameters, ``input_layouts`` and ``check_recipe`` of the class an entry point names
    (``"package.module:Class"``), read without importing it; None when not resolved exactly."""
    module_name, _, attr = target.partition(":")
    if not attr or "." in attr:
        return None
    try:
        module = _module(module_name)
        cls = _class_named(module, attr, 0)
        if cls is None:
            return None
        mro = _linearize(cls, 0)
        files = tuple(sorted({(str(c.module.path), c.module.path.stat().st_mtime_ns) for c in mro if _static(c)}))
        key = (target, files)
        if key not in _READ:
            _READ[key] = _read_class(cls, mro)
        return _READ[key]
    except Exception:  # noqa: BLE001 - whatever stops the reader, importing the class decides
        return None


# -- locating and parsing modules ------------------------------------------------------------


def _locate(fullname: str) -> Any:
    """The module spec of ``fullname`` found as the import system would, running no package code."""
    if fullname in sys.modules:
        return getattr(sys.modules[fullname], "__spec__", None)
    parent, _, _ = fullname.rpartition(".")
    path = None
    if parent:
        if parent in sys.modules:
            path = getattr(sys.modules[parent], "__path__", None)
        else:
            spec = _locate(parent)
            path = spec.submodule_search_locations if spec is not None else None
        if path is None:
            return None
    for finder in sys.meta_path:
        # the CLI's TensorFlow quieter acts on being asked (it removes itself); it never finds a component
        if type(finder).__module__ == "mmkeras.cli" or not hasattr(finder, "find_spec"):
            continue
        spec = finder.find_spec(fullname, path)
        if spec is not None:
            return spec
    return None


def _module(name: str) -> _Module:
    spec = _locate(name)
    origin = getattr(spec, "origin", None)
    if spec is None or not origin or not origin.endswith(".py") or spec.loader is None:
        raise _Unresolved(name)
    path = Path(origin)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _MODULES:
        _MODULES[key] = _parse(name, path, spec.submodule_search_locations is not None)
    return _MODULES[key]


def _parse(name: str, path: Path, is_package: bool) -> _Module:
    tree = ast.parse(path.read_bytes(), str(path))
    package = name if is_package else name.rpartition(".")[0]
    imports: dict[str, tuple[str, str | None]] = {}
    classes: dict[str, ast.ClassDef] = {}
    future = star = False
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    imports[alias.asname] = (alias.name, None)
                else:  # `import a.b` binds `a`
                    root = alias.name.partition(".")[0]
                    imports[root] = (root, None)
                _require(alias.name.partition(".")[0])
        elif isinstance(stmt, ast.ImportFrom):
            source = _absolute(stmt, package)
            future = future or source == "__future__" and any(a.name == "annotations" for a in stmt.names)
            if source != "__future__":
                _require(source if stmt.level else source.partition(".")[0])
            for alias in stmt.names:
                if alias.name == "*":
                    star = True
                else:
                    imports[alias.asname or alias.name] = _origin(source, alias.name)
        elif isinstance(stmt, ast.ClassDef):
            classes[stmt.name] = stmt
    return _Module(name, path, tree, future, imports, classes, _bindings(tree.body), star)


def _origin(source: str, attr: str) -> tuple[str, str]:
    """Where ``from source import attr`` really takes ``attr`` from: the plugin API (``mmkeras.plugin``)
    re-exports names lazily, so its own source defines none of them."""
    if source == PLUGIN_API:
        from mmkeras.plugin import _WHERE

        module = _WHERE.get(attr)
        if module is not None:
            parent, _, last = module.rpartition(".")
            return (parent, last) if last == attr else (module, attr)
    return source, attr


def _require(module: str) -> None:
    """A module imported at top level that cannot be found: importing would fail, so let it fail there."""
    if _locate(module) is None:
        raise _Unresolved(f"{module} is not installed")


def _absolute(stmt: ast.ImportFrom, package: str) -> str:
    if not stmt.level:
        return stmt.module or ""
    parts = package.split(".")
    if stmt.level - 1 > len(parts) - 1:
        raise _Unresolved("relative import beyond the top-level package")
    base = ".".join(parts[: len(parts) - (stmt.level - 1)])
    return f"{base}.{stmt.module}" if stmt.module else base


def _bindings(body: list[ast.stmt]) -> dict[str, int]:
    """Top-level name -> how many statements bind it (function and class bodies not entered)."""
    counts: dict[str, int] = {}

    def bind(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(node.name)
            for part in _executed_parts(node):
                if not (isinstance(node, ast.ClassDef) and part in node.body):  # a class body binds in its own scope
                    visit(part)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bind(alias.asname or alias.name.partition(".")[0])
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bind(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bind(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for n in node.names:
                bind(n)
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.Lambda):
                visit(child)

    for stmt in body:
        visit(stmt)
    return counts


def _executed_parts(node: ast.AST) -> list[ast.AST]:
    """What runs when a ``def`` or ``class`` statement runs: decorators, defaults, bases (and a class body)."""
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *node.keywords, *node.body]
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    defaults = [d for d in (*node.args.defaults, *node.args.kw_defaults) if d is not None]
    return [*node.decorator_list, *defaults]


# -- classes and their bases -----------------------------------------------------------------


def _class_named(module: _Module, name: str, depth: int) -> _Class | None:
    """The class ``module.name``: defined there, or imported there from another module."""
    if depth > _MAX_DEPTH or module.star or module.bound.get(name, 0) != 1:
        raise _Unresolved(f"{module.name}.{name}")
    if name in module.classes:
        node = module.classes[name]
        _check_untouched(module, node)
        bases = [_base(module, b, depth + 1) for b in node.bases] or ["object"]
        return _Class(module, node, bases)
    if name in module.imports:
        source, attr = module.imports[name]
        if attr is None:
            raise _Unresolved(f"{name} is a module")
        if _is_keras(source):
            raise _Unresolved("a keras class as the component itself")
        return _class_named(_module_or_submodule(source, attr), attr, depth + 1)
    return None


def _module_or_submodule(source: str, attr: str) -> _Module:
    module = _module(source)
    if attr not in module.bound and _locate(f"{source}.{attr}") is not None:
        raise _Unresolved(f"{source}.{attr} is a submodule")
    return module


def _is_keras(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


def _dotted(module: _Module, expr: ast.expr) -> str | None:
    """``a.b.C`` with ``a`` resolved through the module's imports to a dotted path; None if not an import."""
    attrs: list[str] = []
    while isinstance(expr, ast.Attribute):
        attrs.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name) or expr.id not in module.imports or module.bound.get(expr.id) != 1:
        return None
    source, attr = module.imports[expr.id]
    root = f"{source}.{attr}" if attr else source
    return ".".join([root, *reversed(attrs)])


def _base(module: _Module, expr: ast.expr, depth: int) -> Any:
    if isinstance(expr, ast.Name) and expr.id == "object" and "object" not in module.bound:
        return "object"
    if isinstance(expr, ast.Name) and expr.id in module.classes:
        return _class_named(module, expr.id, depth)
    dotted = _dotted(module, expr)
    if dotted is None:
        raise _Unresolved(ast.unparse(expr))
    if _is_keras(dotted):
        return dotted
    if isinstance(expr, ast.Name):  # `from m import C`
        found = _class_named(module, expr.id, depth)
    else:  # `import m` ... `m.C`
        owner, attr = _origin(*dotted.rpartition(".")[::2])
        found = _class_named(_module(owner), attr, depth)
    if found is None:
        raise _Unresolved(dotted)
    return found


def _check_untouched(module: _Module, node: ast.ClassDef) -> None:
    """The class as its ``class`` statement made it: no unknown decorator, keyword or metaclass, and
    no top-level statement that passes it to a call, assigns to it or to its attributes."""
    if node.keywords:
        raise _Unresolved(f"{node.name} has class keywords")
    for deco in node.decorator_list:
        call = deco.func if isinstance(deco, ast.Call) else None
        if call is None or _dotted(module, call) not in _SERIALIZABLE:
            raise _Unresolved(f"{node.name} has decorator {ast.unparse(deco)}")
    for stmt in module.tree.body:
        if stmt is node:
            continue
        for sub in _import_time_nodes(stmt):
            if isinstance(sub, ast.Call):
                args = [sub.func, *sub.args, *(k.value for k in sub.keywords)]
                if any(isinstance(n, ast.Name) and n.id == node.name for a in args for n in ast.walk(a)):
                    raise _Unresolved(f"{node.name} is passed to a call at import time")
            if isinstance(sub, (ast.Attribute, ast.Subscript)) and isinstance(sub.ctx, (ast.Store, ast.Del)):
                root = sub
                while isinstance(root, (ast.Attribute, ast.Subscript)):
                    root = root.value
                if isinstance(root, ast.Name) and root.id == node.name:
                    raise _Unresolved(f"{node.name} is changed at import time")


def _import_time_nodes(node: ast.AST) -> list[ast.AST]:
    """Every node of ``node`` that runs when its module is imported (function bodies do not)."""
    out: list[ast.AST] = []
    todo = [node]
    while todo:
        current = todo.pop()
        out.append(current)
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            todo.extend(_executed_parts(current))
        elif not isinstance(current, ast.Lambda):
            todo.extend(ast.iter_child_nodes(current))
    return out


def _static(c: Any) -> bool:
    return isinstance(c, _Class)


def _linearize(cls: _Class, depth: int) -> list[Any]:
    """The C3 method resolution order; a keras class is one opaque step followed by ``object``."""
    if depth > _MAX_DEPTH:
        raise _Unresolved("too deep")
    seqs = []
    for b in cls.bases:
        if _static(b):
            seqs.append(_linearize(b, depth + 1))
        elif b == "object":
            seqs.append(["object"])
        else:
            seqs.append([b, "object"])
    seqs.append(list(cls.bases))
    out: list[Any] = [cls]
    ident = _identity
    seqs = [list(s) for s in seqs if s]
    while seqs:
        for seq in seqs:
            head = seq[0]
            if not any(ident(head) in [ident(x) for x in s[1:]] for s in seqs):
                break
        else:
            raise _Unresolved(f"no consistent method resolution order for {cls.node.name}")
        out.append(head)
        seqs = [s[1:] if ident(s[0]) == ident(head) else s for s in seqs]
        seqs = [s for s in seqs if s]
    opaque = {ident(c) for c in out if not _static(c) and c != "object"}
    if len(opaque) > 1:
        raise _Unresolved("several keras bases: their order is not known without importing")
    return out


def _identity(c: Any) -> Any:
    return c.key if _static(c) else c


def _defines(c: _Class, attr: str) -> ast.stmt | None:
    """The statement of ``c``'s body that binds ``attr``; raises when bound in a way not read here."""
    found = []
    for stmt in c.node.body:
        names = _bindings([stmt])
        if attr not in names:
            continue
        simple = (
            isinstance(stmt, (ast.FunctionDef, ast.Assign, ast.AnnAssign))
            and names == {attr: 1}
            and not (isinstance(stmt, ast.Assign) and len(stmt.targets) != 1)
        )
        if not simple:
            raise _Unresolved(f"{c.node.name}.{attr} is bound in a way the reader does not follow")
        found.append(stmt)
    if len(found) > 1:
        raise _Unresolved(f"{c.node.name}.{attr} is bound twice")
    return found[0] if found else None


def _lookup(mro: list[Any], attr: str) -> tuple[Any, ast.stmt | None]:
    """(the class in ``mro`` that provides ``attr``, its statement); (keras base or "object", None) if none does."""
    for c in mro:
        if not _static(c):
            return c, None
        stmt = _defines(c, attr)
        if stmt is not None and not (isinstance(stmt, ast.AnnAssign) and stmt.value is None):
            return c, stmt
    return "object", None


# -- reading the class -----------------------------------------------------------------------


def _read_class(cls: _Class, mro: list[Any]) -> StaticComponent:
    for c in mro:
        # Component's hook only wraps __init__ with a check that keeps its signature
        if _static(c) and c.key != ("mmkeras.component", "Component") and _defines(c, "__init_subclass__") is not None:
            raise _Unresolved(f"{c.node.name} defines __init_subclass__")
    owner, init = _lookup(mro, "__init__")
    params: list[tuple[str, Any, Any]] = []
    docs: dict[str, str] = {}
    # registry.parameters: an __init__ from a module named keras* takes only Keras's base-class arguments
    if init is not None and not owner.module.name.startswith("keras"):
        if not isinstance(init, ast.FunctionDef) or init.decorator_list:
            raise _Unresolved("__init__ is not a plain function")
        params = _init_params(owner, init)
        if params:
            docs = parameter_docs_from(_class_doc(mro), _init_doc(owner, init))
    _, layouts = _lookup(mro, "input_layouts")
    input_layouts = None
    if layouts is not None:
        value = layouts.value if isinstance(layouts, (ast.Assign, ast.AnnAssign)) else None
        if value is None:
            raise _Unresolved("input_layouts is not a value")
        input_layouts = ast.literal_eval(value)
    hook_owner, hook = _lookup(mro, "check_recipe")
    check = None
    if hook is not None:
        where = KNOWN_HOOKS.get(hook_owner.key)
        if where is None:
            raise _Unresolved(f"check_recipe is defined by {hook_owner.node.name}")
        module, _, func = where.partition(":")
        check = getattr(importlib.import_module(module), func)
    return StaticComponent(cls.node.name, params, docs, input_layouts, check)


def _class_doc(mro: list[Any]) -> str | None:
    for c in mro:
        if c == "object":
            return None
        if not _static(c):
            raise _Unresolved("the class docstring would come from keras")
        doc = ast.get_docstring(c.node)
        if doc is not None:
            return doc
    return None


def _init_doc(owner: _Class, init: ast.FunctionDef) -> str | None:
    """``inspect.getdoc(cls.__init__)``: its own docstring, else that of the ``__init__`` each class of
    its owner's order provides. Keras's ``__init__`` docstrings have no ``Args:`` section (the parity
    test checks this for every registered component), so reaching one ends the search."""
    doc = ast.get_docstring(init)
    if doc is not None:
        return doc
    for c in _linearize(owner, 0)[1:]:
        if not _static(c):
            return None
        provider, stmt = _lookup(_linearize(c, 0), "__init__")
        if stmt is None:
            return None
        doc = ast.get_docstring(stmt)  # type: ignore[arg-type]
        if doc is not None:
            return doc
    return None


def _init_params(owner: _Class, init: ast.FunctionDef) -> list[tuple[str, Any, Any]]:
    args = init.args
    positional = [*args.posonlyargs, *args.args]
    defaults: dict[str, Any] = {}
    for a, d in zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True):
        defaults[a.arg] = _literal(owner.module, d)
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if d is not None:
            defaults[a.arg] = _literal(owner.module, d)
    every = [*positional, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a is not None)]
    annotations = {a.arg: a.annotation for a in every if a.annotation is not None}
    if init.returns is not None:
        annotations["return"] = init.returns
    hints = _hints(owner, annotations) if annotations else {}
    return [
        (a.arg, hints.get(a.arg, Any), defaults.get(a.arg, inspect.Parameter.empty))
        for a in [*args.args, *args.kwonlyargs]
        if a.arg != "self"
    ]


_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}


def _literal(module: _Module, node: ast.expr, depth: int = 0) -> Any:
    """A default's value: a literal, arithmetic on numbers (``3 / 4``), or a module constant bound
    once to such a value (``DEFAULT_FILENAME``)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if depth > _MAX_DEPTH:
        raise _Unresolved("too deep")
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_literal(module, e, depth + 1) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _literal(module, node.left, depth + 1), _literal(module, node.right, depth + 1)
        if all(type(v) in (int, float) for v in (left, right)):
            return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.Name) and module.bound.get(node.id) == 1:
        for stmt in module.tree.body:
            if (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id == node.id
            ):
                value = _literal(module, stmt.value, depth + 1)
                if _immutable(value):  # a list or dict constant could be changed before the class uses it
                    return value
    raise _Unresolved(f"default {ast.unparse(node)} is not a literal")


def _immutable(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(v) for v in value)
    return value is None or isinstance(value, (str, bytes, int, float, complex, bool))


def _hints(owner: _Class, annotations: dict[str, ast.expr]) -> dict[str, Any]:
    """``typing.get_type_hints(__init__, include_extras=True)``, evaluated in the safe namespace."""
    namespace = _namespace(owner.module)
    class_names = set(_bindings(owner.node.body))
    values: dict[str, Any] = {}
    for name, node in annotations.items():
        source = ast.unparse(node)
        if owner.module.future_annotations:
            values[name] = source  # as the compiler stores it; get_type_hints evaluates it below
            continue
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if used & class_names:  # evaluated in the class body, where the class's own names are visible
            raise _Unresolved("an annotation names a class attribute")
        try:
            values[name] = eval(source, namespace)  # noqa: S307 - installed code, as importing it would run
        except Exception as exc:
            raise _Unresolved(source) from exc
    func = types.FunctionType(compile("def f(): pass", "<static>", "exec").co_consts[0], namespace)
    func.__annotations__ = values
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise _Unresolved("an annotation does not resolve in the safe namespace") from exc


def _plugin_api_types() -> types.SimpleNamespace:
    """The plugin API's names that come from :data:`SAFE_MODULES` (the parameter types), for annotations."""
    from mmkeras.plugin import _WHERE

    return types.SimpleNamespace(
        **{
            name: getattr(importlib.import_module(module), name)
            for name, module in _WHERE.items()
            if module in SAFE_MODULES
        }
    )


def _namespace(module: _Module) -> dict[str, Any]:
    """Builtins not shadowed by the module, and the names it imports once from :data:`SAFE_MODULES`."""
    if module.namespace is None:
        ns: dict[str, Any] = {
            k: v for k, v in vars(builtins).items() if k not in module.bound and not k.startswith("__")
        }
        ns["__builtins__"] = {}  # only the names above: a name bound in the module is not a builtin
        for local, (source, attr) in module.imports.items():
            if module.bound.get(local) != 1:
                continue
            if attr is None and source == PLUGIN_API:  # `import mmkeras.plugin as mm` ... `mm.PositiveInt`
                ns[local] = _plugin_api_types()
            elif attr is None and source in SAFE_MODULES:
                ns[local] = importlib.import_module(source)
            elif attr is not None and source in SAFE_MODULES:
                real = importlib.import_module(source)
                if hasattr(real, attr):
                    ns[local] = getattr(real, attr)
        module.namespace = ns
    return module.namespace
