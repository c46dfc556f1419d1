"""verify-equivalence on TensorFlow checkpoints: a folded checkpoint rewritten by TensorFlow's
own bundle writer (tf.raw_ops.SaveV2, through tf_oracle.py tamper) is EQUIVALENT unchanged,
and NOT EQUIVALENT (exit 1), naming what differs, after each mutation."""
import subprocess

import pytest

from conftest import run_fold, run_verify
from test_tensorflow_oracles import ORACLE, TF, tf_python
from verify_support import assert_mutation_named

SOURCE = TF / "net_a_weights" / "ckpt"
CONFIG = ["--config", str(TF / "net_a.json")]
KEY = "{}/.ATTRIBUTES/VARIABLE_VALUE".format
# key -> (scale, what the failing line names)
MUTATIONS = {
    "folded kernel x(1+1e-3)": (KEY("layer_with_weights-0/kernel"), "1.001", "do_stem"),
    "folded 1x1 kernel negated": (KEY("layer_with_weights-5/kernel"), "-1", "do_point"),
    "bias +1 ulp": (KEY("layer_with_weights-2/bias"), "ulp", "layer_with_weights-2/bias"),
    "BatchNormalization gamma x2": (KEY("layer_with_weights-1/gamma"), "2", "layer_with_weights-1/gamma"),
    "plain Conv2D kernel +1 ulp": (KEY("layer_with_weights-4/kernel"), "ulp", "layer_with_weights-4/kernel"),
}


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfverify") / "folded"
    result = run_fold(*CONFIG, SOURCE, out)
    assert result.returncode == 0, result.stderr
    return out


def tamper(folded, out, key, scale):
    done = subprocess.run([tf_python(), str(ORACLE), "tamper", str(folded), str(out), key, scale], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_tensorflows_own_rewrite_is_equivalent(folded, tmp_path):
    same = tamper(folded, tmp_path / "same", KEY("layer_with_weights-0/kernel"), "1")
    result = run_verify(*CONFIG, SOURCE, same)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_fold_is_not_equivalent(folded, tmp_path, mutation):
    key, scale, named = MUTATIONS[mutation]
    assert_mutation_named(run_verify(*CONFIG, SOURCE, tamper(folded, tmp_path / "bad", key, scale)), mutation, named)


def test_the_unfolded_original_is_not_its_own_fold():
    result = run_verify(*CONFIG, SOURCE, SOURCE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "D) is still in FOLDED" in result.stdout


def test_kernel_sizes_come_from_original_and_the_flags_not_from_folded(folded):
    """Weights only and no flag: the 1x3 layer's size cannot be had from ORIGINAL, and is
    not taken from FOLDED's kernel."""
    result = run_verify(SOURCE, folded)
    assert result.returncode == 2 and "do_wide" in result.stderr, result.stdout + result.stderr
    result = run_verify("--kernel-size", "do_wide=1x3", "--kernel-size", "do_point=1x1", SOURCE, folded)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_saved_model_and_its_folded_checkpoint(tmp_path):
    saved = TF / "net_a_savedmodel"
    out = tmp_path / "plain"
    assert run_fold(*CONFIG, saved, out).returncode == 0
    result = run_verify(*CONFIG, saved, out)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tamper(out, tmp_path / "bad", KEY("layer_with_weights-0/kernel"), "1.001")
    assert_mutation_named(run_verify(*CONFIG, saved, bad), "SavedModel kernel x(1+1e-3)", "do_stem")


DW_SOURCE = TF / "net_dw_weights" / "ckpt"
DW_CONFIG = ["--config", str(TF / "net_dw.json")]


@pytest.mark.parametrize("form", ["depthwise", "grouped"])
def test_a_dodconv_as_depthwise_or_grouped_conv(tmp_path, form):
    """A DO-DConv's folded kernel is checked under either name, and the name must fit the
    shape: a DepthwiseConv2D's (M, N, Cin, Cout/Cin) under Conv2D's `kernel`, or the
    grouped (M, N, 1, Cout) under `depthwise_kernel`, is a structural difference (each class
    loads only its own), though the bytes are the same."""
    out = tmp_path / "folded"
    flags = [] if form == "depthwise" else ["--keep-grouped"]
    assert run_fold(*flags, *DW_CONFIG, DW_SOURCE, out).returncode == 0
    result = run_verify(*DW_CONFIG, DW_SOURCE, out)
    assert result.returncode == 0 and "verdict: EQUIVALENT" in result.stdout, result.stdout + result.stderr
    key = KEY("layer_with_weights-0/depthwise_kernel" if form == "depthwise" else "layer_with_weights-0/kernel")
    scaled = tamper(out, tmp_path / "scaled", key, "1.001")
    assert_mutation_named(run_verify(*DW_CONFIG, DW_SOURCE, scaled), f"{form} kernel x(1+1e-3)", "do_dw")
    other = "3,3,1,8" if form == "depthwise" else "3,3,8,1"
    reshaped = tamper(out, tmp_path / "reshaped", key, "shape=" + other)
    result = run_verify(*DW_CONFIG, DW_SOURCE, reshaped)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("under a Conv2D's name" if form == "grouped" else "is a DepthwiseConv2D's kernel but has shape") in result.stdout


def test_a_saved_model_and_its_folded_keras_model(tmp_path):
    """doconv-fold DIR plain.h5, then verify-equivalence DIR plain.h5: the SavedModel's
    weights against the .h5's, kernel by kernel, and both models run end to end (ORIGINAL
    from keras_metadata.pb's config, FOLDED from its own); a changed kernel or weight in the
    .h5 is named."""
    import h5py
    import numpy as np
    saved = TF / "net_a_savedmodel"
    out = tmp_path / "plain.h5"
    assert run_fold(saved, out).returncode == 0
    result = run_verify(saved, out)
    assert result.returncode == 0 and "verdict: EQUIVALENT" in result.stdout, result.stdout + result.stderr
    assert "end to end: not run" not in result.stdout and "end to end" in result.stdout, result.stdout
    for dataset, scale, named in [("/model_weights/do_stem/do_stem/kernel:0", 1.001, "do_stem"),
                                  ("/model_weights/plain_conv/plain_conv/bias:0", 2.0, "plain_conv")]:
        bad = tmp_path / f"bad_{named}.h5"
        bad.write_bytes(out.read_bytes())
        with h5py.File(bad, "r+") as f:
            f[dataset][...] = np.asarray(f[dataset]) * scale
        assert_mutation_named(run_verify(saved, bad), f"{dataset} x{scale}", named)


def test_a_saved_model_without_metadata_is_verified_with_the_config(tmp_path):
    saved = TF / "net_a_tf_savedmodel"
    out = tmp_path / "plain.h5"
    assert run_fold(*CONFIG, saved, out).returncode == 0
    result = run_verify(saved, out)
    assert result.returncode == 2 and "--config" in result.stderr, result.stdout + result.stderr
    result = run_verify(*CONFIG, saved, out)
    assert result.returncode == 0 and "verdict: EQUIVALENT" in result.stdout, result.stdout + result.stderr
