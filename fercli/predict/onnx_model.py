"""A fercli `.onnx` file ready for inference with onnxruntime.

The file carries everything prediction needs as ONNX `metadata_props` (JSON strings): class
names, preprocessing size, network input size, normalization, the temperature that
calibrates its confidences (fercli.metrics.calibration; 1.0 where absent), model name, training
metrics.
No torch here: `predict-dir` must start fast and run where only onnxruntime is installed.
"""

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fercli.errors import FercliError
from fercli.predict import providers
from fercli.progress import settings
from fercli.util import first_line, native_stderr_captured

FORMAT = "fercli-onnx"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("classes", "image_size", "input_size", "normalization")


@dataclass(frozen=True)
class ModelInfo:
    """What a fercli ONNX file says about itself."""

    classes: tuple[str, ...]
    image_size: int  # images are decoded to image_size x image_size ...
    input_size: int  # ... then centre-cropped to what the network sees
    mean: float  # normalization: (pixel / 255 - mean) / std
    std: float
    model: str = ""
    precision: str = "fp32"
    metrics: dict = field(default_factory=dict)
    fercli_version: str = ""
    extra: dict = field(default_factory=dict)  # every other metadata key, decoded
    temperature: float = 1.0  # class probabilities are softmax(logits / temperature)

    def to_metadata(self) -> dict[str, str]:
        """The `metadata_props` entries, every value a JSON string."""
        values = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "classes": list(self.classes),
            "image_size": self.image_size,
            "input_size": self.input_size,
            "normalization": {"mean": self.mean, "std": self.std},
            "model": self.model,
            "precision": self.precision,
            "metrics": self.metrics,
            "fercli_version": self.fercli_version,
            "temperature": self.temperature,
            **self.extra,
        }
        return {k: json.dumps(v, ensure_ascii=False) for k, v in values.items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str], source="the model") -> "ModelInfo":
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing or props.get("format") != json.dumps(FORMAT):
            raise FercliError(
                f"{source} has no fercli metadata ({', '.join(missing) or 'format'} missing): "
                "export it from a checkpoint with `fercli export-onnx`."
            )
        try:
            values = {k: json.loads(v) for k, v in props.items()}
            norm = values["normalization"]
            known = {
                "format",
                "format_version",
                *REQUIRED_KEYS,
                "model",
                "precision",
                "metrics",
                "fercli_version",
                "temperature",
            }
            return cls(
                classes=tuple(str(c) for c in values["classes"]),
                image_size=int(values["image_size"]),
                input_size=int(values["input_size"]),
                mean=_scalar(norm["mean"]),
                std=_scalar(norm["std"]),
                model=str(values.get("model", "")),
                precision=str(values.get("precision", "fp32")),
                metrics=values.get("metrics") or {},
                fercli_version=str(values.get("fercli_version", "")),
                extra={k: v for k, v in values.items() if k not in known},
                temperature=_temperature(values.get("temperature", 1.0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise FercliError(
                f"{source} has damaged fercli metadata ({exc}): export it again with "
                "`fercli export-onnx`."
            ) from None


def _scalar(value) -> float:
    """Grayscale models have one mean and one std; accept 0.5 or [0.5]."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != 1:
        raise ValueError(f"expected one value for a grayscale model, got {value!r}")
    return float(arr[0])


def _temperature(value) -> float:
    t = float(value)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive number, got {value!r}")
    return t


def _varint(read) -> int:
    value = shift = 0
    while True:
        byte = read(1)
        if not byte:
            raise ValueError("truncated")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(f, end: int):
    """(field number, length) of each length-delimited field of the protobuf message in `f`
    up to `end`, its bytes next in `f` for the caller to read or skip; other fields are
    skipped here."""
    while f.tell() < end:
        number, wire = divmod(_varint(f.read), 8)
        if wire == 0:
            _varint(f.read)
        elif wire in (1, 5):
            f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
        elif wire == 2:
            yield number, _varint(f.read)
        else:
            raise ValueError(f"wire type {wire}")
        if f.tell() > end:
            raise ValueError("truncated")


def read_metadata_props(path: str | Path) -> dict[str, str]:
    """An ONNX file's `metadata_props` (ModelProto field 14, key/value entries) read from its
    protobuf encoding, skipping the graph unread: for callers that never run the model,
    without onnxruntime's session set-up. ValueError for a file that is not such a message."""
    props = {}
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        for number, size in _fields(f, end):
            if number != 14:
                f.seek(size, os.SEEK_CUR)
                continue
            entry = io.BytesIO(f.read(size))
            if len(entry.getbuffer()) != size:
                raise ValueError("truncated")
            pair = {}
            for key, n in _fields(entry, size):
                pair[key] = entry.read(n).decode("utf-8")
            props[pair.get(1, "")] = pair.get(2, "")
    return props


def preprocess(images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """uint8 (N, image_size, image_size) -> float32 (N, 1, input_size, input_size), centre-cropped
    and normalized exactly as in training: (pixel / 255 - mean) / std."""
    size, crop = images.shape[-1], info.input_size
    if crop < size:
        top = (size - crop) // 2
        images = images[..., top : top + crop, top : top + crop]
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(info.mean)) / np.float32(info.std)
    return np.ascontiguousarray(x[:, None])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mirror_averaged(predict_proba, images: np.ndarray) -> np.ndarray:
    """Flip test-time augmentation: class probabilities averaged with the mirror images'."""
    mirrored = np.ascontiguousarray(images[..., ::-1])
    return (predict_proba(images) + predict_proba(mirrored)) / 2


class OnnxModel:
    """An onnxruntime session over a fercli ONNX file, with its metadata checked.

    `provider` is one of `providers.CHOICES`; `self.provider` says which one actually runs
    the model, and `self.fallback` why `auto` runs on the CPU although CUDA or OpenVINO is
    installed (`self.fallback_expected`: for a reason that needs no fixing).

    `metadata_only`: for a caller that reads the file's metadata and never runs it (predict-dir
    when its workers predict, `fercli models`): no onnxruntime session, whose set-up
    predict-dir's workers would share the cores with; the metadata is read straight from the
    file (read_metadata_props), the inputs are left for whoever runs it to check, and running
    such a model raises."""

    def __init__(
        self,
        path: str | Path,
        provider: str = "auto",
        threads: int | None = None,
        *,
        metadata_only: bool = False,
        chosen: tuple | None = None,
    ):
        """chosen: what providers.choose(provider, path) gave the caller, not asked again."""
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FercliError(
                f"model {self.path} not found: pass a .onnx file made by `fercli export-onnx`."
            )
        engine, unusable = chosen or providers.choose(provider, self.path)
        self.fallback = unusable.what if unusable else ""
        # nothing to fix (Intel's plugin offers no device on this CPU): said with -v only
        self.fallback_expected = bool(unusable and unusable.expected)
        self.metadata_only = metadata_only
        if metadata_only:
            self.provider = engine
            self.info = ModelInfo.from_metadata(self._read_metadata(), str(self.path))
            return
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: onnxruntime's warnings are not for users
        # Idle threads sleep instead of spinning: the decoding workers (and anything else on a
        # shared machine) get the cores: faster under load in benchmarks/bench_predict.py.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        chosen = providers.configure(engine, options, threads)
        # onnxruntime prints a multi-line error of its own (on fd 2, past Python) when the
        # CUDA provider cannot start; keep it for our one line, show it as it is with -v.
        with native_stderr_captured(engine == "cuda" and not settings["verbose"]) as log:
            try:
                self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
            except Exception as exc:  # onnxruntime raises its own exception types
                reason = first_line(str(exc)) or repr(exc)
                raise FercliError(
                    f"{self.path} is not a usable ONNX model ({reason}): pass a .onnx file made "
                    "by `fercli export-onnx`."
                ) from None
        self.provider = providers.NAMES.get(self.session.get_providers()[0], "cpu")
        if engine == "cuda" and self.provider != "cuda":
            reason = providers.cuda_failure(log[0]) if log else "its log is above"
            if provider == "cuda":
                raise FercliError(
                    f"onnxruntime could not start the CUDA execution provider ({reason}): "
                    "install the NVIDIA driver, CUDA and cuDNN that your onnxruntime-gpu needs, "
                    "or use --provider cpu."
                )
            self.fallback = f"CUDA provider not started ({reason})"
        props = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(props, str(self.path))
        self._check_io()
        self.input_name = self.session.get_inputs()[0].name

    def _read_metadata(self) -> dict[str, str]:
        try:
            return read_metadata_props(self.path)
        except ValueError as exc:  # UnicodeDecodeError included
            raise FercliError(
                f"{self.path} is not a usable ONNX model (not an ONNX protobuf: {exc}): pass a "
                ".onnx file made by `fercli export-onnx`."
            ) from None

    def _check_io(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        size, n = self.info.input_size, len(self.info.classes)
        shape = inputs[0].shape if len(inputs) == 1 else None
        ok = (
            shape is not None
            and len(shape) == 4
            and inputs[0].type == "tensor(float)"
            and list(shape[1:]) == [1, size, size]
        )
        if not ok:
            got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            raise FercliError(
                f"{self.path} has the wrong input ({got}); expected one float tensor "
                f"[batch, 1, {size}, {size}]: export it with `fercli export-onnx`."
            )
        out_shape = outputs[0].shape
        if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != n):
            raise FercliError(
                f"{self.path} has the wrong output shape {out_shape}; expected [batch, {n}] "
                f"for the classes {', '.join(self.info.classes)}."
            )

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw model output for a preprocessed float32 batch."""
        if self.metadata_only:
            raise RuntimeError(f"{self.path.name} was opened for its metadata only")
        return self.session.run(None, {self.input_name: x})[0]

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities for uint8 images (N, image_size, image_size), in batches:
        softmax(logits / the model's temperature)."""
        t = np.float32(self.info.temperature)
        out = [
            softmax(self.logits(preprocess(images[i : i + batch_size], self.info)) / t)
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.info.classes)), np.float32)

    def describe(self) -> str:
        info = self.info
        return (
            f"{self.path.name}: {info.model or 'model'} ({info.precision}), "
            f"{len(info.classes)} classes, input {info.input_size}x{info.input_size}, "
            f"provider {self.provider}"
        )
