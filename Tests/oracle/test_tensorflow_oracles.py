"""TensorFlow checkpoints (issue 24): doconv-fold turns a tf.keras checkpoint of a DO-Conv
model into one that a plain model (Conv2D where DOConv2D was, built with no custom class)
loads with `assert_consumed()` and that predicts what the DO-Conv model did.

TensorFlow (tensorflow-cpu 2.21 with tf_keras) runs in its own venv as a subprocess:
DOCONV_TF_PYTHON, or the venv scripts/install-tensorflow makes (CI runs it). Every fixture
checkpoint (fixtures/tf, made by fixtures/make_tf_fixtures.py with the real savers:
save_weights, ModelCheckpoint, tf.train.Checkpoint save and write, three shards) is folded
and all are checked in one TensorFlow run; the unfolded originals go through the same check
and must fail it, so the check is known to be able to fail.
"""
import functools
import json
import os
import pathlib
import subprocess

import pytest

from conftest import FIXTURES, manifest, run_fold, run_inspect, run_verify

TF = FIXTURES / "tf"
ORACLE = pathlib.Path(__file__).with_name("tf_oracle.py")
ENTRIES = [e for e in manifest(TF / "MANIFEST.json") if e["kind"] == "checkpoint"]
FOLDABLE = ENTRIES  # sliced tensors too: read whole from their slices, written whole
SAVED_MODELS = [e for e in manifest(TF / "MANIFEST.json") if e["kind"].startswith("saved_model")]
# What a weights-only fold (no --config) must be told: the non-square and 1x1 layers.
KERNEL_SIZES = {"net_a": ["do_wide=1x3", "do_point=1x1"], "net_dw": ["do_dil=3x2"]}


@functools.lru_cache(maxsize=None)
def tf_python():
    """The venv python that imports tensorflow 2.21 and tf_keras, or a failed test saying how."""
    configured = os.environ.get("DOCONV_TF_PYTHON")
    venv = pathlib.Path(os.environ.get("DOCONV_TF_VENV", pathlib.Path.home() / ".cache" / "doconv-tensorflow"))
    python = pathlib.Path(configured) if configured else venv / "bin" / "python"
    how = "run scripts/install-tensorflow (CI does) or set DOCONV_TF_PYTHON to a python with tensorflow 2.21 and tf_keras"
    if not python.exists():
        pytest.fail(f"TensorFlow is not installed: {python} does not exist; {how}", pytrace=False)
    return str(python)


def style(entry):
    saver = entry["saver"]
    if saver.startswith("tf.train.Checkpoint.save"):
        return "tf.train.Checkpoint.save"
    return "tf.train.Checkpoint.write" if saver.startswith("tf.train.Checkpoint") else "keras"


def depthwise_layers(entry):
    """The DO-DConv layers (groups = Cin), which the fold writes as DepthwiseConv2D."""
    return [layer["name"] for layer in entry["do_layers"] if layer["groups"] == layer["in_channels"] > 1]


def job(entry, checkpoint, depthwise=True):
    return {"config": str(TF / entry["config"]), "checkpoint": str(checkpoint), "expected": str(TF / entry["expected"]),
            "style": style(entry), "depthwise": depthwise_layers(entry) if depthwise else []}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """Folds every checkpoint (with --config, and weights-only with --kernel-size), then
    runs TensorFlow once over the folded ones and the originals."""
    out = tmp_path_factory.mktemp("tf")
    jobs, names = [], []
    for entry in FOLDABLE:
        name = entry["file"].replace("/", "_")
        variants = {"config": ["--config", str(TF / entry["config"])],
                    "flags": [a for size in KERNEL_SIZES[entry["net"]] for a in ("--kernel-size", size)]}
        for variant, args in variants.items():
            folded = out / f"{name}.{variant}"
            result = run_fold(*args, TF / entry["file"], folded)
            assert result.returncode == 0, f"{entry['file']} ({variant}): {result.stderr}"
            jobs.append(job(entry, folded))
            names.append((entry["file"], variant))
        jobs.append(job(entry, TF / entry["file"]))
        names.append((entry["file"], "original"))
        if depthwise_layers(entry):
            folded = out / f"{name}.grouped"
            result = run_fold("--keep-grouped", "--config", str(TF / entry["config"]), TF / entry["file"], folded)
            assert result.returncode == 0, f"{entry['file']} (--keep-grouped): {result.stderr}"
            jobs.append(job(entry, folded, depthwise=False))
            names.append((entry["file"], "grouped"))
    for entry in SAVED_MODELS:
        folded = out / entry["file"]
        result = run_fold("--config", TF / entry["config"], TF / entry["file"], folded)
        assert result.returncode == 0, f"{entry['file']}: {result.stderr}"
        jobs.append({"config": str(TF / entry["config"]), "checkpoint": str(folded), "expected": str(TF / entry["expected"]), "style": "keras",
                     "depthwise": depthwise_layers(entry)})
        names.append((entry["file"], "saved model"))
        # The whole plain model as .h5; tf_keras's own SavedModel needs no --config (its
        # keras_metadata.pb holds the config).
        config = [] if entry["kind"] == "saved_model_keras" else ["--config", TF / entry["config"]]
        result = run_fold(*config, TF / entry["file"], out / (entry["file"] + ".h5"))
        assert result.returncode == 0, f"{entry['file']} -> .h5: {result.stderr}"
        jobs.append({"model": str(out / (entry["file"] + ".h5")), "expected": str(TF / entry["expected"])})
        names.append((entry["file"], "keras model"))
    # Keras outputs of a DO-DConv (issue 24, item 4): DepthwiseConv2D by default, which
    # tf2onnx exports; Conv2D(groups=Cin) with --keep-grouped, which it does not.
    keras_dw = FIXTURES / "keras_h5" / "k2_net_dw.h5"
    for variant, args in {"depthwise": [], "grouped": ["--keep-grouped"]}.items():
        folded = out / f"k2_net_dw.{variant}.h5"
        result = run_fold(*args, keras_dw, folded)
        assert result.returncode == 0, result.stderr
        jobs.append({"model": str(folded), "expected": str(FIXTURES / "keras_h5" / "k2_net_dw.expected.npz"), "onnx": True})
        names.append(("k2_net_dw.h5", variant))
    listing = out / "jobs.json"
    listing.write_text(json.dumps(jobs))
    done = subprocess.run([tf_python(), str(ORACLE), str(listing)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(names, json.loads(done.stdout.strip().splitlines()[-1])))


@pytest.mark.parametrize("variant", ["config", "flags"])
@pytest.mark.parametrize("entry", FOLDABLE, ids=lambda e: e["file"])
def test_plain_twin_loads_the_folded_checkpoint_and_predicts_the_same(verdicts, entry, variant):
    verdict = verdicts[(entry["file"], variant)]
    assert "error" not in verdict, verdict.get("error")
    assert verdict["consumed"]
    assert verdict["relative_error"] < 1e-5


@pytest.mark.parametrize("entry", [e for e in FOLDABLE if depthwise_layers(e)], ids=lambda e: e["file"])
def test_a_folded_dodconv_is_a_depthwise_conv_unless_kept_grouped(verdicts, entry):
    """By default a DO-DConv's kernel is DepthwiseConv2D's depthwise_kernel (M, N, Cin,
    Cout/Cin); with --keep-grouped it stays Conv2D(groups=Cin)'s kernel, and the
    Conv2D twin loads that one instead."""
    for layer in depthwise_layers(entry):
        key = next(k for k in json.loads((TF / entry["variables"]).read_text())["variables"]
                   if k.get("full_name") == f"{layer}/kernel")["key"]
        depthwise_key = key.replace("/kernel/", "/depthwise_kernel/")
        assert depthwise_key in verdicts[(entry["file"], "config")]["variables"]
        assert key not in verdicts[(entry["file"], "config")]["variables"]
        assert key in verdicts[(entry["file"], "grouped")]["variables"]
    grouped = verdicts[(entry["file"], "grouped")]
    assert "error" not in grouped, grouped.get("error")
    assert grouped["consumed"] and grouped["relative_error"] < 1e-5


@pytest.mark.parametrize("entry", SAVED_MODELS, ids=lambda e: e["file"])
def test_a_saved_models_weights_fold_into_a_checkpoint_the_plain_twin_loads(verdicts, entry):
    verdict = verdicts[(entry["file"], "saved model")]
    assert "error" not in verdict, verdict.get("error")
    assert verdict["relative_error"] < 1e-5


@pytest.mark.parametrize("entry", SAVED_MODELS, ids=lambda e: e["file"])
def test_a_saved_model_folds_into_a_plain_keras_model(verdicts, entry):
    """doconv-fold saved_model_dir plain.h5: tf_keras.models.load_model loads it with no
    custom class (every DOConv2D now a Conv2D) and it predicts the same."""
    verdict = verdicts[(entry["file"], "keras model")]
    assert "error" not in verdict, verdict.get("error")
    assert "DOConv2D" not in verdict["classes"] and "Conv2D" in verdict["classes"]
    assert verdict["relative_error"] < 1e-5


def test_a_folded_dodconv_is_a_depthwise_conv_that_tf2onnx_exports(verdicts):
    """tf_keras runs Conv2D(groups=Cin) through an XLA-compiled function that tf2onnx leaves
    as a PartitionedCall onnxruntime refuses; the DepthwiseConv2D doconv writes instead
    exports, and onnxruntime predicts what the DO-Conv model did."""
    depthwise = verdicts[("k2_net_dw.h5", "depthwise")]
    assert "error" not in depthwise, depthwise.get("error")
    assert "DepthwiseConv2D" in depthwise["classes"] and depthwise["relative_error"] < 1e-5
    assert "onnx_error" not in depthwise, depthwise.get("onnx_error")
    assert depthwise["onnx_relative_error"] < 1e-5
    grouped = verdicts[("k2_net_dw.h5", "grouped")]
    assert "DepthwiseConv2D" not in grouped["classes"] and grouped["relative_error"] < 1e-5
    assert "onnx_error" in grouped  # why DepthwiseConv2D is the default: the check can fail


def test_a_saved_model_without_metadata_needs_the_config_for_a_keras_file(tmp_path, clean_tmpdir):
    entry = next(e for e in SAVED_MODELS if e["kind"] == "saved_model")
    refused(run_fold("--kernel-size", "do_wide=1x3", "--kernel-size", "do_point=1x1", TF / entry["file"] / "saved_model.pb", tmp_path / "plain.h5"),
            "keras_metadata.pb", "--config")
    assert not list(tmp_path.iterdir())


def test_a_tflite_file_is_already_folded(tmp_path):
    out = tmp_path / "copy.tflite"
    result = run_fold(TF / "net_a.tflite", out)
    assert result.returncode == 0, result.stderr
    assert "already folded" in result.stdout
    assert out.read_bytes() == (TF / "net_a.tflite").read_bytes()
    report = run_inspect("--json", TF / "net_a.tflite")
    assert report.returncode == 0 and json.loads(report.stdout)["layers"] == []


@pytest.mark.parametrize("entry", FOLDABLE, ids=lambda e: e["file"])
def test_the_unfolded_original_fails_the_same_check(verdicts, entry):
    """The check can fail: D and the 3-D kernels do not fit the plain twin."""
    assert "error" in verdicts[(entry["file"], "original")]


@pytest.mark.parametrize("entry", [e for e in FOLDABLE if e["key_prefix"] == ""], ids=lambda e: e["file"])
def test_folded_keys_are_the_plain_twins_own(verdicts, entry):
    """A Keras checkpoint folded holds exactly what the plain twin's save_weights writes:
    the same keys with the same shapes (no D, no optimizer state)."""
    twin = {k["key"]: k["shape"] for k in entry["plain_twin_keys"]}
    assert verdicts[(entry["file"], "config")]["variables"] == twin


@pytest.mark.parametrize("entry", FOLDABLE, ids=lambda e: e["file"])
def test_the_folded_checkpoint_keeps_the_shards(tmp_path, entry):
    folded = tmp_path / "folded"
    assert run_fold("--config", TF / entry["config"], TF / entry["file"], folded).returncode == 0
    shards = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("folded.data-"))
    count = entry["num_shards"]
    assert shards == [f"folded.data-{k:05d}-of-{count:05d}" for k in range(count)]


@pytest.mark.parametrize("entry", [e for e in FOLDABLE if e["sliced"]], ids=lambda e: e["file"])
def test_a_sliced_checkpoint_keeps_its_slicing(tmp_path, entry):
    """A checkpoint cut by a size-limited policy (MaxShardSizePolicy) stays cut: its
    untouched tensors keep their slices, so no shard outgrows the saver's largest (the
    folded kernels, whose shapes changed, are written whole; the plain twin loads it all,
    test_plain_twin_loads_the_folded_checkpoint_and_predicts_the_same)."""
    folded = tmp_path / "folded"
    assert run_fold("--config", TF / entry["config"], TF / entry["file"], folded).returncode == 0
    source = TF / entry["file"]
    largest = max(p.stat().st_size for p in source.parent.glob(source.name + ".data-*"))
    sizes = [p.stat().st_size for p in tmp_path.glob("folded.data-*")]
    assert len(sizes) == entry["num_shards"] and max(sizes) <= largest, (sizes, largest)


def test_the_index_names_the_checkpoint_too(tmp_path):
    entry = FOLDABLE[0]
    index = TF / (entry["file"] + ".index")
    result = run_fold("--json", "--config", TF / entry["config"], index, tmp_path / "out.index")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["results"][0]["format"] == "tf-checkpoint"
    assert (tmp_path / "out.index").exists() and (tmp_path / "out.data-00000-of-00001").exists()


def test_inspect_lists_the_layers():
    entry = next(e for e in FOLDABLE if e["net"] == "net_a")
    result = run_inspect("--json", "--config", TF / entry["config"], TF / entry["file"])
    assert result.returncode == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    assert sorted(layer["name"] for layer in layers) == sorted(layer["name"] for layer in entry["do_layers"])


def refused(result, *phrases):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_a_data_shard_alone_names_the_prefix(tmp_path, clean_tmpdir):
    shard = TF / "net_a_weights" / "ckpt.data-00000-of-00001"
    refused(run_fold(shard, tmp_path / "out"), "data shard", str(TF / "net_a_weights" / "ckpt"))
    assert not list(tmp_path.iterdir())


def test_a_weights_only_checkpoint_with_an_undecidable_layer_is_refused(tmp_path, clean_tmpdir):
    """A 1x1 DOConv2D has no D: without the config it cannot be told from a Conv1D, and
    leaving it unfolded would make a checkpoint neither model loads."""
    src = TF / "net_a_weights" / "ckpt"
    refused(run_fold("--kernel-size", "do_wide=1x3", src, tmp_path / "out"), "do_point", "--kernel-size do_point=1x1", "--config")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["truncated index", "bad magic", "missing shard", "flipped data bits"])
def test_damaged_checkpoints_fail_cleanly(tmp_path, clean_tmpdir, damage):
    source = TF / "net_a_weights"
    copy = tmp_path / "in"
    copy.mkdir()
    for file in source.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    index, data = copy / "ckpt.index", copy / "ckpt.data-00000-of-00001"
    if damage == "truncated index":
        index.write_bytes(index.read_bytes()[:-20])
    elif damage == "bad magic":
        raw = bytearray(index.read_bytes())
        raw[-1] ^= 0xFF
        index.write_bytes(bytes(raw))
    elif damage == "missing shard":
        data.unlink()
    else:  # one bit in every 64 bytes, so the tensors the fold reads are hit too
        raw = bytearray(data.read_bytes())
        for k in range(0, len(raw), 64):
            raw[k] ^= 0x01
        data.write_bytes(bytes(raw))
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    out = tmp_path / "out"
    out.mkdir()
    refused(run_fold("--config", TF / "net_a.json", copy / "ckpt", out / "folded"))
    assert not list(out.iterdir())
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_allow_partial_leaves_the_undecidable_layer_and_says_so(tmp_path):
    src = TF / "net_a_weights" / "ckpt"
    result = run_fold("--kernel-size", "do_wide=1x3", "--allow-partial", src, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "folded 3 layers" in result.stdout and "not folded: do_point" in result.stdout, result.stdout


def test_json_documents_fit_the_schemas(tmp_path):
    """fold, inspect and verify --json on each TensorFlow format are valid against the
    committed schemas, which name these formats."""
    import jsonschema
    schemas = {name: json.loads((FIXTURES.parent / "schemas" / f"{name}.schema.json").read_text())
               for name in ("fold-result", "inspect-report", "verify-result")}
    checkpoint, saved = TF / "net_a_weights" / "ckpt", TF / "net_a_savedmodel"
    config = ["--config", str(TF / "net_a.json")]
    for source, name, out in [(checkpoint, "tf-checkpoint", tmp_path / "a"), (saved, "tf-savedmodel", tmp_path / "b"),
                              (TF / "net_a.tflite", "tflite", tmp_path / "c.tflite")]:
        extra = [] if name == "tflite" else config
        fold = run_fold("--json", *extra, source, out)
        assert fold.returncode == 0, fold.stderr
        document = json.loads(fold.stdout)
        jsonschema.Draft202012Validator(schemas["fold-result"]).validate(document)
        assert document["results"][0]["format"] == name
        report = run_inspect("--json", *extra, source)
        jsonschema.Draft202012Validator(schemas["inspect-report"]).validate(json.loads(report.stdout))
        if name != "tflite":
            verdict = run_verify("--json", *config, source, out)
            assert verdict.returncode == 0, verdict.stdout + verdict.stderr
            jsonschema.Draft202012Validator(schemas["verify-result"]).validate(json.loads(verdict.stdout))
    # A SavedModel against the .h5 written from it (checked as a Keras pair, named by ORIGINAL's format).
    h5 = tmp_path / "plain.h5"
    assert run_fold(saved, h5).returncode == 0
    verdict = run_verify("--json", saved, h5)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    document = json.loads(verdict.stdout)
    jsonschema.Draft202012Validator(schemas["verify-result"]).validate(document)
    assert document["format"] == "tf-savedmodel" and document["end_to_end"]["outputs"]
