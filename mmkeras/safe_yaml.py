"""YAML for recipes, safe against hostile input.

A recipe is small, plain data. This loader reads only that and refuses everything else with one
line naming the file and line, before memory or time run out:

- only regular files, at most :data:`MAX_BYTES` read (a FIFO, a device or ``/dev/zero`` is refused
  before it is read), UTF-8 text only;
- only the plain core tags (str, int, float, bool, null, map, seq): no ``!!python/...``, no custom
  tags, no timestamps or binary (a date-like scalar stays a string);
- keys are scalars; no duplicate keys; no ``<<`` merge keys (recipes use ``extends:``);
- at most :data:`MAX_DEPTH` levels of nesting and :data:`MAX_NODES` values, counted as aliases are
  expanded, so an alias bomb ("billion laughs") fails after a bounded amount of work;
- no recursive aliases.

Every failure is a :class:`~mmkeras.errors.RecipeError`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from mmkeras.errors import RecipeError

#: the largest recipe file read, in bytes
MAX_BYTES = 1 << 20
#: the deepest nesting of mappings and lists
MAX_DEPTH = 64
#: the most values (scalars, mappings, lists) once aliases are expanded; shipped recipes hold < 300
MAX_NODES = 20_000

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null")}
_MAP_TAG = _CORE + "map"
_SEQ_TAG = _CORE + "seq"
_MERGE_TAG = _CORE + "merge"

KeyPath = tuple[Any, ...]


class InvalidYAML(RecipeError):
    """Text that is not YAML at all (a syntax error), as opposed to YAML this loader refuses."""


def _kind(st: os.stat_result) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    for test, words in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return words
    return "a special file"


def shown(path: Path | str) -> str:
    """A path for a message: as is, or quoted with escapes when it holds a NUL or control character."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def read_text(path: Path | str, where: str | None = None, max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes.

    ``where`` is the place that named the file (``FILE:LINE: extends``): a file that cannot be
    opened is reported there; a problem with its content is reported at the file itself.
    """

    def refuse(problem: str) -> RecipeError:
        return RecipeError([f"{where}: {problem}: {shown(path)}" if where else f"{shown(path)}: {problem}"])

    try:
        st = os.stat(path)  # stat first: opening a FIFO blocks, reading a device never ends
        kind = _kind(st)
        if kind:
            raise refuse(f"{kind}, not a regular file")
        # O_NONBLOCK and fstat: the path may have been swapped for a FIFO since the stat
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise refuse("file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise refuse(f"cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        kind = _kind(os.fstat(fd))
        if kind:
            raise refuse(f"{kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise refuse(f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise RecipeError([f"{shown(path)}: larger than {max_bytes} bytes; a recipe is a small text file"])
    return decode(b"".join(chunks), shown(path))


def decode(data: bytes, filename: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped), or a RecipeError naming the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(
            [f"{filename}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"]
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


class _Loader(yaml.SafeLoader):
    """SafeLoader's scanner and parser; a composer bounded in depth and node count; the implicit
    resolvers of the core schema only (a timestamp-like or ``=`` scalar stays a string)."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag in _SCALAR_TAGS or tag == _MERGE_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str, filename: str) -> None:
        super().__init__(stream)
        self.filename = filename
        self.depth = 0
        self.count = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        mark = self.peek_event().start_mark
        self.count += 1
        if self.count > MAX_NODES:
            raise RecipeError([f"{self.filename}:{mark.line + 1}: more than {MAX_NODES} values; a recipe is small"])
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RecipeError([f"{self.filename}:{mark.line + 1}: nested more than {MAX_DEPTH} levels deep"])
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _yaml_problem(exc: yaml.YAMLError, text: str, filename: str) -> str:
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: no mark, a character offset
        line = text.count("\n", 0, exc.position) + 1
        return f"{filename}:{line}: invalid YAML: control character #x{exc.character:04x} is not allowed"
    mark = getattr(exc, "problem_mark", None)
    where = f"{filename}:{mark.line + 1}" if mark else filename
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}: invalid YAML: {problem}"


def _fmt(path: KeyPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _short(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def compose(text: str, filename: str) -> tuple[Any, dict[KeyPath, str]]:
    """Python data from YAML ``text``, and where each key path came from (``FILE:LINE``).

    An empty document is ``None``. Raises :class:`RecipeError` (:class:`InvalidYAML` for syntax).
    """
    loader = None
    try:
        loader = _Loader(text, filename)  # the reader checks for control characters here
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise InvalidYAML([_yaml_problem(exc, text, filename)]) from None
    except RecursionError:  # bounded by MAX_DEPTH; kept as a last line of defence
        raise RecipeError([f"{filename}: nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    assert loader is not None
    lines: dict[KeyPath, str] = {}
    if node is None:
        return None, lines
    count = 0
    active: set[int] = set()  # nodes being built: meeting one again is a recursive alias

    def at(n: yaml.Node) -> str:
        return f"{filename}:{n.start_mark.line + 1}"

    def refuse(n: yaml.Node, path: KeyPath, problem: str) -> RecipeError:
        return RecipeError([f"{at(n)}: {_fmt(path) + ': ' if path else ''}{problem}"])

    def scalar(n: yaml.ScalarNode, path: KeyPath) -> Any:
        if n.tag not in _SCALAR_TAGS:
            raise refuse(n, path, f"tag {_short(n.tag)} is not allowed (plain strings, numbers, booleans, null only)")
        try:
            return loader.construct_object(n, deep=True)
        except Exception as exc:  # noqa: BLE001 - e.g. `!!int abc`, an integer of 5000 digits
            raise refuse(n, path, f"cannot read {n.value[:40]!r} as {_short(n.tag)}: {exc}") from None

    def build(n: yaml.Node, path: KeyPath) -> Any:
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise refuse(n, path, f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)")
        if len(path) >= MAX_DEPTH:
            raise refuse(n, path, f"nested more than {MAX_DEPTH} levels deep (through aliases)")
        lines[path] = at(n)
        if isinstance(n, yaml.ScalarNode):
            return scalar(n, path)
        if id(n) in active:
            raise refuse(n, path, "recursive alias (an anchor used inside itself)")
        expected = _MAP_TAG if isinstance(n, yaml.MappingNode) else _SEQ_TAG
        if n.tag != expected:
            raise refuse(n, path, f"tag {_short(n.tag)} is not allowed here")
        active.add(id(n))
        try:
            if isinstance(n, yaml.SequenceNode):
                return [build(v, path + (i,)) for i, v in enumerate(n.value)]
            out: dict[Any, Any] = {}
            for k, v in n.value:
                if not isinstance(k, yaml.ScalarNode):
                    what = "a mapping" if isinstance(k, yaml.MappingNode) else "a list"
                    raise refuse(k, path, f"a key must be a plain value, got {what}")
                if k.tag == _MERGE_TAG:
                    raise refuse(k, path, "merge keys (<<) are not supported; use extends: or an alias")
                key = scalar(k, path)
                if key in out:
                    raise refuse(k, path + (key,), "duplicate key")
                out[key] = build(v, path + (key,))
                lines[path + (key,)] = at(k)
            return out
        finally:
            active.discard(id(n))

    return build(node, ()), lines


def loads(text: str, filename: str) -> Any:
    """Python data from YAML text (see :func:`compose`)."""
    return compose(text, filename)[0]


def load_file(path: Path | str) -> Any:
    """Python data from a YAML file (see :func:`read_text` and :func:`compose`)."""
    return compose(read_text(path), str(path))[0]
