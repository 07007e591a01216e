"""The benchmark scripts still run against today's code (a refactor once broke one unseen).
Each runs at its smallest on the synthetic faces; timings are printed, never asserted."""

import re

import pytest


@pytest.mark.parametrize("compare_amp", [False, True], ids=["loop", "compare-amp"])
def test_bench_train_runs(synth_root, compare_amp, run_script):
    args = ["--data", synth_root, "--steps", 2, "--repeats", 1, "--batch-size", 16]
    out = run_script(
        "benchmarks/bench_train.py", *args, *(["--compare-amp"] if compare_amp else [])
    )
    assert ("bfloat16/fp32" if compare_amp else "ratio (b)/(a)") in out


def test_bench_predict_runs(synth_root, run_script):
    out = run_script(
        "benchmarks/bench_predict.py", "--data", synth_root, "--model", "seed-cnn", "--repeats", 1,
        "--naive-images", 5, "--profile",
    )  # fmt: skip
    assert "b/c" in out and "M multiply-accumulates per image" in out
    from fercli.providers import cpu_providers

    for provider in cpu_providers():
        assert f"int8 on {provider}: (a) model only" in out  # each installed engine measured
    assert "conv 1->32 channels at 48x48" in out  # the profile matched every convolution
    assert not re.search(r": 0 GMAC/s", out)  # every profiled shape found in the graph


def test_bench_clean_runs(synth_root, run_script):
    out = run_script("benchmarks/bench_clean.py", "--data", synth_root, "--repeats", 1)
    assert "speed-up:" in out and "clean found" in out


def test_bench_train_compares_processes(synth_root, run_script):
    out = run_script(
        "benchmarks/bench_train.py", "--processes", 2, "--data", synth_root, "--epochs", 1,
        "--repeats", 1, "--batch-size", 32, "--augment", "flip",
    )  # fmt: skip
    assert out.startswith("model name")  # the CPU first
    assert "ratio torchrun / best single process" in out and "2 processes x 1 thread" in out


def test_bench_distill_runs(synth_root, trained_run, tmp_path, run_script):
    from fercli.onnx_export import export_onnx

    teacher = export_onnx(trained_run[0] / "best.pt", tmp_path / "teacher.onnx").output
    out = run_script(
        "benchmarks/bench_distill.py", "--data", synth_root, "--teacher", teacher, "--steps", 1,
        "--repeats", 1, "--batch-size", 16,
    )  # fmt: skip
    assert out.startswith("model name")
    assert "cached targets" in out and "per-batch teacher" in out
