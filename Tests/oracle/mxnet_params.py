"""MXNet's NDArray list files (`.params`, `mx.nd.save`), read and written without MXNet:
the byte-level side of the MXNet oracle tests (exact record bytes, hand-made bad files).

The layout, as MXNet 1.9.1 writes it (checked against mx.nd.save output by
fixtures/make_mxnet_fixtures.py), all little-endian:

    uint64 0x112              list magic
    uint64 0                  reserved
    uint64 count              arrays
    count arrays:
        uint32 magic          0xF993FAC9 (V2, what 1.x writes), 0xF993FACA (V3, numpy
                              shape semantics), 0xF993FAC8 (V1, no storage type)
        int32  storage type   V2/V3 only: 0 dense, 1 row_sparse, 2 csr
        [sparse: storage shape]
        uint32 ndim, ndim x int64 dims
        (V1/V2 with ndim 0: an empty "none" array, nothing follows)
        int32 dev_type, int32 dev_id      (1, 0 = cpu(0))
        int32 dtype           0 f32, 1 f64, 2 f16, 3 u8, 4 i32, 5 i8, 6 i64
        [sparse: per aux array int32 type + shape]
        data                  prod(dims) * itemsize bytes
        [sparse: aux data]
    uint64 name count         0 (unnamed list) or count
    name count names: uint64 length, bytes

Before V1 an array began with its ndim (uint32) and uint32 dims ("legacy"). Only dense
arrays are parsed here; anything else raises ParamsError.

Also here: a reference fold of a fixture (numpy), the expected result of doconv-fold.
"""
import dataclasses
import struct

import numpy as np

LIST_MAGIC = 0x112
V1, V2, V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}
CODES = {np.dtype(t).name: c for c, t in DTYPES.items()}


class ParamsError(ValueError):
    pass


@dataclasses.dataclass
class Record:
    """One array: where it sits in the file and what its header says."""
    name: str
    magic: int          # V1, V2, V3, or None for the legacy layout
    stype: int
    shape: tuple
    dev_type: int
    dev_id: int
    dtype: str          # numpy name, None for a "none" array
    start: int          # first byte of the record (its magic)
    shape_at: int       # first byte of ndim
    data_at: int        # first byte of the data
    end: int            # one past the last data byte

    def raw(self, blob):
        return bytes(blob[self.start:self.end])

    def values(self, blob):
        if self.dtype is None:
            return None
        return np.frombuffer(blob, DTYPES[CODES[self.dtype]], int(np.prod(self.shape, dtype=np.int64)),
                             self.data_at).reshape(self.shape)


@dataclasses.dataclass
class ParamsFile:
    records: list
    names: list         # [] for an unnamed list
    names_at: int       # offset of the name count

    def named(self):
        return {r.name: r for r in self.records}


class Reader:
    def __init__(self, blob):
        self.blob, self.at = blob, 0

    def take(self, fmt, what):
        size = struct.calcsize(fmt)
        if self.at + size > len(self.blob):
            raise ParamsError(f"truncated: {what} at byte {self.at} runs past the end ({len(self.blob)} bytes)")
        values = struct.unpack_from(fmt, self.blob, self.at)
        self.at += size
        return values if len(values) > 1 else values[0]


def read_array(r, index):
    start = r.at
    magic = r.take("<I", f"array {index} magic")
    stype = 0
    if magic in (V2, V3):
        stype = r.take("<i", f"array {index} storage type")
        if stype != 0:
            raise ParamsError(f"array {index}: sparse storage type {stype}")
    elif magic != V1:
        if magic > 32:
            raise ParamsError(f"array {index}: unknown array magic {magic:#x}")
    shape_at = r.at
    if magic in (V1, V2, V3):
        ndim = r.take("<I", f"array {index} ndim")
        if magic == V3 and ndim == 0xFFFFFFFF:
            raise ParamsError(f"array {index}: unknown shape")
        if ndim > 32:
            raise ParamsError(f"array {index}: ndim {ndim}")
        shape = tuple(r.take(f"<{ndim}q", f"array {index} dims") if ndim > 1 else
                      (r.take("<q", f"array {index} dims"),) if ndim == 1 else ())
    else:  # legacy: the "magic" was the ndim, the dims are uint32
        ndim = magic
        shape = tuple(r.take(f"<{ndim}I", f"array {index} dims") if ndim > 1 else
                      (r.take("<I", f"array {index} dims"),) if ndim == 1 else ())
        magic = None
    if any(d < 0 for d in shape):
        raise ParamsError(f"array {index}: negative dim in {shape}")
    if ndim == 0 and magic != V3:
        return Record("", magic, stype, (), 0, 0, None, start, shape_at, r.at, r.at)
    dev_type, dev_id = r.take("<ii", f"array {index} context")
    code = r.take("<i", f"array {index} dtype")
    if code not in DTYPES:
        raise ParamsError(f"array {index}: unknown dtype {code}")
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[code]).itemsize
    data_at = r.at
    if data_at + size > len(r.blob):
        raise ParamsError(f"truncated: array {index} needs {size} bytes at {data_at}, the file has {len(r.blob)}")
    r.at += size
    return Record("", magic, stype, shape, dev_type, dev_id, np.dtype(DTYPES[code]).name, start, shape_at, data_at, r.at)


def parse(blob) -> ParamsFile:
    r = Reader(blob)
    magic, _reserved = r.take("<QQ", "list header")
    if magic != LIST_MAGIC:
        raise ParamsError(f"not an NDArray list (magic {magic:#x})")
    count = r.take("<Q", "array count")
    if count * 16 > len(blob):
        raise ParamsError(f"array count {count} runs past the end of the file")
    records = [read_array(r, k) for k in range(count)]
    names_at = r.at
    name_count = r.take("<Q", "name count")
    if name_count not in (0, count):
        raise ParamsError(f"{name_count} names for {count} arrays")
    names = []
    for k in range(name_count):
        length = r.take("<Q", f"name {k} length")
        if r.at + length > len(blob):
            raise ParamsError(f"truncated: name {k}")
        names.append(bytes(blob[r.at:r.at + length]).decode())
        r.at += length
    if r.at != len(blob):
        raise ParamsError(f"{len(blob) - r.at} bytes after the names")
    for record, name in zip(records, names):
        record.name = name
    return ParamsFile(records, names, names_at)


def load(path) -> tuple:
    """(blob, ParamsFile) of a file."""
    blob = open(path, "rb").read()
    return blob, parse(blob)


def array_bytes(array, magic=V2):
    """One dense array record as MXNet 1.x writes it (cpu(0))."""
    array = np.ascontiguousarray(array)
    head = struct.pack("<I", magic)
    if magic in (V2, V3):
        head += struct.pack("<i", 0)
    head += struct.pack("<I", array.ndim) + struct.pack(f"<{array.ndim}q", *array.shape)
    return head + struct.pack("<iii", 1, 0, CODES[array.dtype.name]) + array.tobytes()


def row_sparse_bytes(values, indices, shape):
    """A row_sparse record: rows `indices` (int64) of a `shape` array hold `values`."""
    values = np.ascontiguousarray(values)
    head = struct.pack("<Ii", V2, 1)
    head += struct.pack("<I", values.ndim) + struct.pack(f"<{values.ndim}q", *values.shape)  # storage shape
    head += struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}q", *shape)
    head += struct.pack("<iii", 1, 0, CODES[values.dtype.name])
    head += struct.pack("<iIq", CODES["int64"], 1, len(indices))  # aux type, aux shape
    return head + values.tobytes() + np.asarray(indices, np.int64).tobytes()


def list_bytes(records, names):
    """A whole file from raw array records (bytes) and names (None: an unnamed list)."""
    out = struct.pack("<QQQ", LIST_MAGIC, 0, len(records)) + b"".join(records)
    names = names or []
    out += struct.pack("<Q", len(names))
    for name in names:
        data = name.encode()
        out += struct.pack("<Q", len(data)) + data
    return out


# ---------------------------------------------------------------------------------------
# A reference fold (numpy), from a fixture manifest entry (fixtures/mxnet/MANIFEST.json):
# what doconv-fold must write, up to the rounding of the folded kernels.


def compose(W, D, layer):
    """Gluon's arithmetic in numpy, in float32 (float64 for float64 weights)."""
    m, n = layer["kernel"]
    cin, cout, g = layer["in_channels"], layer["out_channels"], layer["groups"]
    arithmetic = np.float64 if W.dtype == np.float64 else np.float32
    mn = m * n
    Wr = W.astype(arithmetic).transpose(2, 3, 1, 0).reshape(mn, cin, cout // g)
    Dt = D.astype(arithmetic) + np.eye(mn, dtype=arithmetic)[:, :, None]
    K = np.einsum("msi,sio->mio", Dt, Wr).reshape(m, n, cin // g, cout).transpose(3, 2, 0, 1)
    return K.astype(W.dtype)


def reference_fold_params(blob, entry):
    parsed = parse(blob)
    named = parsed.named()
    by_weight = {l["weight"]: l for l in entry["layers"]}
    gone = {l["d"] for l in entry["layers"]}
    records, names = [], []
    for record in parsed.records:
        if record.name in gone:
            continue
        if record.name in by_weight:
            layer = by_weight[record.name]
            kernel = compose(record.values(blob), named[layer["d"]].values(blob), layer)
            records.append(array_bytes(kernel, record.magic))
        else:
            records.append(record.raw(blob))
        names.append(record.name)
    return list_bytes(records, names)


def reference_fold_symbol(graph, entry):
    """Each DO Convolution reads its weight variable; nodes nothing reads any more go."""
    nodes = graph["nodes"]
    index = {n["name"]: k for k, n in enumerate(nodes)}
    weights = {l["weight"].split(":", 1)[1]: l for l in entry["layers"]}
    inputs = [[list(i) for i in n["inputs"]] for n in nodes]
    for k, node in enumerate(nodes):
        if node["op"] != "Convolution":
            continue
        source = inputs[k][1][0]
        ancestors, stack = set(), [source]
        while stack:
            j = stack.pop()
            if j not in ancestors:
                ancestors.add(j)
                stack.extend(i[0] for i in inputs[j])
        variables = [nodes[j]["name"] for j in ancestors if nodes[j]["op"] == "null" and nodes[j]["name"] in weights]
        if nodes[source]["op"] != "null" and variables:
            assert len(variables) == 1, variables
            inputs[k][1] = [index[variables[0]], 0, 0]
    live, stack = set(), [h[0] for h in graph["heads"]]
    while stack:
        j = stack.pop()
        if j not in live:
            live.add(j)
            stack.extend(i[0] for i in inputs[j])
    keep = [k for k in range(len(nodes)) if k in live]
    renumber = {old: new for new, old in enumerate(keep)}
    row = graph.get("node_row_ptr")
    outputs = [row[k + 1] - row[k] for k in range(len(nodes))] if row else None
    new_nodes = []
    for k in keep:
        node = dict(nodes[k])
        node["inputs"] = [[renumber[i[0]], *i[1:]] for i in inputs[k]]
        new_nodes.append(node)
    folded = dict(graph)
    folded["nodes"] = new_nodes
    folded["arg_nodes"] = [k for k, n in enumerate(new_nodes) if n["op"] == "null"]
    if row:
        ptr = [0]
        for k in keep:
            ptr.append(ptr[-1] + outputs[k])
        folded["node_row_ptr"] = ptr
    folded["heads"] = [[renumber[h[0]], *h[1:]] for h in graph["heads"]]
    return folded
