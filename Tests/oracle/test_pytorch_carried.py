"""Python objects carried through a fold, checked with CPython's own pickle and real classes.

Training code saves more than tensors beside its state dict: an `argparse.Namespace` of
arguments, numpy scalars and arrays, `defaultdict`s, objects of its own classes. Here
CPython's pickler itself writes such a checkpoint's data.pkl, at protocols 2, 4 and 5 (so
every opcode CPython uses for them appears: NEWOBJ, NEWOBJ_EX, BUILD, SETITEMS and APPENDS
into objects, FRAME, MEMOIZE, shared objects), inside a zip laid out as torch.save lays it
out. The tensors are named as torch names them (`torch._utils._rebuild_tensor_v2`, storages
by persistent id) through stand-in `torch` modules that exist only while pickling.

doconv-fold must fold the state dict and carry every other object: CPython then unpickles
the output with the REAL classes (argparse, numpy, collections and this module's own) and
must build objects equal to those the input builds, with the same sharing."""
import argparse
import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

import torch_checkpoint as tc
from conftest import run_fold, run_verify


class KeywordOnly:
    """A class whose objects pickle by NEWOBJ_EX (keyword arguments to __new__) at protocol 4+."""

    def __new__(cls, *, tag):
        obj = super().__new__(cls)
        obj.tag = tag
        return obj

    def __getnewargs_ex__(self):
        return (), {"tag": self.tag}

    def __eq__(self, other):
        return type(other) is KeywordOnly and other.__dict__ == self.__dict__


class History(list):
    """A list subclass with an attribute: APPENDS into an object that is not a list, then BUILD."""

    def __eq__(self, other):
        return type(other) is History and list(other) == list(self) and other.__dict__ == self.__dict__


class HeldModule:
    """Pickles as an nn.Module does (NEWOBJ, then BUILD with its __dict__): its parameters
    are the DO-Conv layer's W, D and d_diag, which its own forward would read."""

    def __init__(self, arrays):
        self.training = False
        self._parameters = collections.OrderedDict(
            (key.split(".")[1], StoredTensor(f"m{k}", value)) for k, (key, value) in enumerate(arrays.items()) if key.startswith("conv."))
        self._modules = collections.OrderedDict()


class StorageRef:
    def __init__(self, key, array):
        self.key, self.array = key, array


class StoredTensor:
    """Pickles as torch pickles a contiguous float32 tensor."""

    def __init__(self, key, array):
        self.storage = StorageRef(key, np.ascontiguousarray(array, dtype=np.float32))

    def __reduce__(self):
        shape = self.storage.array.shape
        stride = tuple(int(s) // 4 for s in self.storage.array.strides)
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, 0, shape, stride, False, collections.OrderedDict())


@contextlib.contextmanager
def stand_in_torch():
    """`torch` and `torch._utils` modules holding the two names torch.save pickles, so that
    CPython's pickler (which checks that a global imports as the same object) can name them."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only named
        raise AssertionError("stand-in")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    storage = type("FloatStorage", (), {"__module__": "torch"})
    utils._rebuild_tensor_v2, torch.FloatStorage, torch._utils = _rebuild_tensor_v2, storage, utils
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def layer_arrays(seed=0, cin=4, cout=6, mn=9):
    rng = np.random.default_rng(seed)
    s = np.arange(mn)
    identity = ((s < mn) & (s % mn == np.arange(mn)[:, None])).astype(np.float32)
    return collections.OrderedDict([
        ("conv.W", rng.standard_normal((cout, cin, mn)).astype(np.float32) * 0.3),
        ("conv.D", rng.standard_normal((cin, mn, mn)).astype(np.float32) * 0.3),
        ("conv.d_diag", np.tile(identity, (cin, 1, 1))),
        ("conv.bias", rng.standard_normal(cout).astype(np.float32) * 0.1),
        ("fc.weight", rng.standard_normal((3, cout)).astype(np.float32)),
    ])


def training_objects():
    args = argparse.Namespace(lr=0.1, model="resnet_do", sched=None, layers=[1, 2], ratio=(0.5, 2.0))
    history = History([0.5, 0.25])
    history.best = 0.25
    return {
        "epoch": 3,
        "args": args,
        "best_acc": np.float64(0.71),
        "history": np.arange(6, dtype=np.float32).reshape(2, 3),
        "counts": collections.defaultdict(list, {"a": [1, 2]}),
        "meta": KeywordOnly(tag="v1"),
        "losses": history,
        "shared": [args, args],
    }


# Globals every protocol names for training_objects() (numpy's spelling and the helpers
# CPython picks per protocol come on top).
CARRIED = {"argparse.Namespace", "numpy.dtype", "collections.defaultdict", "test_pytorch_carried.History"}


def write_checkpoint(path, protocol, module=False):
    arrays = layer_arrays()
    objects = training_objects()
    if module:
        objects["teacher"] = HeldModule(arrays)
    with stand_in_torch() as torch:
        storage_class = torch.FloatStorage

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, StorageRef):
                    return ("storage", storage_class, obj.key, "cpu", obj.array.size)
                return None

        state_dict = collections.OrderedDict((key, StoredTensor(str(k), value)) for k, (key, value) in enumerate(arrays.items()))
        buffer = io.BytesIO()
        Pickler(buffer, protocol=protocol).dump({"state_dict": state_dict, **objects})
    storages = {str(k): value.tobytes() for k, value in enumerate(arrays.values())}
    if module:
        storages.update({f"m{k}": value.tobytes() for k, (key, value) in enumerate(arrays.items()) if key.startswith("conv.")})
    tc.write_torch_zip(path, "archive", buffer.getvalue(), storages)
    return arrays, objects


class RealUnpickler(tc.RestrictedUnpickler):
    """torch's globals as the oracle reader's stand-ins, every other global the real one."""

    def find_class(self, module, name):
        if (module, name) in tc.ALLOWED_GLOBALS:
            return tc.ALLOWED_GLOBALS[(module, name)]
        return pickle.Unpickler.find_class(self, module, name)


def load_real(path):
    with zipfile.ZipFile(path) as archive:
        root = tc._zip_root(archive.namelist())
        data = archive.read(f"{root}/data.pkl")
        storages = {}

        def persistent_load(pid):
            storage = tc._storage_from_pid(pid, storages)
            if storage.array is None:
                storage.set_bytes(archive.read(f"{root}/data/{storage.key}"), storage.key)
            return storage

        return data, RealUnpickler(io.BytesIO(data), persistent_load).load()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cpython_pickled_objects_are_carried_and_rebuild_equal(tmp_path, protocol):
    src = tmp_path / "checkpoint.pth"
    arrays, objects = write_checkpoint(src, protocol)
    out = tmp_path / "folded.pth"
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    data_in, before = load_real(src)
    data_out, after = load_real(out)
    # The output declares the input's protocol, and names the same foreign globals.
    assert data_out[:2] == bytes([0x80, protocol])
    # CPython's unpickler asks find_class for every global: the recording reader lists them.
    carried = tc.load(src, permissive=True).carried
    assert CARRIED <= carried and ("test_pytorch_carried.KeywordOnly" in carried or protocol < 4), carried
    assert tc.load(out, permissive=True).carried == carried
    for name in carried:
        assert name in result.stdout, f"the summary does not name {name}: {result.stdout}"
    assert "weights_only=False" in result.stdout
    # Every carried object rebuilds, with the real classes, equal to the input's.
    for key, value in objects.items():
        got = after[key]
        assert type(got) is type(value), key
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and np.array_equal(got, value), key
        else:
            assert got == value == before[key], key
    assert after["counts"].default_factory is list and after["losses"].best == 0.25
    # Sharing survives: the same Namespace object three times.
    assert after["shared"][0] is after["shared"][1] is after["args"]
    assert list(after) == list(before)
    # The state dict folded: the kernel composed in float64 from the input's D and W.
    sd = after["state_dict"]
    assert list(sd) == ["conv.weight", "conv.bias", "fc.weight"]
    W, D, I = (arrays[k].astype(np.float64) for k in ("conv.W", "conv.D", "conv.d_diag"))
    want = np.einsum("ims,ois->oim", D + I, W).reshape(6, 4, 3, 3)
    np.testing.assert_allclose(sd["conv.weight"].numpy(), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert sd["fc.weight"].tobytes() == before["state_dict"]["fc.weight"].tobytes()
    verdict = run_verify(src, out)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_strict_pickle_refuses_the_same_checkpoint(tmp_path):
    src = tmp_path / "checkpoint.pth"
    write_checkpoint(src, 4)
    result = run_fold(src, tmp_path / "folded.pth", "--strict-pickle")
    assert result.returncode == 2 and "--strict-pickle" in result.stderr, result.stderr
    assert not (tmp_path / "folded.pth").exists()


def test_verify_notices_a_changed_carried_object(tmp_path):
    """verify-equivalence compares carried objects too: a changed Namespace value differs."""
    src = tmp_path / "checkpoint.pth"
    write_checkpoint(src, 2)
    out = tmp_path / "folded.pth"
    assert run_fold(src, out).returncode == 0
    with zipfile.ZipFile(out) as archive:
        records = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    name, data = next((n, d) for n, d in records if n.endswith("data.pkl"))
    changed = data.replace(b"resnet_do", b"resnet_XX")
    assert changed != data
    tc.write_zip(out, [(n, changed if n == name else d) for n, d in records])
    verdict = run_verify(src, out)
    assert verdict.returncode == 1 and "changed" in verdict.stdout, verdict.stdout


def test_layer_inside_a_pickled_module_is_refused_unless_excluded(tmp_path):
    """A DO-Conv layer inside a pickled object cannot fold (the object's own code reads W
    and D): refused with the way out that fits this file, which also holds a state dict;
    taking that way, the state dict folds and the object comes through as it was."""
    src = tmp_path / "checkpoint.pth"
    arrays, _ = write_checkpoint(src, 4, module=True)
    out = tmp_path / "folded.pth"
    result = run_fold(src, out)
    assert result.returncode == 2 and not out.exists(), result.stderr
    assert "DO-Conv layer 'teacher' sits inside a pickled test_pytorch_carried.HeldModule object" in result.stderr
    assert "pass --exclude 'teacher' --exclude 'teacher/*' to carry" in result.stderr, result.stderr
    result = run_fold(src, out, "--exclude", "teacher", "--exclude", "teacher/*")
    assert result.returncode == 0, result.stderr
    assert "not folded: teacher: left as it is: --exclude teacher" in result.stdout
    _, before = load_real(src)
    _, after = load_real(out)
    assert list(after["state_dict"]) == ["conv.weight", "conv.bias", "fc.weight"]
    held = after["teacher"]._parameters
    assert list(held) == ["W", "D", "d_diag", "bias"]
    for key in held:
        assert held[key].tobytes() == before["teacher"]._parameters[key].tobytes()
    assert run_verify(src, out, "--exclude", "teacher").returncode == 0
