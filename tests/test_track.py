"""The face tracker for video frames: the closer look between full detections, and when it hands back."""

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from mask2face.edge_runtime import detect
from mask2face.edge_runtime.track import FaceTracker


@pytest.fixture(scope="module")
def detector():
    return detect.FaceDetector(threads=2)


def moving_astronaut(frames: int, size=(640, 480)) -> list[np.ndarray]:
    """The astronaut on a grey 640x480 frame, panning right and down 4 px and zooming in 0.5% per frame."""
    w, h = size
    canvas = np.full((h, w, 3), 127, np.uint8)
    canvas[h // 2 - 200:h // 2 + 200, w // 2 - 200:w // 2 + 200] = cv2.resize(skimage_data.astronaut(), (400, 400))
    out = []
    for i in range(frames):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, 1.0 + 0.005 * i)
        m[:, 2] += (4.0 * i, 2.0 * i)
        out.append(cv2.warpAffine(canvas, m, (w, h), borderValue=(127, 127, 127)))
    return out


def largest_eye_gap(face: detect.Face, reference: detect.Face) -> float:
    (l0, r0), (l1, r1) = reference.eyes(), face.eyes()
    return max(np.hypot(*(l1 - l0)), np.hypot(*(r1 - r0))) / np.hypot(*(r0 - l0))


def test_a_moving_face_is_followed_between_full_detections(detector):
    """30 frames, full detector on frames 0, 10 and 20 only; every frame's eyes within 10% of the eye distance of
    what the full detector finds on that frame (the crop would be the same to a few pixels)."""
    tracker = FaceTracker(detector, redetect_every=10)
    stages = []
    for frame in moving_astronaut(30):
        faces = tracker.detect(frame)
        stages.append(tracker.last_stage)
        full = detector.detect(frame)
        assert len(faces) == len(full) == 1
        assert detect.box_iou(np.array(faces[0].box), np.array([full[0].box]))[0] > 0.7
        assert largest_eye_gap(faces[0], full[0]) < 0.10
    assert [i for i, s in enumerate(stages) if s != "tracked"] == [0, 10, 20]
    assert tracker.full_detections == 3 and tracker.frames == 30


def test_a_lost_face_hands_back_to_the_full_detector(detector):
    """The face leaves (a grey frame): the closer look finds nothing, so that frame gets the full detector, and so
    does every frame while no face is known; the face coming back is found on its first frame."""
    frames = moving_astronaut(4)
    grey = np.full_like(frames[0], 127)
    tracker = FaceTracker(detector, redetect_every=10)
    found = [len(tracker.detect(f)) for f in [frames[0], frames[1], grey, grey, frames[2], frames[3]]]
    assert found == [1, 1, 0, 0, 1, 1]
    assert tracker.full_detections == 4          # frame 0, both grey frames, the face's return; frame 3 is tracked
    assert tracker.last_stage == "tracked"


def test_a_new_face_is_found_at_the_next_full_detection(detector):
    """A second face comes in while the first is followed: it is in the results from the next full detection on."""
    frames = moving_astronaut(8)
    tracker = FaceTracker(detector, redetect_every=4)
    counts = []
    for i, frame in enumerate(frames):
        if i >= 2:   # a second astronaut, small, in the top-left corner from frame 2
            frame = frame.copy()
            frame[10:170, 10:170] = cv2.resize(skimage_data.astronaut()[:300, 80:380], (160, 160))
        counts.append(len(tracker.detect(frame)))
    assert counts[:4] == [1, 1, 1, 1] and counts[4:] == [2, 2, 2, 2]


def test_every_frame_gets_the_full_detector_at_redetect_every_1_or_a_new_frame_size(detector):
    frames = moving_astronaut(3)
    tracker = FaceTracker(detector, redetect_every=1)
    for frame in frames:
        tracker.detect(frame)
    assert tracker.full_detections == 3
    tracker = FaceTracker(detector, redetect_every=10)
    tracker.detect(frames[0])
    tracker.detect(cv2.resize(frames[1], (480, 360)))
    assert tracker.full_detections == 2
    with pytest.raises(ValueError, match="redetect_every must be 1 or more"):
        FaceTracker(detector, redetect_every=0)


def test_moved_box_follows_the_eyes():
    """Eyes 10 px apart spread to 20 px and their midpoint moved 3 px up: the box doubles about the midpoint and
    moves up with it."""
    box = detect.moved_box((0.0, 0.0, 20.0, 20.0), (np.array([5.0, 8.0]), np.array([15.0, 8.0])),
                           (np.array([0.0, 5.0]), np.array([20.0, 5.0])))
    assert box == pytest.approx((-10.0, -11.0, 30.0, 29.0))


def test_a_face_only_centerface_sees_is_not_followed(detector):
    """A known face without BlazeFace keypoints (its closer look found nothing last time) would be lost on every
    frame: the next frame goes straight to the full detector."""
    frames = moving_astronaut(3)
    tracker = FaceTracker(detector, redetect_every=10)
    tracker.detect(frames[0])
    tracker.detect(frames[1])
    assert tracker.last_stage == "tracked"
    face = tracker._faces[0]
    tracker._faces = [detect.Face(face.box, face.score, face.keypoints, "centerface", keypoint_model="centerface")]
    tracker.detect(frames[2])
    assert tracker.last_stage != "tracked" and tracker.full_detections == 2


def test_track_bench_clips_move_their_boxes_with_the_picture(detector):
    """The bench's ground truth: a box on the still picture, moved with each frame, is where the detector finds the
    face on that frame."""
    from mask2face.benchmarks import track_bench
    photo = skimage_data.astronaut()
    box = detector.detect(photo)[0].box
    frames, boxes, moves = track_bench.clip(photo, [("con_mascarilla", list(box))], frames=8, phase=0.3)
    assert len(frames) == len(boxes) == len(moves) == 8 and frames[0].shape == (480, 640, 3)
    for k in (0, 4, 7):
        found = detector.detect(frames[k])
        assert detect.box_iou(np.array(boxes[k][0][1]), np.array([f.box for f in found])).max() > 0.6


def test_eye_jitter_is_the_rms_wander_in_eye_distances():
    from mask2face.benchmarks import track_bench
    steady = [np.array([[0.0, 0.0], [10.0, 0.0]])] * 6
    assert track_bench.jitter(steady) == 0.0
    assert track_bench.jitter(steady[:4]) is None                  # too few frames to say
    # both eyes 1 px left on half the frames and 1 px right on the other half: RMS 1 px = 0.1 eye distances
    wobbly = [e + [[(-1) ** i, 0.0], [(-1) ** i, 0.0]] for i, e in enumerate(steady)]
    assert track_bench.jitter(wobbly) == pytest.approx(0.1)


def test_track_bench_row_on_real_masked_photos(capsys):
    """Two short clips through both modes: every frame scored, the tracker's full detections counted."""
    import json
    from conftest import shared_data
    from mask2face.benchmarks import track_bench
    shared_data("real-masked-dev")
    assert track_bench.main(["--photos", "2", "--frames", "6", "--no-save"]) == 0
    out = capsys.readouterr().out
    row = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert row["clips"] == 2 and row["frames"] == 12
    full, tracked = row["full"], row["tracked"]
    assert full["recall_boxes"] == tracked["recall_boxes"] > 0 and 0 <= tracked["recall"] <= 1
    assert 2 / 12 <= tracked["full_detection_share"] <= 1 and full["frames_per_s_end_to_end"] > 0
