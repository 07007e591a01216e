"""Defaults written once (fercli.defaults): the options of `fercli clean`, `fercli evaluate`
and `fercli export-onnx` are its constants, and the library's parameters default to them."""

import inspect

import pytest

from fercli import defaults
from fercli.commands.clean import clean_command
from fercli.commands.evaluate import evaluate_command
from fercli.commands.export_onnx import export_onnx_command


def option(command, name: str):
    return next(p for p in command.params if p.name == name)


def parameter_default(function, name: str):
    return inspect.signature(function).parameters[name].default


@pytest.mark.parametrize(
    ("command", "name", "constant"),
    [
        (clean_command, "hash", "HASH"),
        (clean_command, "hash_size", "HASH_SIZE"),
        (clean_command, "blank_std", "BLANK_STD"),
        (evaluate_command, "split", "EVALUATE_SPLIT"),
        (evaluate_command, "device", "DEVICE"),
        (evaluate_command, "part", "SPLIT_FILE_PART"),
        (evaluate_command, "faces", "SPLIT_FILE_FACES"),
    ],
)
def test_click_defaults_are_the_constants(command, name, constant):
    assert option(command, name).default is getattr(defaults, constant)


@pytest.mark.parametrize(
    ("name", "constant"), [("opset", "OPSET"), ("calibration_images", "CALIBRATION_IMAGES")]
)
def test_export_onnx_defaults_are_the_constants(name, constant):
    assert option(export_onnx_command, name).default == getattr(defaults, constant)


def test_clean_help_names_the_near_threshold():
    help_text = option(clean_command, "threshold").help
    assert f"[default: {defaults.NEAR_THRESHOLD_64} for 64-bit hashes" in help_text


def test_clean_hash_choices_are_the_library_hashes():
    from fercli.commands.clean import HASHES
    from fercli.data.hashing import HASHES as LIBRARY_HASHES

    assert HASHES == LIBRARY_HASHES
    assert list(option(clean_command, "hash").type.choices) == list(LIBRARY_HASHES)


def test_clean_library_defaults():
    from fercli.builtin.filters import BlankFilter, DedupFilter
    from fercli.clean.duplicates import DEFAULT_THRESHOLD_64, default_threshold
    from fercli.clean.pipeline import CleanSettings

    settings = CleanSettings()
    assert (settings.hash, settings.hash_size) == (defaults.HASH, defaults.HASH_SIZE)
    assert parameter_default(DedupFilter, "hash") == defaults.HASH
    assert parameter_default(DedupFilter, "hash_size") == defaults.HASH_SIZE
    assert parameter_default(DedupFilter, "blank_std") == defaults.BLANK_STD
    assert parameter_default(BlankFilter, "blank_std") == defaults.BLANK_STD
    assert DEFAULT_THRESHOLD_64 == default_threshold(64) == defaults.NEAR_THRESHOLD_64
    assert DedupFilter().threshold == defaults.NEAR_THRESHOLD_64


def test_evaluate_library_defaults():
    from fercli.evaluate.evaluation import (
        CheckpointScorer,
        EvaluateOptions,
        OnnxScorer,
        evaluate,
        evaluate_part,
        scorer_for,
    )

    assert parameter_default(evaluate, "split") == defaults.EVALUATE_SPLIT
    for function in (evaluate, scorer_for, CheckpointScorer, OnnxScorer):
        assert parameter_default(function, "device") == defaults.DEVICE
    assert parameter_default(evaluate_part, "part") == defaults.SPLIT_FILE_PART
    options = EvaluateOptions()
    assert (options.split, options.device) == (defaults.EVALUATE_SPLIT, defaults.DEVICE)
    assert (options.part, options.faces) == (defaults.SPLIT_FILE_PART, defaults.SPLIT_FILE_FACES)


def test_export_library_defaults():
    from fercli.export import exporter
    from fercli.export.convert import DEFAULT_OPSET

    assert DEFAULT_OPSET == defaults.OPSET
    assert parameter_default(exporter.export_onnx, "opset") == defaults.OPSET
    for function in (exporter.export_onnx, exporter.requantize_onnx):
        assert parameter_default(function, "calibration_images") == defaults.CALIBRATION_IMAGES


def test_defaults_import_only_the_standard_library():
    import ast
    import sys

    tree = ast.parse(inspect.getsource(defaults))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert {name.split(".")[0] for name in names} <= sys.stdlib_module_names
