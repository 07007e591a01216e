"""int8 files that give the same answers on every CPU: 7-bit weights, the saturation check that
proves it on a file (and refuses one quantized the old way), re-quantizing an .onnx file from
its own weights, and the same labels on an emulated AVX2 CPU (qemu) as on this one."""

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from fercli.errors import FercliError
from fercli.export.int8 import dequantize, quantize_int8
from fercli.export.metadata import set_metadata
from fercli.export.saturation import INT16_MAX, check_saturation, integer_products
from fercli.predict.onnx_model import OnnxModel, preprocess

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def exports(trained_run, synth_root, tmp_path_factory):
    """The session's short run exported as fp32 and int8 (today's way), and an int8 file made
    the old way (full 8-bit weights): {"fp32": path, "int8": path, "old": path}."""
    from dataclasses import replace

    from fercli.export import export_onnx
    from fercli.export.checks import sample_images

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("int8")
    best = trained_run[0] / "best.pt"
    paths = {"fp32": folder / "fp32.onnx", "int8": folder / "int8.onnx", "old": folder / "old.onnx"}
    export_onnx(best, paths["fp32"])
    export_onnx(best, paths["int8"], quantize="int8", data_root=synth_root, min_agreement=0.9)
    info = OnnxModel(paths["fp32"], "cpu").info
    calibration = sample_images(synth_root, "train", info.classes, 48, 200, seed=1)
    quantize_int8(paths["fp32"], paths["old"], preprocess(calibration, info), info, False)
    old = onnx.load(str(paths["old"]))
    set_metadata(old, replace(info, precision="int8"))
    onnx.save(old, str(paths["old"]))
    return paths


def faces(n=48, seed=3):
    """Smooth random faces-like images with the full range of grey levels."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 6, 6)).astype(np.float32)
    images = np.kron(base, np.ones((8, 8), np.float32))
    return np.clip(images + rng.normal(0, 20, images.shape), 0, 255).astype(np.uint8)


def test_int8_export_has_7_bit_weights_and_passes_the_saturation_check(exports):
    model = onnx.load(str(exports["int8"]))
    products = check_saturation(model)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert 0 < len(products) < len(convs) + 1  # the last layer stays fp32
    for p in products:
        assert (p.activation_type, p.weight_type) == ("uint8", "int8")
        assert p.activation_max == 255 and 32 < p.weight_max <= 64
        assert p.pair_max <= INT16_MAX and p.safe


def test_saturation_check_refuses_a_file_quantized_the_old_way(exports):
    products = integer_products(onnx.load(str(exports["old"])))
    assert products and max(p.weight_max for p in products) == 127
    with pytest.raises(FercliError) as raised:
        check_saturation(exports["old"])
    message = str(raised.value)
    assert "\n" not in message
    assert f"{len(products)} of {len(products)} integer products can overflow" in message
    assert "2 x 255 x 127 = 64770 > 32767" in message
    assert "fercli export-onnx MODEL.onnx --quantize int8" in message


def test_export_writes_nothing_that_can_saturate(trained_run, synth_root, tmp_path, monkeypatch):
    import fercli.export.exporter as exporter
    from fercli.export import export_onnx

    old_way = exporter.quantize_int8

    def eight_bit(*args):
        return old_way(*args, reduce_range=False)

    monkeypatch.setattr(exporter, "quantize_int8", eight_bit)
    out = tmp_path / "m.onnx"
    with pytest.raises(FercliError, match="can overflow 16 bits on CPUs without VNNI"):
        export_onnx(trained_run[0] / "best.pt", out, quantize="int8", data_root=synth_root)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_dequantize_gives_an_fp32_graph_that_predicts_what_the_int8_file_does(exports, tmp_path):
    model = dequantize(onnx.load(str(exports["old"])))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}
    assert "Relu" in ops  # the Relus the quantizer folded into uint8 zero points are back
    assert all(t.data_type != onnx.TensorProto.INT8 for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "deq.onnx"
    onnx.save(model, str(path))
    images = faces()
    int8 = OnnxModel(exports["old"], "cpu").predict_proba(images)
    fp32 = OnnxModel(path, "cpu").predict_proba(images)
    assert np.abs(int8 - fp32).max() < 0.1  # int8 rounding, nothing more
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.9


def test_export_onnx_requantizes_an_old_int8_file(exports, synth_root, tmp_path, run_cli):
    source = tmp_path / "old.onnx"
    shutil.copyfile(exports["old"], source)
    before = source.read_bytes()
    out = tmp_path / "new.onnx"
    args = ["export-onnx", source, "--quantize", "int8", "--data", synth_root, "-o", out]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    assert (
        "Saturation check: " in result.stderr and "the same integers on every CPU" in result.stderr
    )
    assert source.read_bytes() == before  # the source is never touched
    model = OnnxModel(out, "cpu")
    assert model.info.precision == "int8"
    assert model.info.extra["requantized_from"] == "old.onnx (int8)"
    assert max(p.weight_max for p in check_saturation(out)) <= 64
    images = faces()
    old = OnnxModel(source, "cpu").predict_proba(images).argmax(1)
    assert (model.predict_proba(images).argmax(1) == old).mean() >= 0.9


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quantize", "int8"], "pass one MODEL.onnx with --quantize int8 --data ROOT"),
        (["--data", "DATA"], "pass one MODEL.onnx with --quantize int8 --data ROOT"),
        (["--quantize", "int8", "--data", "DATA", "-o", "SOURCE"], "never in place"),
        (["--quantize", "int8", "--data", "NOWHERE"], "has no train folder to calibrate on"),
    ],
)
def test_requantizing_refuses_in_one_line(exports, synth_root, tmp_path, run_cli, args, message):
    source = tmp_path / "m.onnx"
    shutil.copyfile(exports["old"], source)
    fill = {"DATA": synth_root, "SOURCE": source, "NOWHERE": tmp_path / "nowhere"}
    result = run_cli("export-onnx", source, *[fill.get(a, a) for a in args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


# ----------------------------------------------------------------------------- other CPUs

QEMU = shutil.which("qemu-x86_64")


def predict_on(cpu, images, models, tmp_path) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from compare_on_emulated_cpu import predict_on as predict  # the script's own code

    return predict(cpu, images, models)


def has_vnni() -> bool:
    from fercli.util import cpuinfo

    return any(f in cpuinfo().split() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 (Debian's qemu-user) is not installed")
def test_int8_gives_the_same_answers_on_an_avx2_cpu_without_vnni(exports, tmp_path):
    """qemu's Haswell (AVX2, FMA, no AVX-512, no VNNI) runs onnxruntime's AVX2 kernels, the
    ones that add uint8 x int8 products in 16 bits. The 7-bit file gives this CPU's answers
    there; the old 8-bit file does not where this CPU adds in 32 bits (VNNI), which shows the
    emulation really takes the AVX2 path."""
    images = faces(32)
    models = [exports["int8"], exports["old"]]
    here = predict_on(None, images, models, tmp_path)
    avx2 = predict_on("Haswell", images, models, tmp_path)
    new = exports["int8"]
    assert (here[new].argmax(1) == avx2[new].argmax(1)).all()
    np.testing.assert_allclose(here[new], avx2[new], atol=1e-5)  # same integers, float tail
    if has_vnni():
        assert np.abs(here[exports["old"]] - avx2[exports["old"]]).max() > 1e-3
