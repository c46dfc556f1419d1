"""The format seam: files are told apart by content, and a format option is refused for a
file whose format does not read it (issue 14, item 3), except with -o DIR, where each
option applies to the files it fits."""
import shutil

import pytest

from conftest import FIXTURES, run_fold, run_tool

ONNX = FIXTURES / "g1_basic.ts.onnx"
KERAS_WEIGHTS = FIXTURES / "keras_h5" / "k3_net_a.weights.h5"
KERAS_CONFIG = FIXTURES / "keras_h5" / "k3_net_a.json"
CHECKPOINT = FIXTURES / "torch" / "plain_sd.pth"


def assert_refused(result, flag, out=None):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "does not apply" in lines[0], result.stderr
    if out is not None:
        assert not out.exists()


@pytest.mark.parametrize("src, args, flag", [
    (ONNX, ["--config", KERAS_CONFIG], "--config"),
    (ONNX, ["--keep-names"], "--keep-names"),
    (ONNX, ["--kernel-size", "x=1x3"], "--kernel-size"),
    (CHECKPOINT, ["--fuse-bn"], "--fuse-bn"),
    (CHECKPOINT, ["--config", KERAS_CONFIG], "--config"),
    (CHECKPOINT, ["--fold-separable"], "--fold-separable"),
    (KERAS_WEIGHTS, ["--config", KERAS_CONFIG, "--keep-names"], "--keep-names"),
], ids=["config-onnx", "keep-names-onnx", "kernel-size-onnx", "fuse-bn-pytorch", "config-pytorch",
        "fold-separable-pytorch", "keep-names-keras"])
def test_fold_refuses_an_option_the_format_does_not_read(tmp_path, src, args, flag):
    out = tmp_path / ("out" + "".join(src.suffixes))
    assert_refused(run_fold(src, out, *args), flag, out)


def test_inspect_and_verify_refuse_config_for_onnx():
    assert_refused(run_tool("DOCONV_INSPECT", "doconv-inspect", ONNX, "--config", KERAS_CONFIG), "--config")
    assert_refused(run_tool("DOCONV_VERIFY", "verify-equivalence", ONNX, ONNX, "--config", KERAS_CONFIG), "--config")


def test_with_an_output_folder_each_option_applies_to_the_files_it_fits(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = run_fold(ONNX, KERAS_WEIGHTS, CHECKPOINT, "-o", out, "--config", KERAS_CONFIG, "--keep-names")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([ONNX.name, KERAS_WEIGHTS.name, CHECKPOINT.name])
    assert result.stdout.count("folded") == 3


def test_formats_are_told_by_content_not_by_suffix(tmp_path):
    """A PyTorch checkpoint named .onnx and an ONNX model named .pth fold as what they are."""
    checkpoint = tmp_path / "checkpoint.onnx"
    shutil.copy(CHECKPOINT, checkpoint)
    result = run_fold(checkpoint, tmp_path / "folded.onnx")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "folded.onnx").read_bytes()[:2] == b"PK"
    inspect = run_tool("DOCONV_INSPECT", "doconv-inspect", checkpoint, "--json")
    assert '"format" : "pytorch"' in inspect.stdout or '"format":"pytorch"' in inspect.stdout.replace(" ", "")


@pytest.mark.parametrize("src, name, fmt", [
    (ONNX, "model.h5", "onnx"), (ONNX, "model.pth", "onnx"), (ONNX, "model.params", "onnx"),
    (CHECKPOINT, "weights.params", "pytorch"), (CHECKPOINT, "weights.h5", "pytorch"),
    (FIXTURES / "torch" / "model.safetensors", "weights.pth", "safetensors"),
], ids=["onnx-as-h5", "onnx-as-pth", "onnx-as-params", "pytorch-as-params", "pytorch-as-h5", "safetensors-as-pth"])
def test_content_outranks_every_suffix(tmp_path, src, name, fmt):
    """A suffix only picks the reader of a file nothing recognizes by content: any model
    under another format's suffix is read as what it is."""
    renamed = tmp_path / name
    shutil.copy(src, renamed)
    inspect = run_tool("DOCONV_INSPECT", "doconv-inspect", renamed, "--json")
    assert inspect.returncode == 0, inspect.stderr
    assert f'"format":"{fmt}"' in inspect.stdout.replace(" ", ""), inspect.stdout[:300]


def test_hdf5_after_a_user_block_is_keras(tmp_path):
    """HDF5 allows a user block before its superblock (signature at 512, 1024, ...): such a
    Keras file, with no suffix, is still read as Keras HDF5."""
    h5py = pytest.importorskip("h5py")
    plain = FIXTURES / "keras_h5" / "k2_net_a_weights.h5"
    shifted = tmp_path / "weights-with-user-block"
    with h5py.File(plain, "r") as src, h5py.File(shifted, "w", userblock_size=1024) as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            src.copy(src[name], dst, name=name)
    assert shifted.read_bytes()[:4] != b"\x89HDF"
    inspect = run_tool("DOCONV_INSPECT", "doconv-inspect", shifted, "--json", "--kernel-size", "do_wide=1x3")
    assert inspect.returncode == 0, inspect.stderr
    assert '"format":"keras-h5"' in inspect.stdout.replace(" ", ""), inspect.stdout[:300]


def test_a_zip_that_is_no_model_archive_is_named_as_such(tmp_path):
    import zipfile
    src = tmp_path / "notes.pth"
    with zipfile.ZipFile(src, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    result = run_fold(src, tmp_path / "out.pth")
    assert result.returncode == 2 and "not a model archive" in result.stderr, result.stderr
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.parametrize("src", [ONNX, FIXTURES / "keras_h5" / "k2_net_a.h5"], ids=["onnx", "keras-child"])
def test_paths_that_begin_with_a_dash(tmp_path, src):
    """After "--", a path that begins with '-' is a path for all three tools, also where the
    Keras reader runs in a child process (which must get the "--" too)."""
    shutil.copyfile(src, tmp_path / ("-in" + src.suffix))
    run = lambda tool, *args: run_tool(*tool, *args, cwd=tmp_path)  # noqa: E731
    fold = ("DOCONV_FOLD", "doconv-fold")
    result = run(fold, "--", "-in" + src.suffix, "-out" + src.suffix)
    assert result.returncode == 0 and (tmp_path / ("-out" + src.suffix)).exists(), result.stdout + result.stderr
    result = run(("DOCONV_INSPECT", "doconv-inspect"), "--json", "--", "-in" + src.suffix)
    assert result.returncode == 0 and '"layers"' in result.stdout, result.stderr
    result = run(("DOCONV_VERIFY", "verify-equivalence"), "--", "-in" + src.suffix, "-out" + src.suffix)
    assert result.returncode == 0 and "EQUIVALENT" in result.stdout, result.stdout + result.stderr
