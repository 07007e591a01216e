"""MTCNN face detection (Zhang et al., 2016) with numpy, Pillow and onnxruntime.

Three small networks run in cascade: P-Net slides over an image pyramid and proposes
boxes, R-Net rejects and refines them on 24x24 crops, O-Net on 48x48 crops gives the final
boxes, scores and five landmarks. The weights are facenet-pytorch's (MIT), exported to ONNX
by scripts/export_mtcnn_onnx.py and shipped in fercli/faces/weights/mtcnn/ (see its LICENSE.md).
"""

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from fercli.faces.detect import Face, as_rgb

WEIGHTS = "faces/weights/mtcnn"


def weights_dir() -> Path:
    return Path(str(resources.files("fercli") / WEIGHTS))


def _session(name: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    path = weights_dir() / f"{name}.onnx"
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union"):
    """Indices kept by greedy non-maximum suppression, best score first; overlap is the
    intersection over the union, or over the smaller box with method="min"."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if method == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes made square around their centres (side: the longer side)."""
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += (w - side) / 2
    boxes[:, 1] += (h - side) / 2
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def regress(boxes: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Apply the networks' box offsets (fractions of the box's width and height)."""
    boxes = boxes.copy()
    extra = 1 if plus_one else 0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    boxes[:, :4] += reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return boxes


def normalize(batch: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) scaled as the networks were trained."""
    return ((batch.astype(np.float32) - 127.5) * 0.0078125).transpose(0, 3, 1, 2).copy()


def crops(image: Image.Image, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) crops of the boxes; parts outside the image are black."""
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        if x2 <= x1 or y2 <= y1:
            continue
        patch = image.crop((int(x1), int(y1), int(x2) + 1, int(y2) + 1))
        out[k] = np.asarray(patch.resize((size, size), Image.BILINEAR))
    return out


# The --min-face-score MTCNN gets by default (its clear faces score 0.998 to 1.000; false
# faces up to 0.90 and more): chosen on benchmarks/bench_faces.py's scenes (docs/detectors.md).
MIN_FACE_SCORE = 0.95


class MTCNN:
    """detect(images) -> one list of Face (with landmarks) per image, best score first.

    min_face: the smallest face side searched for, in pixels; thresholds: the three
    networks' score thresholds; factor: the pyramid's scale step. min_face_score (an
    attribute, MIN_FACE_SCORE): the --min-face-score it gets by default."""

    min_face_score = MIN_FACE_SCORE

    def __init__(
        self,
        min_face: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        threads: int = 1,
    ):
        self.min_face = min_face
        self.thresholds = thresholds
        self.factor = factor
        self.pnet, self.rnet, self.onet = (_session(n, threads) for n in ("pnet", "rnet", "onet"))

    # ------------------------------------------------------------------ stage 1: P-Net
    def scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.min_face
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.factor
            side *= self.factor
        return scales

    def propose(self, image: Image.Image) -> np.ndarray:
        """P-Net over the pyramid: square candidate boxes (x1, y1, x2, y2, score)."""
        width, height = image.size
        found = []
        for scale in self.scales(height, width):
            size = (int(width * scale + 1), int(height * scale + 1))
            level = np.asarray(image.resize(size, Image.BILINEAR, reducing_gap=2.0))[None]
            reg, prob = self.pnet.run(None, {"input": normalize(level)})
            score = prob[0, 1]
            ys, xs = np.nonzero(score >= self.thresholds[0])
            if not len(ys):
                continue
            cells = np.stack([xs, ys], axis=1).astype(np.float32)
            q1 = np.floor((2 * cells + 1) / scale)
            q2 = np.floor((2 * cells + 12) / scale)
            boxes = np.concatenate(
                [q1, q2, score[ys, xs][:, None], reg[0][:, ys, xs].T], axis=1
            ).astype(np.float32)
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        refined = regress(boxes[:, :5], boxes[:, 5:9], plus_one=False)
        return square(refined)

    # ------------------------------------------------------------------ stages 2 and 3
    def refine(self, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """R-Net: keep, score and refine candidates; square boxes (x1, y1, x2, y2, score)."""
        if not len(boxes):
            return boxes
        reg, prob = self.rnet.run(None, {"input": normalize(crops(image, boxes, 24))})
        keep = prob[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg = reg[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return square(regress(boxes[pick], reg[pick]))

    def output(self, image: Image.Image, boxes: np.ndarray) -> list[Face]:
        """O-Net: final boxes, scores and landmarks."""
        if not len(boxes):
            return []
        boxes = np.floor(boxes)  # the crops' integer pixel grid, as the landmarks expect
        reg, marks, prob = self.onet.run(None, {"input": normalize(crops(image, boxes, 48))})
        keep = prob[:, 1] > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg, marks = reg[keep], marks[keep]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        xs = boxes[:, 0:1] + w[:, None] * marks[:, :5]
        ys = boxes[:, 1:2] + h[:, None] * marks[:, 5:]
        points = np.stack([xs, ys], axis=2)
        boxes = regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        return [
            Face(tuple(float(v) for v in boxes[i, :4]), float(boxes[i, 4]), points[i]) for i in pick
        ]

    def detect(self, images) -> list[list[Face]]:
        result = []
        for array in images:
            image = Image.fromarray(as_rgb(array))
            boxes = self.refine(image, self.propose(image))
            faces = self.output(image, boxes)
            result.append(sorted(faces, key=lambda f: -f.score))
        return result
