"""doconv-inspect on every fixture, checked independently: the JSON document against the
committed JSON Schema (jsonschema), the geometry against the exporters' manifests, D's
distance from the identity and the H map against numpy on the ONNX initializers, and the
SVG as XML (xml.etree)."""
import json
import xml.etree.ElementTree as ET

import jsonschema
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import FIXTURES, ROOT, manifest, run_inspect

KERAS = FIXTURES / "keras_h5"
SCHEMA = json.loads((ROOT / "schemas" / "inspect-report.schema.json").read_text())
SVG_NS = "{http://www.w3.org/2000/svg}"


def onnx_entries():
    return manifest()


def keras_entries():
    return manifest(KERAS / "MANIFEST.json")


def keras_arguments(entry):
    """Keras 2 save_weights and Keras 3 .weights.h5 files carry no config: pass the model's JSON."""
    args = [KERAS / entry["file"]]
    if entry["format"] in ("h5_weights", "weights_h5"):
        args += ["--config", KERAS / entry["config"]]
    return args


def onnx_layers(entry):
    """The manifest's layers as the ONNX file shows them. With constant folding, TorchScript
    (which Keras 3's export also uses) already folds 1x1 layers, whose kernel is only a
    reshape of W: they are plain convs in the file. Feature-composition fixtures are pair_*."""
    form = "feature composition" if entry["file"].startswith("pair_") else "kernel composition"
    return [
        dict(kind=l["kind"], in_channels=l["in_channels"], out_channels=l["out_channels"], kernel=l["kernel"],
             groups=l["groups"], d_mul=l["d_mul"], stride=l["stride"], dilation=l["dilation"], form=l.get("form", form))
        for l in entry["do_layers"]
        if not (entry["exporter"] in ("torchscript", "keras3") and l["kernel"] == [1, 1])
    ]


# Every fixture as (id, arguments, manifest layers in the common shape, refused count).
CASES = [
    (e["file"], [FIXTURES / e["file"]], onnx_layers(e), e.get("refused", 0))
    for e in onnx_entries()
] + [
    ("keras_h5/" + e["file"], keras_arguments(e),
     [dict(name=l["name"], in_channels=l["in_channels"], out_channels=l["filters"], kernel=l["kernel"],
           groups=l["groups"], d_mul=l["d_mul"], has_d=l["has_d"],
           form="feature composition" if l.get("separable") else "kernel composition") for l in e["do_layers"]],
     e.get("refused", 0))
    for e in keras_entries()
]


def kind_of(layer):
    if layer["groups"] == 1:
        return "DO-Conv"
    return "DO-DConv" if layer["groups"] == layer["in_channels"] else "DO-GConv"


def trained_parameters(layer):
    m, n = layer["kernel"]
    per_group = layer["in_channels"] // layer["groups"]
    d = 0 if m * n == 1 else layer["in_channels"] * m * n * layer["d_mul"]
    return d + layer["out_channels"] * per_group * layer["d_mul"]


@pytest.fixture(scope="module")
def reports():
    """doconv-inspect --json on every fixture, run once."""
    out = {}
    for case_id, args, _, _ in CASES:
        result = run_inspect(*args, "--json")
        assert result.returncode == 0, f"{case_id}: {result.stderr}"
        out[case_id] = json.loads(result.stdout)
    return out


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_report_validates_and_matches_the_manifest(case, reports):
    case_id, _, expected, refused = case
    report = reports[case_id]
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(report)
    assert len(report["layers"]) == len(expected), [l["name"] for l in report["layers"]]
    assert len(report["rejected"]) == refused, report["rejected"]
    for layer, want in zip(report["layers"], expected):
        for key, value in want.items():
            assert layer[key] == value, (layer["name"], key)
        assert layer["kind"] == kind_of(layer)
        m, n = layer["kernel"]
        per_group = layer["in_channels"] // layer["groups"]
        assert layer["params_trained"] == trained_parameters(layer), layer["name"]
        assert layer["params_folded"] == layer["out_channels"] * per_group * m * n
        assert layer["macs_per_output_position"] == layer["params_folded"]
        if layer["form"] == "kernel composition":
            assert layer["macs_per_output_position_unfolded"] == layer["macs_per_output_position"]
        else:  # a depthwise conv into in_channels * d_mul features, then a 1x1 conv
            assert layer["macs_per_output_position_unfolded"] == (
                layer["in_channels"] * layer["d_mul"] * m * n + layer["out_channels"] * per_group * layer["d_mul"])
        width = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[layer["element_type"]]
        assert layer["bytes_saved"] == (layer["params_trained"] - layer["params_folded"]) * width
        h = np.array(layer["h_map"], dtype=np.float64)
        assert h.shape == (m, n)
        if layer["has_d"]:
            # The fixtures' D are random: far from the identity, and they move the kernel.
            assert layer["d_deviation"] > 0 and h.max() > 0, layer["name"]
        else:
            assert layer["d_deviation"] == 0 and not h.any()
    totals = report["totals"]
    layers = report["layers"]
    assert totals["layers"] == len(layers)
    assert sum(totals["layers_by_kind"].values()) == len(layers)
    for kind, count in totals["layers_by_kind"].items():
        assert count == sum(1 for l in layers if l["kind"] == kind)
    for key in ("params_trained", "params_folded", "bytes_saved", "macs_per_output_position", "macs_per_output_position_unfolded"):
        assert totals[key] == sum(l[key] for l in layers), key
    assert totals["params_saved"] == totals["params_trained"] - totals["params_folded"]
    assert totals["macs_unchanged_by_folding"] == all(l["form"] == "kernel composition" for l in layers)


def composed_d_layers(path):
    """(trained D, identity offset d_diag, W) of every Einsum fed by Add(D, d_diag) in a
    TorchScript no-constant-folding export, in graph order."""
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def value(name):
        while name not in initializers:
            node = producers[name]
            assert node.op_type in ("Identity", "Reshape"), node.op_type
            name = node.input[0]
        return initializers[name]

    layers = []
    for node in graph.node:
        if node.op_type != "Einsum":
            continue
        add = producers[node.input[0]]
        assert add.op_type == "Add"
        layers.append((value(add.input[0]), value(add.input[1]), value(node.input[1])))
    return layers


NOFOLD = [e for e in onnx_entries() if e["exporter"] == "torchscript_nofold" and e["do_layers"] and not e["file"].startswith("pair_")]


@pytest.mark.parametrize("entry", NOFOLD, ids=[e["file"] for e in NOFOLD])
def test_d_deviation_and_h_map_match_numpy(entry, reports):
    layers = [l for l in reports[entry["file"]]["layers"] if l["form"] == "kernel composition" and l["has_d"]]
    composed = composed_d_layers(FIXTURES / entry["file"])
    assert len(layers) == len(composed)
    for layer, (d, d_diag, w) in zip(layers, composed):
        d = d.astype(np.float64)
        expected = np.linalg.norm(d) / np.linalg.norm(d_diag.astype(np.float64))
        # D + I is composed in float32 before the report subtracts I again.
        assert layer["d_deviation"] == pytest.approx(expected, rel=1e-4), layer["name"]
        # The fold is linear in D: W' - W is the fold of the trained D alone.
        cout, cin, g = layer["out_channels"], layer["in_channels"], layer["groups"]
        m, n = layer["kernel"]
        w = w.astype(np.float64).reshape(cout // g, cin, layer["d_mul"])
        delta = np.einsum("ims,ois->oim", d, w).reshape(cout, cin // g, m, n)
        h = np.abs(delta).sum(axis=(0, 1))
        np.testing.assert_allclose(np.array(layer["h_map"]), h, rtol=1e-4, atol=1e-6 * max(1.0, h.max()))


SVG_CASES = [c for c in CASES if not c[0].startswith("keras_h5/") or c[0].endswith((".keras", "k2_net_a.h5", "k3_net_dw.h5"))]


@pytest.mark.parametrize("case", SVG_CASES, ids=[c[0] for c in SVG_CASES])
def test_svg_is_well_formed_with_one_map_per_layer(case, reports, tmp_path):
    case_id, args, _, _ = case
    svg = tmp_path / "maps.svg"
    result = run_inspect(*args, "--svg", svg)
    assert result.returncode == 0, result.stderr
    root = ET.parse(svg).getroot()
    assert root.tag == SVG_NS + "svg"
    assert root.find(SVG_NS + "title") is not None
    maps = [g for g in root.iter(SVG_NS + "g") if g.get("class") == "layer-map"]
    names = [l["name"] for l in reports[case_id]["layers"]]
    assert [g.get("data-layer") for g in maps] == names
    for g, layer in zip(maps, reports[case_id]["layers"]):
        m, n = layer["kernel"]
        cells = [r for r in g.iter(SVG_NS + "rect") if r.find(SVG_NS + "title") is not None]
        assert len(cells) == m * n, layer["name"]
    if names:
        assert any(g.get("class") == "color-scale" for g in root.iter(SVG_NS + "g"))


def test_model_without_do_conv_is_one_line():
    result = run_inspect(FIXTURES / "plain_cnn.onnx")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().count("\n") == 0
    assert "no DO-Conv layer" in result.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    result = run_inspect(bad)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(bad) in result.stderr
    usage = run_inspect()
    assert usage.returncode == 2
