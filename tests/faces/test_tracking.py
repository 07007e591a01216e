"""fercli.faces.tracking on box sequences: people crossing, faces missed for a few frames,
new people, the moving average of --smooth and the per-track summary."""

import time

import numpy as np
import pytest

from fercli.faces.tracking import Tracker, TrackLog, cheapest, iou


def box(cx, cy, size=80.0):
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def run(tracker, frames):
    """frames: (t, {person: box}) -> {person: [track ids]} (the order of the boxes given is
    shuffled, as a detector's left-to-right order changes at a crossing)."""
    rng = np.random.default_rng(0)
    seen: dict[str, list[int]] = {}
    for t, people in frames:
        names = list(people)
        rng.shuffle(names)
        ids = tracker.update(t, [people[n] for n in names])
        for name, number in zip(names, ids):
            seen.setdefault(name, []).append(number)
    return seen


def crossing(fps, speed, seconds=4.0, dy=0.0, jitter=0.0, hide=()):
    """Two faces walking past each other at `speed` px/s (A left to right, B back), at
    frames sampled at fps; `hide`: times at which B is not detected (behind A)."""
    rng = np.random.default_rng(1)
    frames = []
    for k in range(int(seconds * fps) + 1):
        t = k / fps
        a = (100 + speed * t, 200) + rng.normal(0, jitter, 2)
        b = (100 + speed * (seconds - t), 200 + dy) + rng.normal(0, jitter, 2)
        people = {"A": box(*a), "B": box(*b)}
        if any(abs(t - h) < 1e-6 for h in hide):
            del people["B"]
        frames.append((t, people))
    return frames


@pytest.mark.parametrize(
    "fps, speed, dy, jitter",
    [(25, 120, 0, 0), (25, 120, 0, 3), (10, 200, 20, 2), (2, 60, 0, 1), (2, 100, 10, 0)],
)
def test_two_people_crossing_keep_their_numbers(fps, speed, dy, jitter):
    frames = crossing(fps, speed, dy=dy, jitter=jitter)
    seen = run(Tracker(), frames)
    assert seen["A"][0] == 0 and seen["B"][0] == 1
    # where the boxes all but coincide either way round is right: elsewhere, their numbers
    apart = [distance(p["A"], p["B"]) > 8 + 3 * jitter for _, p in frames]
    assert {a for a, far in zip(seen["A"], apart) if far} == {0}
    assert {b for b, far in zip(seen["B"], apart) if far} == {1}


def distance(a, b) -> float:
    return float(np.hypot(a[0] + a[2] - b[0] - b[2], a[1] + a[3] - b[1] - b[3]) / 2)


def test_crossing_with_one_face_hidden_behind_the_other():
    frames = crossing(25, 120, hide=[k / 25 for k in range(44, 57)])  # B hidden 0.5 s
    centre = [t for t, p in frames if abs(p["A"][0] - p.get("B", (1e9,))[0]) < 1][:1]
    assert not centre  # B is hidden exactly when they overlap most
    seen = run(Tracker(), frames)
    assert set(seen["A"]) == {0} and set(seen["B"]) == {1}


def test_a_face_missed_for_a_few_frames_keeps_its_track():
    frames = [(k / 10, {"A": box(100 + 5 * k, 100)} if not 10 <= k < 15 else {}) for k in range(30)]
    assert run(Tracker(), frames) == {"A": [0] * 25}  # 0.5 s without it


def test_a_low_fps_keeps_a_face_through_two_missed_frames():
    frames = [(k * 2.0, {"A": box(100, 100)} if k not in (2, 3) else {}) for k in range(6)]
    assert run(Tracker(max_age=1.0), frames) == {"A": [0] * 4}  # 6 s without it, 2 frames


def test_a_face_lost_longer_than_max_age_is_a_new_track():
    frames = [(k / 10, {} if 5 <= k < 25 else {"A": box(100, 100)}) for k in range(40)]
    assert run(Tracker(max_age=1.0), frames) == {"A": [0] * 5 + [1] * 15}


def test_a_new_person_gets_the_next_number_and_numbers_are_never_reused():
    frames = []
    for k in range(40):
        people = {"A": box(100, 100)}
        if k >= 10:
            people["B"] = box(400, 120, 60)
        if 20 <= k < 30:
            people["C"] = box(250, 300, 50)
        frames.append((k / 10, people))
    frames += [(4.0 + k / 10, {}) for k in range(10)]  # nobody for 1 s
    frames += [(5.0 + k / 10, {"D": box(250, 300, 50)}) for k in range(5)]  # C's place, later
    seen = run(Tracker(), frames)
    assert {name: set(ids) for name, ids in seen.items()} == {
        "A": {0},
        "B": {1},
        "C": {2},
        "D": {3},
    }


def test_ids_follow_the_order_of_the_boxes_given():
    tracker = Tracker()
    assert tracker.update(0.0, [box(100, 100), box(300, 100)]) == [0, 1]
    assert tracker.update(0.1, [box(302, 100), box(101, 100)]) == [1, 0]
    assert tracker.update(0.2, []) == []
    assert tracker.update(0.3, [box(303, 101)]) == [1]


def test_a_still_face_with_a_jittery_detector_keeps_one_track():
    rng = np.random.default_rng(3)
    frames = [(k / 25, {"A": box(*(rng.normal(200, 4, 2)), rng.normal(80, 4))}) for k in range(100)]
    assert set(run(Tracker(), frames)["A"]) == {0}


def test_a_jump_far_from_the_prediction_is_another_person():
    tracker = Tracker()
    assert tracker.update(0.0, [box(100, 100, 50)]) == [0]
    assert tracker.update(0.04, [box(600, 400, 50)]) == [1]  # 10 sizes away in 40 ms


def test_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float)
    assert iou(a, b) == pytest.approx(np.array([[1 / 3, 0], [0, 0]]))


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 2), (2, 3), (4, 4), (5, 1), (1, 5)])
def test_cheapest_is_the_optimal_assignment(shape):
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(sum(shape))
    for k in range(300):
        cost = rng.uniform(0, 1, shape)
        if k % 3 == 0:  # a clear best each (the shortcut); else contested
            cost[np.arange(min(shape)), np.arange(min(shape))] -= 1
        pairs = cheapest(cost)
        rows, cols = linear_sum_assignment(cost)
        assert len(pairs) == min(shape) and pairs == sorted(pairs)
        assert len({j for _, j in pairs}) == len(pairs)
        assert sum(cost[i, j] for i, j in pairs) == pytest.approx(cost[rows, cols].sum())


def test_tracking_is_cheap():
    tracker, frames = Tracker(), crossing(25, 120, seconds=40)  # 1000 frames, 2 faces
    start = time.perf_counter()
    run(tracker, frames)
    assert time.perf_counter() - start < 2.0  # well under 2 ms a frame (about 0.1 ms)


def test_smoothing_is_an_exponential_average_in_time():
    log = TrackLog("v.mp4", ("a", "b"), smooth=1.0)
    assert log.add(0.0, [0], [[1.0, 0.0]]) == pytest.approx(np.array([[1.0, 0.0]]))
    w = 1 - np.exp(-0.5)
    got = log.add(0.5, [0], [[0.0, 1.0]])
    assert got == pytest.approx(np.array([[1 - w, w]]))
    log.empty(1.0)
    w2 = 1 - np.exp(-1.5)  # 1.5 s after its last face: the new one weighs more
    assert log.add(2.0, [0], [[0.0, 1.0]])[0, 1] == pytest.approx(w + w2 * (1 - w))
    raw = TrackLog("v.mp4", ("a", "b"))
    assert raw.add(0.0, [0], [[0.2, 0.8]]) == pytest.approx(np.array([[0.2, 0.8]]))


def test_summary_per_track_and_the_curves_gaps():
    log = TrackLog("v.mp4", ("happy", "sad"), curves=True)
    log.add(0.0, [0, 1], [[0.9, 0.1], [0.2, 0.8]])
    log.add(0.5, [0], [[0.7, 0.3]])
    log.empty(1.0)
    log.add(1.5, [1, 0], [[0.4, 0.6], [0.5, 0.5]])
    summary = log.summary()
    assert summary["path"] == "v.mp4" and summary["frames"] == 4 and summary["error"] is None
    zero, one = summary["tracks"]
    assert zero["track"] == 0 and (zero["first"], zero["last"], zero["frames"]) == (0.0, 1.5, 3)
    assert zero["mean_probabilities"] == pytest.approx({"happy": 0.7, "sad": 0.3})
    assert zero["dominant"] == "happy" and zero["dominant_probability"] == pytest.approx(0.7)
    assert zero["label_frames"] == {"happy": 3} and zero["label_changes"] == 0
    assert (one["first"], one["last"], one["frames"], one["dominant"]) == (0.0, 1.5, 2, "sad")
    # gaps (None) where the track was not seen, midway between its frames
    assert [t for t, p in log.tracks[0].curve if p is None] == [1.0]
    assert [t for t, p in log.tracks[1].curve if p is None] == [0.75]


def test_smoothing_steadies_a_flickering_label():
    flicker = [[0.6, 0.4], [0.4, 0.6]] * 10
    counts = {}
    for smooth in (0.0, 2.0):
        log = TrackLog("v.mp4", ("happy", "sad"), smooth=smooth)
        for k, p in enumerate(flicker):
            log.add(k / 10, [0], [p])
        counts[smooth] = log.summary()["tracks"][0]
    assert counts[0.0]["label_changes"] == 19
    assert counts[2.0]["label_changes"] == 0 and counts[2.0]["label_frames"] == {"happy": 20}
    assert counts[2.0]["mean_probabilities"] == counts[0.0]["mean_probabilities"]  # raw means
