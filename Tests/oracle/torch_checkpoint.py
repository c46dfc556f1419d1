"""An independent, torch-free reader of PyTorch checkpoints (torch.save files) and
safetensors files, for the oracle tests.

PyTorch checkpoints come in two containers:
- zip (torch >= 1.6): every record sits under one root folder (`<root>/data.pkl`, the
  pickled object; `<root>/data/<key>`, one raw little-endian storage per key; plus
  `.format_version`, `.storage_alignment`, `byteorder`, `version`, `.data/serialization_id`);
- legacy (`_use_new_zipfile_serialization=False`): one stream of five pickles (magic number,
  protocol version, sys_info, the object, the sorted list of storage keys), then for each
  key in that list an int64 element count and the storage's raw bytes.

The object pickle names storages by persistent ids
`('storage', <storage class>, key, location, numel)` (legacy adds a sixth element, view
metadata, always None for files written by torch >= 1.0) and builds tensors with
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.

The unpickler only accepts the globals `torch.load(weights_only=True)` accepts by default,
each mapped to a small Python stand-in; anything else (a pickled nn.Module, os.system, ...)
raises `DisallowedGlobal`, or with `permissive=True` becomes a recording stub (`Carried`):
a class that runs nothing and only remembers how the pickle built each object (called or
`__new__`, with which arguments), the items and state the pickle put into it, so that two
files' object trees can be compared, and the globals named are listed. Tensors become `Tensor` objects viewing their storage through
numpy (offset, size and stride honoured with as_strided); bfloat16 has no numpy dtype and
is kept as its uint16 bit patterns (`Tensor.float32()` widens it).
"""
import codecs
import collections
import io
import json
import pathlib
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


class CheckpointError(Exception):
    """The file is not a checkpoint this reader understands, or it is inconsistent."""


class DisallowedGlobal(CheckpointError):
    """The pickle names a global outside the weights_only allowlist."""


# ---------------------------------------------------------------------------------------
# Stand-ins for the torch globals


# Element types: torch name -> (numpy dtype of the stored bits, element size).
DTYPES = {
    "float32": ("<f4", 4), "float64": ("<f8", 8), "float16": ("<f2", 2), "bfloat16": ("<u2", 2),
    "int64": ("<i8", 8), "int32": ("<i4", 4), "int16": ("<i2", 2), "int8": ("i1", 1), "uint8": ("u1", 1),
    "bool": ("?", 1), "complex64": ("<c8", 8), "complex128": ("<c16", 16),
}

# Storage classes (torch.<Name>Storage) -> element type.
STORAGE_CLASSES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}

# torch dtype globals (`torch float32`) -> name; aliases included.
DTYPE_GLOBALS = {name: name for name in DTYPES}
DTYPE_GLOBALS.update({"float": "float32", "double": "float64", "half": "float16", "long": "int64",
                      "int": "int32", "short": "int16", "cfloat": "complex64", "cdouble": "complex128"})


class StorageType:
    """A torch.<Name>Storage class named in a persistent id."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_CLASSES[name]

    def __repr__(self):
        return f"torch.{self.name}"


class DType:
    """A torch dtype object (pickled as the global `torch <name>`)."""

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, DType) and other.name == self.name

    def __hash__(self):
        return hash(("dtype", self.name))

    def __repr__(self):
        return f"torch.{self.name}"


class Device:
    def __init__(self, *args):
        self.args = args

    def __eq__(self, other):
        return isinstance(other, Device) and other.args == self.args

    def __repr__(self):
        return f"device{self.args}"


class Storage:
    """One storage: `numel` elements of `dtype`, read from `source` (a zip record name or
    a byte offset in a legacy file)."""

    def __init__(self, key, dtype, numel, location):
        self.key, self.dtype, self.numel, self.location = key, dtype, numel, location
        self.array = None  # numpy array of numel elements (the stored bits), once read
        self.source = None

    @property
    def itemsize(self):
        return DTYPES[self.dtype][1]

    def set_bytes(self, data, source):
        expected = self.numel * self.itemsize
        if len(data) != expected:
            raise CheckpointError(f"storage {self.key!r} holds {len(data)} bytes, its id says {expected}")
        self.array = np.frombuffer(bytes(data), dtype=DTYPES[self.dtype][0])
        self.source = source

    def __repr__(self):
        return f"Storage({self.key!r}, {self.dtype}, {self.numel})"


class Tensor:
    """A tensor stand-in: a strided view of a Storage, plus what the pickle said."""

    def __init__(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if not isinstance(storage, Storage):
            raise CheckpointError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
        self.storage, self.offset = storage, int(offset)
        self.shape, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        self.requires_grad, self.hooks, self.metadata = requires_grad, hooks, metadata
        self.is_parameter = False
        if len(self.shape) != len(self.stride) or any(s < 0 for s in self.shape) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise CheckpointError(f"tensor with size {self.shape}, stride {self.stride}, offset {self.offset}")
        if 0 not in self.shape:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
            if last >= storage.numel:
                raise CheckpointError(f"tensor reaches element {last} of a storage of {storage.numel}")

    @property
    def dtype(self):
        return self.storage.dtype

    @property
    def itemsize(self):
        return self.storage.itemsize

    def is_contiguous(self):
        expected, step = [], 1
        for n in reversed(self.shape):
            expected.append(step)
            step *= n
        return all(n == 1 or s == e for n, s, e in zip(self.shape, self.stride, reversed(expected)))

    def numpy(self):
        """The elements as stored (bfloat16 as uint16 bit patterns), a fresh C-contiguous array."""
        if self.storage.array is None:
            raise CheckpointError(f"storage {self.storage.key!r} was never read")
        base = self.storage.array
        if 0 in self.shape:
            return np.zeros(self.shape, dtype=base.dtype)
        view = np.lib.stride_tricks.as_strided(base[self.offset:], shape=self.shape,
                                               strides=[s * base.itemsize for s in self.stride], writeable=False)
        return np.array(view, order="C")  # (ascontiguousarray would make a 0-d tensor 1-d)

    def float32(self):
        """The values as float32 (bfloat16 widened exactly)."""
        raw = self.numpy()
        if self.dtype == "bfloat16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)

    def values(self):
        """The values in the widest exact numpy type (bfloat16 -> float32)."""
        return self.float32() if self.dtype == "bfloat16" else self.numpy()

    def tobytes(self):
        return self.numpy().tobytes()

    def __repr__(self):
        kind = "Parameter" if self.is_parameter else "Tensor"
        return f"{kind}({self.dtype}, {list(self.shape)})"


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return Tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, Tensor):
        raise CheckpointError("parameter around something that is not a tensor")
    data.is_parameter, data.requires_grad = True, requires_grad
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Size"): tuple,
    ("torch", "device"): Device,
    ("_codecs", "encode"): codecs.encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
}
# Protocol 2 pickles (torch.save's default) name builtins `__builtin__` (pickle's fix_imports).
ALLOWED_GLOBALS.update({("__builtin__", name): value for (module, name), value in list(ALLOWED_GLOBALS.items())
                        if module == "builtins"})
ALLOWED_GLOBALS.update({("torch", name): StorageType(name) for name in STORAGE_CLASSES})
ALLOWED_GLOBALS.update({("torch", name): DType(dtype) for name, dtype in DTYPE_GLOBALS.items()})
# torch.Tensor / torch.nn.parameter.Parameter appear as `new_type` in _rebuild_from_type_v2.
ALLOWED_GLOBALS.update({("torch", "Tensor"): "torch.Tensor", ("torch.nn.parameter", "Parameter"): "torch.nn.Parameter"})


class Carried:
    """A recording stand-in for an object of a global outside the allowlist. Nothing runs:
    `made` is ("call", args, kwargs) for `cls(*args)` (REDUCE), ("new", args, kwargs) for
    `cls.__new__(cls, *args)` (NEWOBJ), or ("result", callee, args) when the pickle calls
    a carried object; `items`, `dict_items` and `state` hold what APPENDS, SETITEMS and
    BUILD put into it. Subclassed once per global (`global_name`)."""

    global_name = None

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__.update(made=("new", args, kwargs), items=[], dict_items=[], state=None, built=0)
        return obj

    def __init__(self, *args, **kwargs):
        self.__dict__["made"] = ("call", args, kwargs)

    def __setstate__(self, state):
        self.__dict__["state"] = state
        self.__dict__["built"] += 1

    def append(self, item):
        self.items.append(item)

    def extend(self, items):
        self.items.extend(items)

    def __setitem__(self, key, value):
        self.dict_items.append((key, value))

    def __call__(self, *args, **kwargs):
        result = _carried_class("<call result>")()
        result.__dict__["made"] = ("result", self, args, kwargs)
        return result

    def __eq__(self, other):
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __hash__(self):
        return hash(self.global_name)

    def __repr__(self):
        return f"Carried({self.global_name}, {self.made[0]})"


_CARRIED_CLASSES = {}


def _carried_class(name):
    if name not in _CARRIED_CLASSES:
        _CARRIED_CLASSES[name] = type("Carried", (Carried,), {"global_name": name})
    return _CARRIED_CLASSES[name]


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream, persistent_load, permissive=False, carried=None):
        super().__init__(stream, encoding="utf-8")
        self._persistent = persistent_load
        self.permissive = permissive
        self.carried = carried if carried is not None else set()

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            if not self.permissive:
                raise DisallowedGlobal(f"global {module}.{name} is not allowed (not a state_dict() pickle)") from None
        self.carried.add(f"{module}.{name}")
        return _carried_class(f"{module}.{name}")

    def persistent_load(self, pid):
        return self._persistent(pid)


# ---------------------------------------------------------------------------------------
# Checkpoints


class Checkpoint:
    """A loaded file: `obj` (the unpickled object tree), `container` ("zip", "legacy" or
    "safetensors"), `root` (the zip's folder name), `storages` (key -> Storage),
    `records` (zip: name -> ZipInfo, in archive order), `metadata` (safetensors)."""

    def __init__(self, path, container):
        self.path, self.container = pathlib.Path(path), container
        self.obj, self.root, self.storages, self.records, self.metadata = None, None, {}, {}, None
        self.carried = set()  # "module.name" of every global the permissive reader stubbed

    def tensors(self):
        """(path tuple, Tensor) for every tensor in the object tree, in order."""
        return list(walk_tensors(self.obj))


def walk_tensors(obj, path=()):
    if isinstance(obj, Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from walk_tensors(value, path + (key,))
    elif isinstance(obj, (list, tuple)):
        for k, value in enumerate(obj):
            yield from walk_tensors(value, path + (k,))
    elif isinstance(obj, Carried):
        yield from walk_tensors([obj.made[1:], obj.items, obj.dict_items, obj.state], path + (obj.global_name,))


def _storage_from_pid(pid, storages):
    if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
        raise CheckpointError(f"unknown persistent id {pid!r}")
    _, storage_type, key, location, numel = pid[:5]
    if not isinstance(storage_type, StorageType):
        raise CheckpointError(f"persistent id names {storage_type!r}, not a storage class")
    if len(pid) == 6 and pid[5] is not None:
        raise CheckpointError("legacy storage views are not supported")
    if not isinstance(numel, int) or numel < 0:
        raise CheckpointError(f"storage {key!r} with {numel!r} elements")
    if key in storages:
        storage = storages[key]
        if storage.dtype != storage_type.dtype or storage.numel != numel:
            raise CheckpointError(f"storage {key!r} named twice with different types or sizes")
        return storage
    storage = storages[key] = Storage(key, storage_type.dtype, numel, location)
    return storage


def _zip_root(names):
    roots = {name.split("/", 1)[0] for name in names}
    pickles = [name for name in names if name.count("/") == 1 and name.endswith("/data.pkl")]
    if len(pickles) != 1 or len(roots) != 1:
        raise CheckpointError(f"not a PyTorch zip checkpoint (records {names[:5]}...)")
    return pickles[0].split("/", 1)[0]


def load_zip(path, permissive=False):
    ckpt = Checkpoint(path, "zip")
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        ckpt.records = {info.filename: info for info in infos}
        ckpt.root = _zip_root([info.filename for info in infos])
        data_pkl = archive.read(f"{ckpt.root}/data.pkl")

        def persistent_load(pid):
            storage = _storage_from_pid(pid, ckpt.storages)
            if storage.array is None:
                name = f"{ckpt.root}/data/{storage.key}"
                if name not in ckpt.records:
                    raise CheckpointError(f"storage record {name} is missing")
                storage.set_bytes(archive.read(name), name)
            return storage

        ckpt.obj = RestrictedUnpickler(io.BytesIO(data_pkl), persistent_load, permissive, ckpt.carried).load()
    return ckpt


def load_legacy(path, permissive=False):
    ckpt = Checkpoint(path, "legacy")
    data = pathlib.Path(path).read_bytes()
    stream = io.BytesIO(data)

    def no_storage(pid):
        raise CheckpointError("persistent id outside the object pickle")

    def plain():
        return RestrictedUnpickler(stream, no_storage).load()

    if plain() != LEGACY_MAGIC_NUMBER:
        raise CheckpointError("not a legacy PyTorch checkpoint (magic number)")
    if plain() != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError("unknown legacy protocol version")
    sys_info = plain()
    if not sys_info.get("little_endian", False):
        raise CheckpointError("big-endian legacy checkpoint")
    ckpt.metadata = sys_info
    ckpt.obj = RestrictedUnpickler(stream, lambda pid: _storage_from_pid(pid, ckpt.storages), permissive, ckpt.carried).load()
    keys = plain()
    if sorted(keys) != sorted(ckpt.storages):
        raise CheckpointError("storage key list disagrees with the storages the object names")
    for key in keys:
        storage = ckpt.storages[key]
        head = stream.read(8)
        if len(head) != 8:
            raise CheckpointError(f"truncated before storage {key!r}")
        (count,) = struct.unpack("<q", head)
        if count != storage.numel:
            raise CheckpointError(f"storage {key!r}: {count} elements stored, {storage.numel} named")
        offset = stream.tell()
        raw = stream.read(count * storage.itemsize)
        if len(raw) != count * storage.itemsize:
            raise CheckpointError(f"storage {key!r} is truncated")
        storage.set_bytes(raw, offset)
    ckpt.storage_keys = list(keys)
    ckpt.end = stream.tell()
    return ckpt


SAFETENSORS_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def safetensors_header(path):
    """The header of a safetensors file as an ordered list of (name, entry), plus
    `__metadata__` (or None) and the data section's offset."""
    data = pathlib.Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length], object_pairs_hook=list)
    metadata = next((value for key, value in header if key == "__metadata__"), None)
    entries = [(key, dict(value)) for key, value in header if key != "__metadata__"]
    return entries, (dict(metadata) if metadata is not None else None), 8 + length


def load_safetensors(path, permissive=False):
    """A safetensors file, read with the header in file order; tensors as Tensor objects
    (each over its own storage, keyed by name). Values are cross-checked with the
    safetensors package when it reads the dtype."""
    ckpt = Checkpoint(path, "safetensors")
    data = pathlib.Path(path).read_bytes()
    entries, ckpt.metadata, start = safetensors_header(path)
    obj = collections.OrderedDict()
    for name, entry in entries:
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        numel = int(np.prod(shape, dtype=np.int64))
        storage = Storage(name, dtype, numel, "cpu")
        storage.set_bytes(data[start + begin:start + end], start + begin)
        stride, step = [], 1
        for n in reversed(shape):
            stride.insert(0, step)
            step *= n
        obj[name] = Tensor(storage, 0, shape, stride)
        ckpt.storages[name] = storage
    if not all(e["dtype"] == "BF16" for _, e in entries):
        from safetensors.numpy import load_file
        reference = load_file(str(path))
        for name, tensor in obj.items():
            if tensor.dtype != "bfloat16":
                assert np.array_equal(reference[name], tensor.numpy(), equal_nan=True), name
    ckpt.obj = obj
    return ckpt


def container_of(path):
    head = pathlib.Path(path).read_bytes()[:16]
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    # PROTO 2-5 (torch.save's pickle_protocol), a FRAME from protocol 4 on, then LONG1 of
    # the magic number.
    start = 11 if head[2:3] == b"\x95" else 2
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5 and head[start:start + 2] == b"\x8a\x0a":
        return "legacy"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise CheckpointError(f"{path}: not a PyTorch or safetensors file")


def load(path, permissive=False):
    """Reads a zip or legacy PyTorch checkpoint, or a safetensors file; `permissive` stubs
    globals outside the allowlist (listed in the result's `carried`) instead of refusing."""
    kind = container_of(path)
    return {"zip": load_zip, "legacy": load_legacy, "safetensors": load_safetensors}[kind](path, permissive)


# ---------------------------------------------------------------------------------------
# Zip layout


def zip_data_offsets(path):
    """name -> (compression method, offset of the record's data in the file), from the
    local file headers (the central directory's extra fields may differ from the local ones)."""
    data = pathlib.Path(path).read_bytes()
    out = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            h = info.header_offset
            signature, _, _, method, _, _, _, _, _, name_length, extra_length = struct.unpack("<IHHHHHIIIHH", data[h:h + 30])
            if signature != 0x04034B50:
                raise CheckpointError(f"{info.filename}: no local header at {h}")
            out[info.filename] = (method, h + 30 + name_length + extra_length)
    return out


def write_zip(dst, records):
    """Writes (name, bytes) records with zipfile as torch lays them out: stored, each
    record's data 64-byte aligned by an 'FB' padding extra field."""
    with open(dst, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as out:
        for name, data in records:
            record = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            record.compress_type = zipfile.ZIP_STORED
            header = 30 + len(name.encode()) + 4
            pad = -(f.tell() + header) % 64
            record.extra = struct.pack("<HH", 0x4246, pad) + b"\0" * pad
            out.writestr(record, data)
    assert all(offset % 64 == 0 and method == 0 for method, offset in zip_data_offsets(dst).values())
    return pathlib.Path(dst)


def rewrite_zip(src, dst, replace=None, drop=()):
    """Copies the zip `src` to `dst` with write_zip, some records' bytes replaced
    (`replace`: name -> bytes) and some left out."""
    replace = replace or {}
    with zipfile.ZipFile(src) as archive:
        records = [(i.filename, replace[i.filename] if i.filename in replace else archive.read(i.filename))
                   for i in archive.infolist() if i.filename not in drop]
    return write_zip(dst, records)


def write_torch_zip(dst, root, data_pkl, storages):
    """A torch.save-like zip: data.pkl, the records torch 2.x writes, and one
    `data/<key>` record per storage (key -> bytes)."""
    records = [(f"{root}/data.pkl", data_pkl), (f"{root}/.format_version", b"1"),
               (f"{root}/.storage_alignment", b"64"), (f"{root}/byteorder", b"little")]
    records += [(f"{root}/data/{key}", data) for key, data in storages.items()]
    records += [(f"{root}/version", b"3\n"), (f"{root}/.data/serialization_id", b"0" * 40)]
    return write_zip(dst, records)
