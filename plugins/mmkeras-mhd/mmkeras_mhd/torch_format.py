"""PyTorch's ``torch.save`` files read (and written) with the standard library and numpy alone.

Two layouts exist, both pickles whose tensors point at raw storages through persistent ids:

- the zip format (the default since torch 1.6): a zip archive whose entries share one root folder:
  ``<root>/data.pkl`` pickles the object; each storage is the persistent id
  ``("storage", torch.<Dtype>Storage, key, location, numel)`` and its bytes are the entry
  ``<root>/data/<key>`` (``<root>/byteorder``, when present, says ``little`` or ``big``);
- the legacy format (torch < 1.6, or ``_use_new_zipfile_serialization=False``): pickles one after
  another: the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a dict of system
  information (``little_endian``, ...), the object (persistent ids with a sixth element, the view
  metadata ``(view_key, offset, numel)`` or None), the sorted list of storage keys, then per key an
  8-byte little-endian element count followed by the storage's raw bytes.

A tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
backward_hooks[, metadata])`` (offset and strides in elements). The reader rebuilds tensors as numpy
arrays and otherwise only tuples, lists, dicts, numbers, strings and numpy scalars/arrays: its
unpickler resolves a fixed table of names and refuses every other, so a file cannot run code. A
file in neither layout, or naming a torch construct outside the table (sparse or quantised
tensors, ...), is handed to ``torch.load(..., weights_only=True)`` when torch is installed.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mmkeras.plugin import DataError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
#: pickle protocol torch.save uses by default
PICKLE_PROTOCOL = 2

#: torch storage class -> the numpy dtype of its elements (BFloat16 is stored as uint16 and widened)
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
    "UntypedStorage": np.dtype("u1"),
}
#: numpy dtype -> the storage class a writer names
_WRITE_STORAGE = {
    np.dtype(name): storage
    for name, storage in [
        ("float64", "DoubleStorage"),
        ("float32", "FloatStorage"),
        ("float16", "HalfStorage"),
        ("int64", "LongStorage"),
        ("int32", "IntStorage"),
        ("int16", "ShortStorage"),
        ("int8", "CharStorage"),
        ("uint8", "ByteStorage"),
        ("bool", "BoolStorage"),
        ("complex64", "ComplexFloatStorage"),
        ("complex128", "ComplexDoubleStorage"),
    ]
}
#: torch dtype names that a pickle may hold as globals (tensor metadata); read back as their names
_TORCH_DTYPES = frozenset(
    "float64 float32 float16 bfloat16 int64 int32 int16 int8 uint8 bool complex64 complex128 "
    "double float half long int short".split()
)
#: numpy's own rebuilders (NumPy 1 and 2 module paths) and the bytes codec of protocol-2 pickles
_NUMPY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class UnsupportedTorchFile(DataError):
    """A file this reader cannot decode but ``torch.load`` might (another layout, a torch construct
    outside the table)."""


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass
class _Storage:
    """A storage named by a persistent id; ``array`` (1-D) is filled once its bytes are read."""

    type_name: str
    key: str
    numel: int
    array: np.ndarray | None = None


@dataclass
class _TensorStub:
    """A tensor met in the pickle, rebuilt into an array once every storage is read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: Any, offset: int, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None, meta: Any = None
) -> _TensorStub:
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any) -> _TensorStub:
    if not isinstance(storage, _Storage):
        raise DataError(f"a tensor's storage is a {type(storage).__name__}, expected a storage persistent id")
    return _TensorStub(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> Any:
    return data


def _rebuild_ordered_dict(*args: Any) -> dict:
    return dict(*args)


_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("collections", "OrderedDict"): _rebuild_ordered_dict,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage"),
    **{("torch", name): name for name in _TORCH_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    """Resolves only the names of :data:`_TORCH_GLOBALS` and numpy's rebuilders; storages come
    from ``storages`` (persistent id -> :class:`_Storage`)."""

    def __init__(self, file: BinaryIO, path: Path, where: str, persistent: Callable[[Any], Any] | None = None):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles' byte strings read as they were
        self.path, self.where, self.persistent = path, where, persistent

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TORCH_GLOBALS:
            return _TORCH_GLOBALS[module, name]
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        what = f"{self.path}: {self.where} names {module}.{name}"
        if module == "torch" or module.startswith("torch."):
            raise UnsupportedTorchFile(f"{what}, a torch construct this reader does not rebuild")
        raise DataError(f"{what}; only tensors, tuples, lists, dicts, numbers and strings are read, so it is refused")

    def persistent_load(self, pid: Any) -> Any:
        if self.persistent is None:
            raise DataError(f"{self.path}: {self.where} holds a persistent id {pid!r} where none is expected")
        return self.persistent(pid)


def _storage_from_pid(pid: Any, path: Path, size: int) -> tuple[str, str, int]:
    """(storage class, key, element count) of a persistent id of ``size`` elements (5 or 6)."""
    ok = isinstance(pid, tuple) and len(pid) == size and pid[0] in ("storage", b"storage")
    if not ok or not isinstance(pid[1], _StorageType):
        raise UnsupportedTorchFile(f"{path}: persistent id {pid!r} is not a storage reference")
    return pid[1].name, str(pid[2]), int(pid[4])


def _read_into(f: BinaryIO, array: np.ndarray, path: Path, what: str) -> None:
    view, got = memoryview(array).cast("B"), 0
    while got < view.nbytes:  # a read may return less than asked before the end
        n = f.readinto(view[got:])
        if not n:
            raise DataError(f"{path}: {what} holds {got} bytes, expected {view.nbytes}")
        got += n


def _widen(storage: _Storage, big_endian: bool) -> np.ndarray:
    """The storage's elements in native order; bfloat16 widened to float32."""
    array = storage.array
    assert array is not None
    if big_endian and array.dtype.itemsize > 1:
        array = array.byteswap()  # the bytes were read into a little-endian view
    if storage.type_name == "BFloat16Storage":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _as_array(t: _TensorStub, flat: np.ndarray, shared: bool, path: Path) -> np.ndarray:
    if len(t.size) != len(t.stride) or min(t.size, default=1) < 0 or min(t.stride, default=0) < 0:
        raise DataError(f"{path}: a tensor has size {t.size} and stride {t.stride}, which do not fit")
    n = int(np.prod(t.size, dtype=np.int64))
    if n == 0:
        return np.zeros(t.size, flat.dtype)
    last = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride))
    if t.offset < 0 or last >= len(flat):
        raise DataError(
            f"{path}: a tensor of size {t.size}, stride {t.stride} at offset {t.offset} reaches element {last} "
            f"of storage {t.storage.key}, which holds {len(flat)}"
        )
    contiguous = tuple(int(np.prod(t.size[i + 1 :], dtype=np.int64)) for i in range(len(t.size)))
    if t.stride == contiguous or n == 1:
        view = flat[t.offset : t.offset + n].reshape(t.size)
        # a tensor alone on its storage takes it as is; others copy, so no two arrays share memory
        return view.copy() if shared or n != len(flat) else view
    item = flat.dtype.itemsize
    strided = np.lib.stride_tricks.as_strided(flat[t.offset :], t.size, [s * item for s in t.stride], writeable=False)
    return strided.copy()


def _resolve(obj: Any, path: Path, big_endian: bool) -> Any:
    """``obj`` with every tensor stub replaced by a numpy array (storages already read)."""
    uses: collections.Counter[int] = collections.Counter()
    stack, seen = [obj], set()
    while stack:  # how many tensors use each storage
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, _TensorStub):
            uses[id(x.storage)] += 1
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    flats: dict[int, np.ndarray] = {}
    done: dict[int, Any] = {}

    def walk(x: Any) -> Any:
        if id(x) in done:
            return done[id(x)]
        if isinstance(x, _TensorStub):
            if id(x.storage) not in flats:
                flats[id(x.storage)] = _widen(x.storage, big_endian)
            out: Any = _as_array(x, flats[id(x.storage)], uses[id(x.storage)] > 1, path)
        elif isinstance(x, _Storage):
            out = _widen(x, big_endian).copy()
        elif isinstance(x, tuple):
            out = tuple(walk(v) for v in x)
        elif isinstance(x, list):
            out = []
            done[id(x)] = out
            out.extend(walk(v) for v in x)
        elif isinstance(x, dict):
            out = {}
            done[id(x)] = out
            out.update((k, walk(v)) for k, v in x.items())
        else:
            out = x
        done[id(x)] = out
        return out

    return walk(obj)


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        roots = [n[: -len("/data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(roots) != 1:
            raise UnsupportedTorchFile(f"{path}: a zip without exactly one <root>/data.pkl (found {len(roots)})")
        root = roots[0]
        big_endian = False
        if f"{root}/byteorder" in names:
            order = zf.read(f"{root}/byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise DataError(f"{path}: {root}/byteorder says {order!r}, expected 'little' or 'big'")
            big_endian = order == "big"
        storages: dict[str, _Storage] = {}

        def load(pid: Any) -> _Storage:
            type_name, key, numel = _storage_from_pid(pid, path, 5)
            if key not in storages:
                entry = f"{root}/data/{key}"
                if entry not in names:
                    raise DataError(f"{path}: data.pkl refers to storage {key!r} but the zip has no {entry}")
                storage = _Storage(type_name, key, numel)
                dtype = STORAGE_DTYPES[type_name]
                if type_name == "UntypedStorage":
                    numel = zf.getinfo(entry).file_size  # an untyped storage's numel is its bytes
                storage.array = np.empty(numel, dtype)
                with zf.open(entry) as f:
                    _read_into(f, storage.array, path, entry)
                storages[key] = storage
            return storages[key]

        with zf.open(f"{root}/data.pkl") as f:
            obj = _Unpickler(f, path, f"{root}/data.pkl", load).load()
    return _resolve(obj, path, big_endian)


def _read_legacy(path: Path, f: BinaryIO) -> Any:
    if _Unpickler(f, path, "the first pickle").load() != LEGACY_MAGIC:
        raise UnsupportedTorchFile(f"{path}: neither a zip nor a legacy torch file (no magic number first)")
    protocol = _Unpickler(f, path, "the legacy protocol pickle").load()
    if protocol != LEGACY_PROTOCOL:
        raise UnsupportedTorchFile(f"{path}: legacy torch protocol {protocol!r}, expected {LEGACY_PROTOCOL}")
    sys_info = _Unpickler(f, path, "the legacy system information pickle").load()
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    storages: dict[str, _Storage] = {}
    views: dict[str, tuple[_Storage, str, int]] = {}

    def load(pid: Any) -> _Storage:
        type_name, key, numel = _storage_from_pid(pid, path, 6)
        if key not in storages:
            storages[key] = _Storage(type_name, key, numel)
        if pid[5] is None:
            return storages[key]
        view_key, offset, view_numel = pid[5]  # a storage that is a slice of another (torch < 0.4)
        if str(view_key) not in views:
            views[str(view_key)] = (_Storage(type_name, str(view_key), int(view_numel)), key, int(offset))
        return views[str(view_key)][0]

    obj = _Unpickler(f, path, "the legacy object pickle", load).load()
    keys = _Unpickler(f, path, "the legacy storage key list").load()
    if not isinstance(keys, list):
        raise DataError(f"{path}: the legacy storage key list is a {type(keys).__name__}, expected a list")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise DataError(f"{path}: storage key {key!r} is listed but no tensor uses it")
        count = np.frombuffer(f.read(8), "<i8")
        if len(count) != 1 or int(count[0]) != storage.numel:
            found = int(count[0]) if len(count) else "nothing"
            raise DataError(f"{path}: storage {key!r} announces {found} elements, expected {storage.numel}")
        storage.array = np.empty(storage.numel, STORAGE_DTYPES[storage.type_name])
        _read_into(f, storage.array, path, f"storage {key!r}")
    for view, root_key, offset in views.values():
        root = storages[root_key].array
        if root is not None:
            view.array = root[offset : offset + view.numel]
    missing = [s.key for s in [*storages.values(), *(v[0] for v in views.values())] if s.array is None]
    if missing:
        raise DataError(f"{path}: storages {missing} are used but not in the storage key list")
    return _resolve(obj, path, big_endian)


def _torch_load(path: Path, why: Exception) -> Any:
    try:
        import torch
    except ImportError:
        raise DataError(
            f"{why}; `pip install torch` lets mmkeras read it (torch is needed only for such files)"
        ) from why
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; the user gets one line
        raise DataError(f"{path}: torch.load could not read it either ({type(exc).__name__}: {exc})") from exc

    def to_numpy(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
        if isinstance(x, (tuple, list)):
            return type(x)(to_numpy(v) for v in x) if isinstance(x, list) else tuple(to_numpy(v) for v in x)
        if isinstance(x, dict):
            return {k: to_numpy(v) for k, v in x.items()}
        return x

    return to_numpy(obj)


def read_torch(path: str | os.PathLike[str]) -> Any:
    """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays (bfloat16 as float32).

    Raises :class:`DataError` naming the file when it is missing, truncated, names anything but
    tensors and plain containers, or (torch not installed) is in a layout this reader does not know.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        try:
            if zipfile.is_zipfile(path):
                return _read_zip(path)
            with open(path, "rb") as f:
                return _read_legacy(path, f)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError, zipfile.BadZipFile) as exc:
            raise UnsupportedTorchFile(f"{path}: not a readable torch file ({type(exc).__name__}: {exc})") from exc
    except UnsupportedTorchFile as exc:
        return _torch_load(path, exc)


# ---------------------------------------------------------------------------------------------
# Writing (stand-in files and tests): the zip layout torch.save writes, and the legacy one
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TorchTensor:
    """A tensor to write as a view of a flat ``storage``: ``size`` and ``stride`` in elements from
    ``offset``; ``storage_type`` overrides the class named for the storage (e.g. "BFloat16Storage"
    for uint16 bit patterns). Two tensors on the same storage array object share one storage."""

    storage: np.ndarray
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    storage_type: str | None = None


class _StorageRef:
    def __init__(self, array: np.ndarray, type_name: str, key: str):
        self.array, self.type_name, self.key = array, type_name, key


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


class _TensorRef:
    def __init__(self, storage: _StorageRef, t: TorchTensor):
        self.storage, self.t = storage, t


class _Writer(pickle._Pickler):  # the pure-Python pickler: its dispatch table takes torch's globals and tensors
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: BinaryIO, persistent: Callable[[Any], Any]):
        super().__init__(file, protocol=PICKLE_PROTOCOL)
        self._persistent = persistent

    def persistent_id(self, obj: Any) -> Any:
        return self._persistent(obj)

    def _save_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_tensor(self, obj: _TensorRef) -> None:
        t = obj.t
        self.save(_REBUILD_TENSOR)
        self.save((obj.storage, t.offset, tuple(t.size), tuple(t.stride), False, collections.OrderedDict()))
        self.write(pickle.REDUCE)
        self.memoize(obj)

    dispatch[_Global] = _save_global
    dispatch[_TensorRef] = _save_tensor


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")


def _prepare(obj: Any) -> tuple[Any, list[_StorageRef]]:
    """``obj`` with arrays and :class:`TorchTensor` s replaced by tensor references, and the storages."""
    storages: dict[int, _StorageRef] = {}

    def storage(array: np.ndarray, type_name: str | None) -> _StorageRef:
        if id(array) not in storages:
            flat = np.ascontiguousarray(array).reshape(-1)
            name = type_name or _WRITE_STORAGE.get(flat.dtype.newbyteorder("="))
            if name is None:
                raise ValueError(f"no torch storage holds dtype {flat.dtype}")
            storages[id(array)] = _StorageRef(flat.astype(STORAGE_DTYPES[name], copy=False), name, str(len(storages)))
        return storages[id(array)]

    def walk(x: Any) -> Any:
        if isinstance(x, TorchTensor):
            return _TensorRef(storage(x.storage, x.storage_type), x)
        if isinstance(x, np.ndarray):
            size = tuple(x.shape)
            stride = tuple(int(np.prod(size[i + 1 :], dtype=np.int64)) for i in range(len(size)))
            return _TensorRef(storage(x, None), TorchTensor(x, 0, size, stride))
        if isinstance(x, tuple):
            return tuple(walk(v) for v in x)
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x

    return walk(obj), list(storages.values())


def write_torch(path: str | os.PathLike[str], obj: Any, legacy: bool = False, root: str = "archive") -> None:
    """Write ``obj`` (tuples, lists, dicts, numbers, strings, numpy arrays as tensors, :class:`TorchTensor`)
    in torch's zip layout under ``<root>/`` (``legacy``: the pre-1.6 stream of pickles)."""
    prepared, storages = _prepare(obj)

    def pid(x: Any) -> Any:
        if not isinstance(x, _StorageRef):
            return None
        head = ("storage", _Global("torch", x.type_name), x.key, "cpu", len(x.array))
        return head + (None,) if legacy else head

    body = io.BytesIO()
    _Writer(body, pid).dump(prepared)
    with open(path, "wb") as f:
        if legacy:
            for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL, "little_endian": True}):
                pickle.dump(header, f, protocol=PICKLE_PROTOCOL)
            f.write(body.getvalue())
            pickle.dump(sorted(s.key for s in storages), f, protocol=PICKLE_PROTOCOL)
            for s in sorted(storages, key=lambda s: s.key):
                f.write(np.array([len(s.array)], "<i8").tobytes() + s.array.tobytes())
            return
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(f"{root}/data.pkl", body.getvalue())
            zf.writestr(f"{root}/byteorder", "little")
            for s in storages:
                zf.writestr(f"{root}/data/{s.key}", s.array.tobytes())
            zf.writestr(f"{root}/version", "3\n")
