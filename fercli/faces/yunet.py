"""YuNet face detection (Wu, Peng and Yu, 2023) with numpy and onnxruntime.

One small single-shot network (53,104 weights, 238 kB of ONNX) runs on the whole
picture, padded at the bottom and right to a multiple of 32 pixels: for each cell of its
stride 8, 16 and 32 grids it gives a face score (the geometric mean of a class and an
objectness probability, as OpenCV's FaceDetectorYN takes it), a box and five landmarks.
YuNet was trained on faces up to about 300 pixels and boxes faces much larger than 500
badly (a close-up photo, even after fercli.faces.detect's downscaling to 1024 pixels), so a
picture at least LARGE_FACE * 2 pixels on its longer side is also searched at half size,
for faces at least LARGE_FACE pixels long (in the picture's pixels). The boxes of both
passes above the score threshold go through greedy non-maximum suppression, and each face
kept takes the score-weighted mean box and landmarks of the candidates it suppressed (on the
12 development photos its landmarks then lie 0.044 face scales from MTCNN's on average,
against 0.060 from the best candidate alone; docs/detectors.md). The weights are
libfacedetection.train's `onnx/yunet_s_dynamic.onnx` (any input size), the same network as
opencv_zoo's face_detection_yunet_2023mar.onnx, shipped in fercli/faces/weights/yunet/ with
their origin and licences (LICENSE.md). No OpenCV, no torch.
"""

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from fercli.errors import FercliError
from fercli.faces.detect import Face

WEIGHTS = "faces/weights/yunet"
MODEL_FILE = "yunet_s_dynamic.onnx"
STRIDES = (8, 16, 32)
DIVISOR = 32  # the input's sides must be multiples of the largest stride
# The half-size pass keeps faces whose box is at least this long (in the picture's pixels);
# it runs on pictures at least twice as long. Below it, the full-size pass boxes faces well.
LARGE_FACE = 320
# predict-dir and predict-video search a copy at most this long (fercli.faces.detect's
# search_side), as for MTCNN. A 640-pixel copy detects in about half the time but misses
# small faces of larger pictures: on benchmarks/bench_faces.py's FER-2013 faces pasted into
# 1600x1200 pictures, 58 of 105 found against 78 at 1024 (60 and 100 px faces: 4 of 42
# against 19), the same 76 of 84 in 640x480 ones (docs/detectors.md).
MAX_SIDE = 1024
# The --min-face-score YuNet gets by default (its scores are its own: about 0.93 to 0.96 on
# clear faces): chosen on benchmarks/bench_faces.py's scenes (docs/detectors.md).
MIN_FACE_SCORE = 0.6


def weights_dir() -> Path:
    return Path(str(resources.files("fercli") / WEIGHTS))


def _session(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    path = weights_dir() / MODEL_FILE
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Greedy non-maximum suppression, best score first: a box goes when its intersection
    over union with a better kept box exceeds threshold. One index array per kept box: the
    kept box first, then the boxes it suppressed."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    groups = []
    while order.size:
        i, rest = order[0], order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        union = area[i] + area[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        groups.append(np.concatenate([[i], rest[overlap > threshold]]))
        order = rest[overlap <= threshold]
    return groups


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The network's input size for a picture: each side rounded up to a multiple of 32."""
    return (-(-height // DIVISOR) * DIVISOR, -(-width // DIVISOR) * DIVISOR)


def check_image(image) -> np.ndarray:
    """A detector's input as a uint8 (H, W) or (H, W, 3) array; FercliError otherwise."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise FercliError(f"YuNet takes uint8 images, got an array of {array.dtype}.")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise FercliError(
            f"YuNet takes (H, W) grey or (H, W, 3) RGB images, got shape {array.shape}."
        )
    return array


def to_input(images: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """uint8 (h, w) or (h, w, 3) RGB images -> float32 (N, 3, height, width): BGR, 0 to
    255, no normalisation, padded with black at the bottom and right (as the network was
    trained and as OpenCV feeds it)."""
    batch = np.zeros((len(images), 3, height, width), np.float32)
    for k, image in enumerate(images):
        h, w = image.shape[:2]
        if image.ndim == 2:
            batch[k, :, :h, :w] = image  # grey: the same in the three channels
        else:
            batch[k, :, :h, :w] = image[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR planes
    return batch


class YuNet:
    """detect(images) -> one list of Face (with landmarks) per image, best score first.

    score_threshold: the lowest face score reported (0.5: low, so that --min-face-score can
    choose; OpenCV's default is 0.9); nms_threshold: the overlap (intersection over union)
    above which the lower-scoring of two boxes goes; top_k: at most this many candidates
    enter the suppression, best first; large_faces: also search a half-size copy for faces
    over LARGE_FACE pixels (see the module's docstring; False: one pass, at full size only);
    average: each face's box and landmarks are the score-weighted mean of the candidates it
    suppressed, which steadies the landmarks (False: its best candidate's, as OpenCV does);
    threads: onnxruntime's intra-op threads (1, as each predict-dir worker runs its own
    detector); max_side: the longer side of the copy predict-dir and predict-video search
    (MAX_SIDE; fercli.faces.detect.detect_scaled), which detect() itself does not change.
    min_face_score (an attribute, MIN_FACE_SCORE): the --min-face-score it gets by
    default."""

    min_face_score = MIN_FACE_SCORE

    def __init__(
        self,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        large_faces: bool = True,
        average: bool = True,
        threads: int = 1,
        max_side: int = MAX_SIDE,
    ):
        for name, value in (("score_threshold", score_threshold), ("nms_threshold", nms_threshold)):
            if not 0.0 <= float(value) <= 1.0:
                raise FercliError(f"YuNet's {name} must be within 0 and 1, got {value}.")
        if int(top_k) < 1:
            raise FercliError(f"YuNet's top_k must be at least 1, got {top_k}.")
        if int(threads) < 1:
            raise FercliError(f"YuNet's threads must be at least 1, got {threads}.")
        if int(max_side) < DIVISOR:
            raise FercliError(f"YuNet's max_side must be at least {DIVISOR}, got {max_side}.")
        self.max_side = int(max_side)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.large_faces = bool(large_faces)
        self.average = bool(average)
        self.session = _session(int(threads))
        self.outputs = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The network's twelve outputs (cls, obj, bbox, kps per stride) for a batch."""
        return self.session.run(self.outputs, {"input": batch})

    def candidates(self, outputs: list[np.ndarray], k: int, height: int, width: int):
        """Image k of a batch run at (height, width): (scores (n,), boxes (n, 4), landmarks
        (n, 5, 2)) of the cells scoring at least the threshold."""
        n = len(STRIDES)
        scores, boxes, marks = [], [], []
        for i, stride in enumerate(STRIDES):
            cls = np.clip(outputs[i][k, :, 0], 0.0, 1.0)
            obj = np.clip(outputs[n + i][k, :, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            (idx,) = np.nonzero(score >= self.score_threshold)
            if not idx.size:
                continue
            cols = width // stride
            cell = np.stack([idx % cols, idx // cols], axis=1).astype(np.float32)  # (x, y)
            bbox = outputs[2 * n + i][k, idx]
            centre = (cell + bbox[:, :2]) * stride
            size = np.exp(bbox[:, 2:4]) * stride
            boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
            kps = outputs[3 * n + i][k, idx].reshape(-1, 5, 2)
            marks.append((kps + cell[:, None, :]) * stride)
            scores.append(score[idx])
        if not scores:
            return np.zeros(0, np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 5, 2))
        return np.concatenate(scores), np.concatenate(boxes), np.concatenate(marks)

    def passes(self, arrays: list[np.ndarray], factor: int) -> list[tuple]:
        """candidates() for each image, run at 1/factor of its size (a batch per padded
        size), in the image's own pixels."""
        result = [(np.zeros(0, np.float32), np.zeros((0, 4)), np.zeros((0, 5, 2)))] * len(arrays)
        groups: dict[tuple[int, int], list[int]] = {}
        small = [
            a if factor == 1 else np.asarray(Image.fromarray(a).reduce(factor)) for a in arrays
        ]
        for k, array in enumerate(small):
            groups.setdefault(padded_size(*array.shape[:2]), []).append(k)
        for (height, width), members in groups.items():
            outputs = self.run(to_input([small[k] for k in members], height, width))
            for j, k in enumerate(members):
                score, box, mark = self.candidates(outputs, j, height, width)
                result[k] = (score, box * factor, mark * factor)
        return result

    def faces(self, found: list[tuple]) -> list[Face]:
        """The faces left by non-maximum suppression over the passes' candidates, best first:
        each with its best candidate's score and, with average, the score-weighted mean box
        and landmarks of the candidates it suppressed (else its best candidate's)."""
        score = np.concatenate([f[0] for f in found]).astype(np.float64)
        box = np.concatenate([f[1] for f in found]).astype(np.float64)
        mark = np.concatenate([f[2] for f in found]).astype(np.float64)
        if len(score) > self.top_k:
            best = np.argsort(-score, kind="stable")[: self.top_k]
            score, box, mark = score[best], box[best], mark[best]
        faces = []
        for group in nms(box, score, self.nms_threshold):
            if not self.average:
                group = group[:1]
            weight = score[group] / score[group].sum()
            face_box = weight @ box[group]
            face_marks = np.tensordot(weight, mark[group], axes=1)
            faces.append(
                Face(tuple(float(v) for v in face_box), float(score[group[0]]), face_marks)
            )
        return faces

    def detect(self, images) -> list[list[Face]]:
        """Faces per image, best first; images of the same padded size run as one batch."""
        arrays = [check_image(image) for image in images]
        some = [k for k, a in enumerate(arrays) if a.shape[0] and a.shape[1]]
        found = {k: [c] for k, c in zip(some, self.passes([arrays[k] for k in some], 1))}
        if self.large_faces:
            big = [k for k in some if max(arrays[k].shape[:2]) >= 2 * LARGE_FACE]
            for k, (score, box, mark) in zip(big, self.passes([arrays[k] for k in big], 2)):
                long = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) >= LARGE_FACE
                found[k].append((score[long], box[long], mark[long]))
        return [self.faces(found[k]) if k in found else [] for k in range(len(arrays))]
