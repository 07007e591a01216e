"""`fercli export-onnx`: checkpoints to one verified, self-describing ONNX file.

exporter: the command's logic (export_onnx, requantize_onnx); metadata: what the file says
about itself; convert: PyTorch to ONNX and fp16; int8: quantization that gives the same
integers on every CPU; saturation: the proof of that, read off a file; checks: what an
export must pass before it is written; temperature: the calibration temperature fitted on
the validation hold-out. PyTorch is imported only where a function needs it.
"""

from fercli.export.exporter import ExportReport, export_onnx, requantize_onnx
from fercli.export.metadata import default_output

__all__ = ["ExportReport", "default_output", "export_onnx", "requantize_onnx"]
