"""predict-dir's options as one object (issue #26): the command builds a PredictDirOptions
from its parameters and the library takes it (or its fields as keywords), checked once, in
the command line's words; the defaults both read are written once, in fercli.defaults."""

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fercli
import fercli.predict.folder
from fercli import api, defaults
from fercli.commands.predict_dir import predict_dir_command
from fercli.commands.predict_video import predict_video_command
from fercli.data.synth import draw_face
from fercli.errors import FercliError
from fercli.predict import providers
from fercli.predict.folder import Pipeline, PredictDirOptions, predict_dir, predict_rows
from fercli.predict.video import VideoOptions

# The command's parameters that are not options of the prediction: where, from what, to
# where, and how the command exits.
NOT_OPTIONS = {"directory", "model", "output", "strict"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Seven drawn 48x48 faces, one per class, in class folders, and one unreadable file."""
    root = tmp_path_factory.mktemp("options")
    rng = np.random.default_rng(3)
    for name in fercli.FER_CLASSES:
        (root / name).mkdir()
        Image.fromarray(draw_face(name, rng)).save(root / name / f"{name}.png")
    (root / "happy" / "broken.jpg").write_bytes(b"not a picture")
    return root


def params(command) -> dict:
    return {p.name: p for p in command.params}


# ----------------------------------------------------------------------------- one object


def test_every_option_of_the_command_is_a_field():
    fields = {f.name for f in dataclasses.fields(PredictDirOptions)}
    assert set(params(predict_dir_command)) - NOT_OPTIONS == fields - {"write_summary"}


def test_the_command_passes_the_options_it_builds(folder, tmp_path, run_cli, monkeypatch):
    """The options the command builds are the dataclass called directly, and give the same
    rows, byte for byte, as it and as its fields given as keywords."""
    seen = []

    def recording(root, output, model, options):
        seen.append(options)
        return predict_dir(root, output, model, options)

    monkeypatch.setattr(fercli.predict.folder, "predict_dir", recording)
    cli_out = tmp_path / "cli.csv"
    result = run_cli(
        "predict-dir", folder, "-o", cli_out, "--model", "fast", "--faces", "none",
        "--workers", "0", "--batch-size", "3", "--topk", "2", "--eval",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    given = dict(faces="none", workers=0, batch_size=3, topk=2, evaluate=True)
    (options,) = seen
    assert options == PredictDirOptions(**given)

    direct, keywords = tmp_path / "direct.csv", tmp_path / "keywords.csv"
    predict_dir(folder, direct, "fast", PredictDirOptions(**given))
    predict_dir(folder, keywords, "fast", **given)
    assert direct.read_bytes() == cli_out.read_bytes() == keywords.read_bytes()
    assert cli_out.read_text().count("\n") == 1 + 8  # the header, a row per file


def test_the_defaults_of_the_command_are_the_options_defaults(
    folder, tmp_path, run_cli, monkeypatch
):
    seen = []

    def recording(root, output, model, options):
        seen.append(options)
        raise SystemExit(0)  # nothing predicted

    monkeypatch.setattr(fercli.predict.folder, "predict_dir", recording)
    assert run_cli("predict-dir", folder, "-o", tmp_path / "p.csv").exit_code == 0
    assert seen == [PredictDirOptions(faces=defaults.FACES)]  # the command's one change


def test_keywords_change_the_options_given():
    options = PredictDirOptions(batch_size=8, tta=True)
    assert fercli.predict.folder.with_changes(options, {"topk": 2}) == PredictDirOptions(
        batch_size=8, tta=True, topk=2
    )
    assert fercli.predict.folder.with_changes(None, {}) == PredictDirOptions()
    with pytest.raises(TypeError):
        PredictDirOptions(bogus=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 1


def test_predict_rows_takes_the_options_or_keywords(folder):
    given = dict(faces="none", workers=0, batch_size=4, topk=1)
    by_keywords = list(predict_rows(folder, "fast", **given))
    assert list(predict_rows(folder, "fast", PredictDirOptions(**given))) == by_keywords
    assert len(by_keywords) == 8
    run = Pipeline(folder, "fast", PredictDirOptions(faces="none"), workers=0)
    assert run.options == PredictDirOptions(faces="none", workers=0)


# ----------------------------------------------------------------------------- checked once

ABSTAIN = "--abstain must be at least 0 (off) and below 1 (a probability),"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1."),
        ({"abstain": 1.0}, f"{ABSTAIN} not 1.0."),
        ({"abstain": -0.1}, f"{ABSTAIN} not -0.1."),
        ({"engine": "spark"}, "unknown engine 'spark': choose local or ray."),
        ({"workers": -1}, "--workers must be 0 (decode in this process) or more."),
        ({"annotate": "out"}, "--annotate and --crops need --faces auto or detect."),
        ({"crops": "out"}, "--annotate and --crops need --faces auto or detect."),
    ],
)  # fmt: skip
def test_wrong_options_are_one_line_errors(given, message, tmp_path):
    with pytest.raises(FercliError) as made:
        PredictDirOptions(**given)
    assert str(made.value) == message
    with pytest.raises(FercliError) as changed:  # replace() checks again
        dataclasses.replace(PredictDirOptions(), **given)
    assert str(changed.value) == message
    with pytest.raises(FercliError) as called:  # before the folder is looked at
        predict_dir(tmp_path / "absent", tmp_path / "p.csv", **given)
    assert str(called.value) == message


def test_the_options_checks_leave_the_folder_checks_to_the_run(tmp_path):
    PredictDirOptions(faces="detect", annotate=tmp_path, workers=None)  # fine until run
    with pytest.raises(FercliError, match="is not a folder"):
        predict_dir(tmp_path / "absent", tmp_path / "p.csv")


def test_the_python_api_takes_its_own_keywords_only(folder):
    with pytest.raises(TypeError, match="unexpected keyword argument 'abstain'"):
        fercli.predict_dir(folder, abstain=0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'min_score'"):
        fercli.Predictor(faces="none", min_score=0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'verify'"):
        fercli.clean_dataset(folder, verify=False)
    assert set(api.FolderOptions.__optional_keys__) < {
        f.name for f in dataclasses.fields(PredictDirOptions)
    } | {"model"}


# ----------------------------------------------------------------------------- written once


def test_the_command_line_and_the_library_read_the_defaults_from_one_place():
    dir_options, video_options = params(predict_dir_command), params(predict_video_command)
    options, video = PredictDirOptions(), VideoOptions()
    assert dir_options["batch_size"].default == defaults.BATCH_SIZE == options.batch_size == 256
    assert api.DEFAULT_BATCH_SIZE == defaults.BATCH_SIZE
    assert providers.CHOICES == defaults.PROVIDERS == ("auto", "cpu", "cuda", "openvino")
    for command_options in (dir_options, video_options):
        assert tuple(command_options["provider"].type.choices) == defaults.PROVIDERS
        assert command_options["provider"].default == defaults.PROVIDER
        assert command_options["topk"].default == defaults.TOPK
        assert command_options["threads_per_actor"].default == defaults.THREADS_PER_ACTOR
        assert command_options["abstain"].default == defaults.ABSTAIN
        assert command_options["min_face_score"].default is defaults.MIN_FACE_SCORE is None
    assert options.provider == video.provider == defaults.PROVIDER
    assert options.topk == video.topk == defaults.TOPK
    assert options.abstain == video.abstain == defaults.ABSTAIN
    assert options.min_face_score is video.min_face_score is defaults.MIN_FACE_SCORE
    assert options.threads_per_actor == defaults.THREADS_PER_ACTOR
    # --faces: auto on the command line and in the Python API, none in the library function
    assert dir_options["faces"].default == defaults.FACES == "auto"
    assert tuple(dir_options["faces"].type.choices) == defaults.FACE_MODES
    assert options.faces == "none"
    predictor = inspect.signature(fercli.Predictor).parameters
    assert predictor["faces"].default == defaults.FACES
    assert predictor["provider"].default == defaults.PROVIDER
    # predict-video's own
    assert video_options["fps"].default == video.fps == defaults.FPS
    assert video_options["track_gap"].default == video.track_gap == defaults.TRACK_GAP
