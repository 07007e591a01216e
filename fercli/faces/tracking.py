"""Following faces from frame to frame: `predict-video`'s `track` column, --smooth and
--summary. numpy (and scipy's assignment), no torch.

Tracker, in the style of SORT/ByteTrack: each track is a constant-velocity Kalman filter on
its box's centre and size (x, y, w, h and their rates of change, in pixels and pixels per
second, so frames sampled at any rate, or a frame skipped, are one model). At each sampled
frame every track is predicted to the frame's time, and the frame's faces are given to the
tracks by the Hungarian assignment (scipy.optimize.linear_sum_assignment) on a cost that
prefers the overlap (IoU) of a face's box with a track's predicted box, and falls back on
the distance of their centres relative to the face's size (within a radius that grows with
the track's uncertainty, i.e. with the time since it was last seen). Because it compares the
faces with where each track is going, not where it was, two people walking past each other
keep their numbers at the crossing. A face no track takes starts a new track with the next
number; a track not seen for more than `max_age` seconds (and more than `min_misses` sampled
frames, so that a low --fps keeps a face through a missed frame or two) is dropped, and the
same person coming back later gets a new number.

TrackLog keeps, per track, what the summary and the timeline need: a running sum of the
probabilities (not every frame), the label counts and, only where a timeline is drawn, the
track's (time, probabilities) curve. Its smoothing (--smooth SECONDS) is an exponential
moving average of each track's probabilities in time, with SECONDS as the time constant:
a frame dt seconds after the track's previous one moves the average by 1 - exp(-dt/SECONDS)
of the way to the new probabilities (causal: a row's smoothed value needs no later frame).
"""

from dataclasses import dataclass, field

import numpy as np

UNMATCHED = 1e6  # a cost no assignment keeps


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of a (n, 4) with every box of b (m, 4), boxes
    as (x1, y1, x2, y2): an (n, m) array."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1)


def to_xyxy(state: np.ndarray) -> np.ndarray:
    c, wh = state[..., :2], np.maximum(state[..., 2:4], 1.0)
    return np.concatenate([c - wh / 2, c + wh / 2], axis=-1)


@dataclass
class Track:
    """One person: a Kalman filter on (cx, cy, w, h, vx, vy, vw, vh)."""

    id: int
    x: np.ndarray  # the state
    p: np.ndarray  # its covariance
    time: float  # the time x is predicted to
    seen: float  # the time of its last face
    misses: int = 0  # sampled frames since then

    MEASURE = 0.05  # the detector's box noise, a fraction of the face's size (1 sd)
    ACCEL = 1.0  # white-noise acceleration of the centre, face sizes per s^2 (1 sd)
    GROW = 0.5  # the same for the box's size
    SPEED = 2.0  # the velocity of a new track: 0, give or take this many sizes per s

    @classmethod
    def start(cls, number: int, box: np.ndarray, t: float) -> "Track":
        size = max(box[2], box[3], 1.0)
        x = np.concatenate([box, np.zeros(4)])
        p = np.diag(np.r_[np.full(4, cls.MEASURE * size), np.full(4, cls.SPEED * size)] ** 2)
        return cls(number, x, p, t, t)

    def size(self) -> float:
        return float(max(self.x[2], self.x[3], 1.0))

    def predict(self, t: float) -> None:
        dt = max(t - self.time, 0.0)
        if dt == 0:
            return
        f = np.eye(8)
        f[:4, 4:] = dt * np.eye(4)
        accel = self.size() * np.array([self.ACCEL, self.ACCEL, self.GROW, self.GROW])
        g = np.concatenate([np.diag(np.full(4, dt * dt / 2)), np.diag(np.full(4, dt))])
        self.x = f @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)
        self.p = f @ self.p @ f.T + (g * accel) @ (g * accel).T
        self.time = t

    def update(self, box: np.ndarray) -> None:
        r = np.eye(4) * (self.MEASURE * max(box[2], box[3], 1.0)) ** 2
        s = self.p[:4, :4] + r
        k = np.linalg.solve(s, self.p[:4, :]).T  # P H^T S^-1 (S symmetric)
        self.x = self.x + k @ (box - self.x[:4])
        self.p = self.p - k @ self.p[:4, :]
        self.seen, self.misses = self.time, 0

    def reach(self) -> float:
        """How far (pixels) its centre may be from the prediction: 3 sd of its uncertainty."""
        return 3.0 * float(np.sqrt(max(self.p[0, 0], self.p[1, 1])))


@dataclass
class Tracker:
    """Track numbers for the faces of successive frames of one video (update, frame after
    frame, in time order). Numbers start at 0 and are never reused."""

    max_age: float = 1.0  # seconds a track may take a face after its last one...
    min_misses: int = 2  # ...or this many sampled frames without it, whichever is longer
    min_iou: float = 0.1  # below this overlap, the centres' distance decides
    max_distance: float = 1.0  # centre distance allowed, in face sizes, beyond the reach
    miss_cost: float = 0.05  # added per sampled frame a track has missed (4 at most)
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0

    def update(self, t: float, boxes) -> list[int]:
        """The track number of each box (x1, y1, x2, y2) of the frame at time t (seconds)."""
        boxes = to_cxcywh(boxes)
        self.tracks = [  # those lost too long ago drop out before they can take a face
            track
            for track in self.tracks
            if track.misses <= self.min_misses or t - track.seen <= self.max_age
        ]
        for track in self.tracks:
            track.predict(t)
        pairs = self.assign(boxes)
        ids = [-1] * len(boxes)
        for i, j in pairs:
            self.tracks[i].update(boxes[j])
            ids[j] = self.tracks[i].id
        taken = {i for i, _ in pairs}
        for i, track in enumerate(self.tracks):
            if i not in taken:
                track.misses += 1
        for j, box in enumerate(boxes):
            if ids[j] < 0:
                self.tracks.append(Track.start(self.next_id, box, t))
                ids[j] = self.next_id
                self.next_id += 1
        return ids

    def expected(self, t: float) -> np.ndarray:
        """Where each live track's box (x1, y1, x2, y2) should be at time t (the tracks
        are not changed): for looking for their faces only there."""
        alive = [
            k for k in self.tracks if k.misses <= self.min_misses or t - k.seen <= self.max_age
        ]
        if not alive:
            return np.zeros((0, 4))
        states = np.stack([k.x[:4] + max(t - k.time, 0.0) * k.x[4:] for k in alive])
        return to_xyxy(states)

    def costs(self, boxes: np.ndarray) -> np.ndarray:
        """(tracks, boxes): 1 - IoU with the predicted box where they overlap enough, else
        1 + the centre distance relative to how far the track may be, else UNMATCHED."""
        states = np.stack([track.x[:4] for track in self.tracks])
        overlap = iou(to_xyxy(states), to_xyxy(boxes))
        sizes = np.maximum(boxes[:, 2:4].max(axis=1), 1.0)
        reach = np.array([track.reach() for track in self.tracks])
        allowed = reach[:, None] + self.max_distance * sizes[None, :]
        distance = np.hypot(*(states[:, None, :2] - boxes[None, :, :2]).transpose(2, 0, 1))
        near = np.where(distance <= allowed, 1.0 + distance / allowed, UNMATCHED)
        cost = np.where(overlap >= self.min_iou, 1.0 - overlap, near)
        # a track just seen before one coasting on its prediction, where both fit as well
        misses = np.array([min(track.misses, 4) for track in self.tracks], float)
        return cost + self.miss_cost * misses[:, None]

    def assign(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """(track index, box index) pairs of the cheapest assignment."""
        if not self.tracks or not len(boxes):
            return []
        cost = self.costs(boxes)
        return [(i, j) for i, j in cheapest(cost) if cost[i, j] < UNMATCHED]


def cheapest(cost: np.ndarray) -> list[tuple[int, int]]:
    """The pairs (row, column) of the assignment of least total cost, min(rows, columns) of
    them: the Hungarian algorithm (scipy's linear_sum_assignment). Where every row's cheapest
    column is its own (or, with more rows than columns, every column's cheapest row), that is
    the answer without scipy (no assignment costs less than the sum of those minima): most
    frames, whose faces each overlap one track, need no import of scipy.optimize."""
    n, m = cost.shape
    if n <= m:
        best = cost.argmin(axis=1).tolist()
        if len(set(best)) == n:
            return list(enumerate(best))
    else:
        best = cost.argmin(axis=0).tolist()
        if len(set(best)) == m:
            return sorted((i, j) for j, i in enumerate(best))
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist()))


@dataclass
class TrackStats:
    """What the summary and the timeline keep of one track."""

    first: float
    last: float
    total: np.ndarray  # the sum of its raw probabilities
    labels: np.ndarray  # frames per (smoothed, with --smooth) label
    smoothed: np.ndarray | None = None  # the moving average, with --smooth
    changes: int = 0  # times its (smoothed) label changed
    label: int = -1
    frames: int = 0
    curve: list | None = None  # (time, probabilities or None for a gap), for a timeline
    gap: bool = False  # a sampled frame without it since its last face


class TrackLog:
    """Per-track statistics of one video, frame after frame; `smooth` seconds (0: off)."""

    def __init__(self, path: str, classes, smooth: float = 0.0, curves: bool = False):
        self.path, self.classes, self.smooth, self.curves = path, tuple(classes), smooth, curves
        self.tracks: dict[int, TrackStats] = {}
        self.frames = 0  # sampled frames
        self.end = 0.0  # the time of the last one
        self.error: str | None = None

    def add(self, t: float, ids: list[int], probs: np.ndarray) -> np.ndarray:
        """One sampled frame's faces (track numbers, raw probabilities (n, classes)): the
        probabilities as smoothed (the raw ones without --smooth)."""
        self.frames, self.end = self.frames + 1, t
        probs = np.asarray(probs, np.float64).reshape(len(ids), len(self.classes))
        for number, track in self.tracks.items():
            track.gap |= number not in ids
        out = probs.copy()
        for k, (number, p) in enumerate(zip(ids, probs)):
            track = self.tracks.get(number)
            if track is None:
                n = len(self.classes)
                track = self.tracks[number] = TrackStats(t, t, np.zeros(n), np.zeros(n, int))
                track.curve = [] if self.curves else None
            elif self.smooth > 0:
                weight = 1.0 - np.exp(-(t - track.last) / self.smooth)
                p = out[k] = track.smoothed + weight * (p - track.smoothed)
            self.record(track, t, probs[k], p)
        return out

    def record(self, track: TrackStats, t: float, raw: np.ndarray, shown: np.ndarray) -> None:
        if track.curve is not None:
            if track.gap and track.curve:
                track.curve.append(((track.last + t) / 2, None))
            track.curve.append((t, shown))
        track.gap = False
        track.smoothed = shown if self.smooth > 0 else None
        label = int(np.argmax(shown))
        track.changes += track.frames > 0 and label != track.label
        track.label, track.last, track.frames = label, t, track.frames + 1
        track.total += raw
        track.labels[label] += 1

    def empty(self, t: float) -> None:
        """A sampled frame (at time t) without a face."""
        self.frames, self.end = self.frames + 1, t
        for track in self.tracks.values():
            track.gap = True

    def summary(self) -> dict:
        """This video's part of the --summary file."""
        tracks = []
        for number, track in sorted(self.tracks.items()):
            mean = track.total / track.frames
            top = int(np.argmax(mean))
            tracks.append(
                {
                    "track": number,
                    "first": round(track.first, 3),
                    "last": round(track.last, 3),
                    "frames": track.frames,
                    "dominant": self.classes[top],
                    "dominant_probability": round(float(mean[top]), 6),
                    "mean_probabilities": {
                        c: round(float(v), 6) for c, v in zip(self.classes, mean)
                    },
                    "label_frames": {c: int(n) for c, n in zip(self.classes, track.labels) if n},
                    "label_changes": track.changes,
                }
            )
        return {"path": self.path, "frames": self.frames, "error": self.error, "tracks": tracks}
