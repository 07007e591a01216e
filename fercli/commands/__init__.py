"""One module per command; each defines a click command that calls library code."""

from fercli.commands.clean import clean_command
from fercli.commands.evaluate import evaluate_command
from fercli.commands.export_onnx import export_onnx_command
from fercli.commands.import_csv import import_csv_command
from fercli.commands.models import models_command
from fercli.commands.plugins_cmd import plugins_command
from fercli.commands.predict_dir import predict_dir_command
from fercli.commands.predict_video import predict_video_command
from fercli.commands.synth import synth_command
from fercli.commands.train import train_command

ALL = [
    plugins_command,
    synth_command,
    import_csv_command,
    clean_command,
    train_command,
    evaluate_command,
    export_onnx_command,
    predict_dir_command,
    predict_video_command,
    models_command,
]
