"""The built-in face detectors for `predict-dir --faces`: MTCNN and YuNet, on onnxruntime."""

from fercli.hookspecs import hookimpl


def mtcnn(**options):
    from fercli.faces.mtcnn import MTCNN

    return MTCNN(**options)


def yunet(**options):
    from fercli.faces.yunet import YuNet

    return YuNet(**options)


@hookimpl
def register_detectors(register):
    register(
        "mtcnn",
        mtcnn,
        "MTCNN (P/R/O-Net cascade, 2 MB ONNX): boxes, scores and 5 landmarks; faces >= 20 px.",
    )
    register(
        "yunet",
        yunet,
        "YuNet (one pass, 238 kB ONNX, Apache-2.0/MIT): boxes, scores and 5 landmarks; "
        "faces >= about 10 px.",
    )
