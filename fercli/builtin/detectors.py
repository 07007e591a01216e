"""The built-in face detector for `predict-dir --faces`: MTCNN on onnxruntime."""

from fercli.hookspecs import hookimpl


def mtcnn(**options):
    from fercli.faces.mtcnn import MTCNN

    return MTCNN(**options)


@hookimpl
def register_detectors(register):
    register(
        "mtcnn",
        mtcnn,
        "MTCNN (P/R/O-Net cascade, 2 MB ONNX): boxes, scores and 5 landmarks; faces >= 20 px.",
    )
