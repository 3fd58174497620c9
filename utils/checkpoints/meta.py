"""Read a checkpoint's structure (keys, scalars, tensor shapes) without building tensors or running its code.

Deciding how to start from a file, and listing a run folder, needs key names, a few scalars and one tensor's
shape. `torch.load(weights_only=True, mmap=True)` reads no tensor data either, but still builds every tensor
object: about half a second per full-size XTTS training checkpoint (~3500 tensors). Here only the file's
`data.pkl` is unpickled, with stand-ins for everything: tensors become TensorMeta (shape, dtype, and where the
bytes are, so a scalar can be read on demand), objects become ObjectRecord, and no class or function of the
file's choosing is imported or called. Globals outside what torch's weights_only loader and our coqui config
allowlist permit are refused, so a file is refused here exactly when a real load would refuse it. What the
file may make us build is capped (its pickle's size, bytearray sizes, storages larger than their records), so a
small hostile file cannot allocate gigabytes; every full load runs this read first (utils/checkpoints/read.py).
"""

from __future__ import annotations

import collections
import functools
import io
import math
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.checkpoints.keys import ALLOWED_CONFIG_NAMES

# What a checkpoint's pickle may make the reader build. A full-size XTTS training checkpoint's data.pkl is about
# 2 MB; nothing in a checkpoint is a bytearray built from a size (pickle writes bytearray(b"..."), bounded by the
# pickle itself).
MAX_PICKLE_BYTES = 32 * 1024 * 1024
MAX_BUILT_BYTES = 1024 * 1024


class RefusedGlobal(pickle.UnpicklingError):
    """The file names a class or function that a weights_only load would refuse."""


class RefusedStructure(pickle.UnpicklingError):
    """The file's structure is not a checkpoint's: it would make a load build more than any checkpoint needs, or
    its archive holds what torch and this reader would read differently (two pickles, a name twice)."""


def _capped_bytearray(source: Any = b"", *args: Any) -> bytearray:
    """bytearray as a weights_only load rebuilds it, refusing one built from a size (a few bytes of pickle asking
    for gigabytes)."""
    if isinstance(source, int) and source > MAX_BUILT_BYTES:
        raise RefusedStructure(f"bytearray({source}) asks for more than {MAX_BUILT_BYTES} bytes")
    return bytearray(source, *args)


class _Archive:
    """The checkpoint's zip, opened on the first value() and then kept open for the others (one parse of its
    directory, not one per scalar); closed when the last TensorMeta of the read goes away."""

    def __init__(self, path: Path, big_endian: bool) -> None:
        self.path, self.big_endian = path, big_endian
        self._zip: zipfile.ZipFile | None = None

    def read(self, record: str, start: int, size: int) -> bytearray:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        with self._zip.open(record) as f:
            f.seek(start)
            return bytearray(f.read(size))

    def __del__(self) -> None:
        if self._zip is not None:
            self._zip.close()


@dataclass
class TensorMeta:
    """A tensor's shape and dtype, read from the pickle; its data stays in the file until `value()` is asked."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    record: str  # the zip entry holding the storage
    offset: int  # in elements, into the storage
    archive: _Archive = field(repr=False, compare=False)

    def numel(self) -> int:
        return math.prod(self.shape)

    def value(self) -> float | int | bool:
        """The number a one-element tensor holds (e.g. an optimizer's `step`); reads just its bytes."""
        if self.numel() != 1:
            raise ValueError(f"value() of a tensor of shape {self.shape}")
        size = self.dtype.itemsize
        raw = self.archive.read(self.record, self.offset * size, size)
        if self.archive.big_endian:
            raw.reverse()  # one element: reversing its bytes is the byte swap
        return torch.frombuffer(raw, dtype=self.dtype).item()

    def __int__(self) -> int:
        return int(self.value())

    def __float__(self) -> float:
        return float(self.value())


class ObjectRecord:
    """Any pickled object (a coqui config, ...): its class name and pickled state, nothing of its code."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> ObjectRecord:
        obj = super().__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


def _record_type(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1], (ObjectRecord,), {"qualname": qualname})


@functools.cache
def _allowed_globals() -> frozenset[str]:
    """What a weights_only load accepts: torch's defaults plus the coqui config classes we allow (by name)."""
    from torch import _weights_only_unpickler

    return frozenset(_weights_only_unpickler._get_allowed_globals()) | frozenset(ALLOWED_CONFIG_NAMES)


# Plain value types rebuilt as themselves: pure constructors, no code of the file runs.
_REAL = {"collections.OrderedDict": collections.OrderedDict, "collections.Counter": collections.Counter,
         "builtins.set": set, "builtins.frozenset": frozenset, "builtins.bytearray": _capped_bytearray,
         "builtins.complex": complex, "torch.Size": tuple, "_codecs.encode": lambda s, enc="utf-8": s.encode(enc)}


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """A global's Python 3 name, as torch's weights_only loader maps it (protocol 2, torch.save's default, writes
    `__builtin__.set`): so both allow, and refuse, the same globals."""
    from torch._utils import IMPORT_MAPPING, NAME_MAPPING

    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


class _MetaUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: _Archive | None, prefix: str, allowed: frozenset[str],
                 records: dict[str, int] | None = None) -> None:
        super().__init__(file)
        self.archive, self.prefix, self.allowed = archive, prefix, allowed
        self.records = records  # zip entry -> its size; None for a legacy file (no records to check against)

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        qualname = f"{module}.{name}"
        if qualname not in self.allowed:
            raise RefusedGlobal(f"global {qualname} is not allowed")
        if qualname in _REAL:
            return _REAL[qualname]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module in ("torch", "torch.cuda") and name.endswith("Storage"):
            if name == "UntypedStorage":
                return torch.uint8
            return torch.storage._get_dtype_from_pickle_storage_type(name)  # all persistent_load needs
        if qualname in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"):
            return self._tensor
        if qualname in ("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"):
            return lambda data, *_: data
        return _record_type(qualname)

    def persistent_load(self, pid: Any) -> tuple[torch.dtype, str]:
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if not isinstance(storage_type, torch.dtype):
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
        record = f"{self.prefix}data/{key}"
        if self.records is not None:
            declared = int(_numel) * storage_type.itemsize
            if record not in self.records:
                raise RefusedStructure(f"storage {key} has no record in the archive")
            if declared > self.records[record]:
                raise RefusedStructure(f"storage {key} declares {declared} bytes, its record holds "
                                       f"{self.records[record]}")
        return storage_type, record

    def _tensor(self, storage: tuple[torch.dtype, str], offset: int, size: tuple, *_: Any) -> TensorMeta:
        dtype, record = storage
        return TensorMeta(tuple(int(s) for s in size), dtype, record, int(offset), self.archive)


def can_read_meta(path: Path) -> bool:
    """True for the zip format torch has written since 1.6 (older files need a full load)."""
    return zipfile.is_zipfile(path)


def _the_pickle(z: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The archive's one data.pkl; RefusedStructure when torch and this reader could read different ones."""
    names = [i.filename for i in z.infolist()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RefusedStructure(f"the archive holds {twice[0]} more than once")
    pickles = [i for i in z.infolist() if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if not pickles:
        raise pickle.UnpicklingError("no data.pkl in the archive")
    if len(pickles) > 1:
        raise RefusedStructure(f"the archive holds {len(pickles)} data.pkl ({', '.join(i.filename for i in pickles)})")
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise RefusedStructure(f"its data.pkl is {pickles[0].file_size} bytes, more than {MAX_PICKLE_BYTES}")
    return pickles[0]


def read_meta(path: Path) -> Any:
    """The unpickled structure of a torch zip checkpoint with TensorMeta for tensors (see module docstring).
    Raises RefusedGlobal for a global a weights_only load refuses, RefusedStructure for what no checkpoint needs
    built; zipfile/pickle errors for corrupt files."""
    with zipfile.ZipFile(path) as z:
        pkl = _the_pickle(z)
        prefix = pkl.filename[: -len("data.pkl")]
        records = {i.filename: i.file_size for i in z.infolist()}
        big_endian = f"{prefix}byteorder" in records and z.read(f"{prefix}byteorder").strip() == b"big"
        with z.open(pkl) as f:
            return _MetaUnpickler(f, _Archive(path, big_endian), prefix, _allowed_globals(), records).load()


class _Capped(io.RawIOBase):
    """A file read through, refusing to read more than `limit` bytes (a legacy file's pickles have no size)."""

    def __init__(self, f: Any, limit: int) -> None:
        self.f, self.left = f, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise RefusedStructure(f"its pickles are longer than {MAX_PICKLE_BYTES} bytes")
        data = self.f.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


class _LegacyUnpickler(_MetaUnpickler):
    """The pre-zip format (torch < 1.6): storages are named by ('storage', type, key, location, numel, view)."""

    def persistent_load(self, pid: Any) -> tuple[torch.dtype, str]:
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        return super().persistent_load(pid[:5])


def check_legacy_structure(path: Path) -> None:
    """Run a legacy (pre-zip) file's pickles through the capped reader, building nothing of the file's choosing;
    raises as read_meta does. torch's full load of such a file has no cap of its own."""
    with open(path, "rb") as raw:
        f = io.BufferedReader(_Capped(raw, MAX_PICKLE_BYTES))
        for _ in range(3):  # magic number, protocol version, system info
            _MetaUnpickler(f, None, "", _allowed_globals()).load()
        _LegacyUnpickler(f, None, "", _allowed_globals()).load()
