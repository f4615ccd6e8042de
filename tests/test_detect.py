"""edge_runtime.detect: BlazeFace decoding against a real photo, a face-free photo and MediaPipe's anchor layout."""

from __future__ import annotations

import numpy as np
import pytest

from mask2face.edge_runtime import align, detect

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def detector():
    return detect.FaceDetector(threads=2)


def test_anchor_counts_match_the_models():
    assert len(detect.ssd_anchors(detect.FULL_OPTIONS)) == 2304     # 48x48, one anchor each
    assert len(detect.ssd_anchors(detect.SHORT_OPTIONS)) == 896     # 16x16x2 + 8x8x6


def test_astronaut_face_and_keypoints(detector):
    img = skimage_data.astronaut()
    faces = detector.detect(img)
    assert len(faces) == 1 and faces[0].score > 0.8
    x0, y0, x1, y1 = faces[0].box
    # Eileen Collins' face: hand-checked box in the 512x512 image.
    assert 160 < x0 < 190 and 60 < y0 < 85 and 265 < x1 < 295 and 160 < y1 < 190
    le, re = faces[0].eyes()
    assert le[0] < re[0] and abs(le[1] - re[1]) < 10 and 30 < re[0] - le[0] < 55
    nose, mouth = faces[0].keypoints[detect.KP_NOSE], faces[0].keypoints[detect.KP_MOUTH]
    assert le[1] < nose[1] < mouth[1] < y1
    # The eyes give a valid canonical crop.
    m = align.similarity_from_eyes(le, re, 128)
    np.testing.assert_allclose(align.transform_points(m, [le, re]), [[44.8, 47.36], [83.2, 47.36]], atol=1e-6)


def test_face_free_image_has_nothing_above_threshold(detector):
    img = skimage_data.coffee()
    assert detector.full.top_score(img) < detect.MIN_SCORE
    assert detector.detect(img) == []


def test_mirror_flips_eye_order(detector):
    """Keypoint 0 is the image-left eye in an unmirrored photo, also after flipping the photo."""
    img = skimage_data.astronaut()
    a = detector.detect(img)[0].eyes()
    b = detector.detect(img[:, ::-1].copy())[0].eyes()
    assert a[0][0] < a[1][0] and b[0][0] < b[1][0]
    assert abs((511 - b[1][0]) - a[0][0]) < 4                      # same physical eye, mirrored


def test_padded_stage_finds_a_tight_crop(detector):
    img = skimage_data.astronaut()[75:185, 165:290].copy()         # tight face crop
    faces = detector.detect(img)
    assert faces, "cascade must find a face in a tight crop"


def test_eye_correction_is_small_and_applied():
    left, right = np.array([100.0, 100.0]), np.array([150.0, 100.0])
    cl, cr = detect.correct_eyes(left, right)
    # Measured offsets are a few percent of the eye distance (benchmarks/results/detect_calibration.jsonl).
    assert 0 < np.hypot(*(cl - left)) < 0.05 * 50 and 0 < np.hypot(*(cr - right)) < 0.05 * 50
    assert cr[0] - cl[0] < 50                                          # dlib's eye centres sit closer together


def test_weighted_nms_merges_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    kps = np.zeros((3, 6, 2))
    kps[1] += 2.0
    out = detect.weighted_nms(boxes, kps, np.array([0.9, 0.6, 0.8]))
    assert len(out) == 2 and out[0][2] == pytest.approx(0.9)
    np.testing.assert_allclose(out[0][0], [0.4, 0.4, 10.4, 10.4])      # score-weighted mean


def test_union_fuses_views_of_the_same_model_only():
    """merge(fuse=True): the kept face takes the score-weighted mean box and keypoints of overlapping faces of the
    same model family (photo + mirror + tiles); a short-range face overlapping it, or a face elsewhere, is left out."""
    def face(box, score, kp, stage):
        return detect.Face(tuple(float(v) for v in box), score, np.full((6, 2), kp, np.float32), stage)

    full = face((0, 0, 100, 100), 0.9, 10.0, "full")
    flip = face((4, 0, 104, 100), 0.6, 20.0, "flip")
    short = face((0, 2, 100, 102), 0.95, 90.0, "short_tiles")
    other = face((300, 300, 340, 340), 0.7, 50.0, "full")
    kept = detect.merge([full, flip, short, other], fuse=True)
    assert [(k.stage, k.score) for k in kept] == [("short_tiles", 0.95), ("full", 0.7)]
    kept = detect.merge([full, flip, other], fuse=True)
    first = kept[0]
    assert first.stage == "full" and first.score == 0.9
    np.testing.assert_allclose(first.keypoints, (0.9 * 10 + 0.6 * 20) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(first.box, [0.6 * 4 / 1.5, 0, 100 + 0.6 * 4 / 1.5, 100], rtol=1e-6)
    np.testing.assert_array_equal(kept[1].keypoints, other.keypoints)   # alone: unchanged
    assert detect.merge([full, flip])[0] is full                        # without fuse: plain NMS


def test_confirmed_needs_a_second_view():
    """A low-scoring face counts only when another union stage found it too; a high one counts alone."""
    def face(box, score, stage):
        return detect.Face(tuple(float(v) for v in box), score, np.zeros((6, 2)), stage)
    thr = {"full": (0.5, 0.35), "flip": (0.5, 0.35), "short_tiles": (1.01, 0.5)}
    found = {"full": [face((0, 0, 40, 40), 0.4, "full"), face((100, 100, 140, 140), 0.45, "full"),
                      face((200, 200, 240, 240), 0.9, "full")],
             "flip": [face((1, 1, 41, 41), 0.38, "flip")],
             "short_tiles": [face((100, 100, 140, 140), 0.45, "short_tiles"), face((300, 0, 340, 40), 0.99, "short_tiles")]}
    kept = {(f.stage, f.box[0]) for f in detect.confirmed(found, thr)}
    # (0,0): full and flip agree; (100,100): short_tiles is below its confirming threshold; (300,0): short_tiles
    # never counts alone.
    assert kept == {("full", 0.0), ("flip", 1.0), ("full", 200.0)}


def test_cross_model_agreement_lowers_the_bar_only_across_models():
    """A tiles face at 0.45 counts when the short-range model agrees (different model), not when only full/flip
    (the same model) do; a short face never counts alone and gives way to an overlapping full-range face."""
    def face(box, score, stage):
        return detect.Face(tuple(float(v) for v in box), score, np.zeros((6, 2)), stage)
    thr = dict(detect.UNION_THRESHOLDS)
    found = {"full": [face((300, 300, 340, 340), 0.45, "full")],
             "flip": [],
             "tiles": [face((0, 0, 40, 40), 0.45, "tiles"), face((301, 301, 341, 341), 0.45, "tiles")],
             "short_tiles": [],
             "short": [face((1, 1, 41, 41), 0.55, "short"), face((200, 0, 240, 40), 0.99, "short")]}
    kept = {(f.stage, f.box[0]) for f in detect.confirmed(found, thr, cross=detect.CROSS_THRESHOLDS)}
    # (0,0): tiles + short agree across models; (300,300): full and tiles are the same model, tiles needs 0.6 there;
    # (200,0): short never counts alone in the union.
    assert kept == {("tiles", 0.0), ("short", 1.0)}
    assert detect.confirmed(found, thr) == []                          # without cross thresholds: the old rule
    merged = detect.merge(detect.confirmed(found, thr, cross=detect.CROSS_THRESHOLDS), last=detect.CONFIRMING_STAGES)
    assert [(f.stage, f.score) for f in merged] == [("tiles", 0.45)]   # keypoints from the full-range model


def test_refinement_finds_the_eyes_of_a_small_face(detector):
    """The astronaut at half size in a 1280x960 photo: CenterFace's own eyes land 8% of an eye distance off; the
    closer look around her (refined, BlazeFace's full-range model) brings them back to within a few percent of
    where the full-size photo puts them (itself refined). Box and score stay the first pass's. (Before CenterFace,
    tiles found her at ~24 model pixels, a quarter of an eye distance off.)"""
    import cv2
    photo = skimage_data.astronaut()
    reference = np.stack(detector.detect(photo)[0].eyes())
    canvas = np.full((960, 1280, 3), 90, np.uint8)
    small = cv2.resize(photo, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    canvas[300:300 + small.shape[0], 500:500 + small.shape[1]] = small
    truth = reference * 0.5 + [500, 300]
    eye_distance = np.hypot(*(truth[1] - truth[0]))
    coarse = detect.FaceDetector(threads=1, refine=False).detect(canvas)[0]
    fine = detect.FaceDetector(threads=1).detect(canvas)[0]
    assert detect.needs_refining(coarse, max(canvas.shape[:2]))
    coarse_err, fine_err = (np.hypot(*(np.stack(f.eyes()) - truth).T).mean() / eye_distance for f in (coarse, fine))
    assert fine_err < 0.04 and coarse_err > 1.5 * fine_err, (coarse_err, fine_err)
    assert fine.box == coarse.box and fine.score == coarse.score


def test_refine_cut_centres_the_face_at_the_chosen_scale():
    box = (100.0, 50.0, 140.0, 110.0)              # 40 x 60: the longer side sets the scale
    m = detect.refine_cut(box, side=192, scale=2.0)
    centre = m[:, :2] @ [120.0, 80.0] + m[:, 2]
    np.testing.assert_allclose(centre, [96, 96])
    assert m[0, 0] == pytest.approx(192 / 120) and m[1, 1] == pytest.approx(192 / 120)


def test_only_faces_the_cut_would_magnify_are_refined():
    def face(side):
        return detect.Face((0.0, 0.0, float(side), float(side)), 0.9, np.zeros((6, 2), np.float32))
    assert not detect.needs_refining(face(110), 250)     # an LFW photo: ~84 model px already, the cut shows 96
    assert detect.needs_refining(face(200), 640)         # the same face in a 640x480 photo: 60 px
    assert detect.needs_refining(face(40), 400)          # a small face of a real crowd photo


# CenterFace, the first stage ------------------------------------------------------------------------------------

def test_centerface_decode_follows_the_reference_formula():
    """One heatmap peak at cell (y=5, x=7): box size 4*exp(log size), centre 4*(cell + offset + 0.5), landmarks
    relative to the box (y, x interleaved), as CenterFace's reference decoder; a weaker overlapping peak is
    suppressed, and nothing under the threshold is kept."""
    from mask2face.edge_runtime import centerface as cf
    heat = np.zeros((20, 30, 1), np.float32)
    size = np.zeros((20, 30, 2), np.float32)
    offset = np.zeros((20, 30, 2), np.float32)
    marks = np.zeros((20, 30, 10), np.float32)
    heat[5, 7], size[5, 7], offset[5, 7] = 0.9, np.log([40 / 4, 20 / 4]), [0.25, -0.5]   # 40 high, 20 wide
    marks[5, 7, :2] = [0.5, 0.25]                       # first landmark: half-way down, a quarter across
    heat[5, 8], size[5, 8] = 0.6, np.log([40 / 4, 20 / 4])                              # overlapping, weaker
    heat[15, 25] = 0.3                                   # under the threshold
    boxes, points, scores = cf.decode(heat, size, offset, marks, threshold=0.5)
    cy, cx = (5 + 0.25 + 0.5) * 4, (7 - 0.5 + 0.5) * 4
    np.testing.assert_allclose(boxes, [[cx - 10, cy - 20, cx + 10, cy + 20]], rtol=1e-6)
    np.testing.assert_allclose(points[0, 0], [cx - 10 + 0.25 * 20, cy - 20 + 0.5 * 40], rtol=1e-6)
    np.testing.assert_allclose(scores, [0.9])


def test_centerface_score_at_the_threshold_counts():
    """The int8 heatmap moves in steps of 1/256, so a score of exactly 0.5 occurs: it counts, as `score >=
    threshold` does everywhere else in the cascade."""
    from mask2face.edge_runtime import centerface as cf
    heat = np.zeros((8, 8, 1), np.float32)
    heat[3, 3] = 128 / 256
    zeros = [np.zeros((8, 8, c), np.float32) for c in (2, 2, 10)]
    assert len(cf.decode(heat, *zeros, threshold=0.5)[2]) == 1
    assert len(cf.decode(heat, *zeros, threshold=0.5 + 1 / 256)[2]) == 0


def test_centerface_canvas_keeps_the_photo_orientation():
    from mask2face.edge_runtime import centerface as cf
    assert detect.FaceDetector(threads=1).centerface.model.fixed_shape == (cf.CANVAS_SHORT, cf.CANVAS_LONG)  # the asset
    assert cf.canvas_shape(480, 640) == (cf.CANVAS_SHORT, cf.CANVAS_LONG)          # a dynamic-shape model's
    assert cf.canvas_shape(640, 480) == (cf.CANVAS_LONG, cf.CANVAS_SHORT)
    assert all(side % 32 == 0 for side in (cf.CANVAS_LONG, cf.CANVAS_SHORT))   # the network's total stride


@pytest.mark.parametrize("tall", [False, True])
def test_centerface_finds_the_astronaut_in_either_orientation(detector, tall):
    """CenterFace alone, its own eye landmarks corrected (CENTERFACE_EYE_CORRECTION): the box agrees with the
    hand-checked one and the eyes with the refined cascade's to a tenth of the eye distance. A portrait photo
    goes into the same fixed landscape canvas (the int8 asset's), so its face is seen smaller: 15% there."""
    img = skimage_data.astronaut()
    if tall:           # a portrait photo: the astronaut on top of a grey block
        img = np.concatenate([img, np.full((300, 512, 3), 90, np.uint8)])
    only = detect.FaceDetector(threads=1, stages=("centerface",), refine=False)
    faces = only.detect(img)
    assert len(faces) == 1 and faces[0].stage == "centerface" and faces[0].keypoint_model == "centerface"
    assert only.last_stage == "centerface"
    x0, y0, x1, y1 = faces[0].box
    assert 160 < x0 < 200 and 45 < y0 < 85 and 255 < x1 < 295 and 160 < y1 < 190, faces[0].box
    reference = np.stack(detector.detect(skimage_data.astronaut())[0].eyes())
    eye_distance = np.hypot(*(reference[1] - reference[0]))
    tolerance = 0.15 if tall else 0.1
    assert np.hypot(*(np.stack(faces[0].eyes()) - reference).T).max() < tolerance * eye_distance


def test_cascade_refines_centerface_faces_with_blazeface_keypoints(detector):
    faces = detector.detect(skimage_data.astronaut())
    assert detector.last_stage == "centerface"
    assert faces[0].stage == "centerface" and faces[0].keypoint_model == "full_range"


def test_blazeface_cascade_runs_only_where_centerface_finds_nothing(monkeypatch):
    """With CenterFace finding nothing, the BlazeFace stages still find the astronaut (and say so); with a face
    found by CenterFace they are never run."""
    det = detect.FaceDetector(threads=1)
    img = skimage_data.astronaut()
    calls = []
    original = det.run_stage
    monkeypatch.setattr(det, "run_stage", lambda stage, image: calls.append(stage) or original(stage, image))
    det.detect(img)
    assert calls == ["centerface", "centerface_tiles"]       # tiles: nothing to do in a 512 px photo
    monkeypatch.setattr(det, "centerface_threshold", 1.01)      # CenterFace now finds nothing
    calls.clear()
    faces = det.detect(img)
    assert calls[0] == "centerface" and "full" in calls and calls.count("centerface") == 1
    assert faces and det.last_stage.split("+")[0] in ("full", "flip")


def test_centerface_tiles_find_small_faces_in_a_big_photo():
    """Nine astronauts at 35% (faces ~37 px) in a 1440x1080 photo: in the 416x320 canvas each face is ~11 px and
    nothing is found; the 2x2 tiles (photos >= CENTERFACE_TILE_MIN_SIDE) find all nine, each once."""
    import cv2
    small = cv2.resize(skimage_data.astronaut(), None, fx=0.35, fy=0.35, interpolation=cv2.INTER_AREA)
    photo = np.full((1080, 1440, 3), 127, np.uint8)
    for k in range(9):
        y0, x0 = (k // 3) * 360 + 60, (k % 3) * 480 + 100
        photo[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    assert max(photo.shape) >= detect.CENTERFACE_TILE_MIN_SIDE
    untiled = detect.FaceDetector(threads=2, stages=tuple(s for s in detect.DEFAULT_STAGES if s != "centerface_tiles"))
    assert untiled.detect(photo) == []
    tiled = detect.FaceDetector(threads=2)
    faces = tiled.detect(photo)
    assert tiled.last_stage == "centerface_tiles" and len(faces) == 9
    centres = sorted((round((f.box[1] + f.box[3]) / 2 / 360), round((f.box[0] + f.box[2]) / 2 / 480)) for f in faces)
    assert len(set(centres)) == 9                                    # one face per astronaut


def test_the_stage_table_gives_the_measured_per_stage_rules():
    """detectors/stages.py is one table; the per-stage settings the cascade was measured with derive from it."""
    assert detect.UNION_THRESHOLDS == {"full": (0.5, 0.35), "flip": (0.5, 0.35), "tiles": (0.6, 0.6),
                                       "short_tiles": (1.01, 0.5), "short": (1.01, 1.01)}
    assert detect.CROSS_THRESHOLDS == {"full": 0.4, "flip": 0.4, "tiles": 0.4, "short_tiles": 0.5, "short": 0.5}
    assert detect.TILED_STAGES == ("tiles", "tiles2", "tiles3", "short_tiles")
    assert detect.FALLBACK_REUSE == detect.CONFIRMING_STAGES == ("short",)
    assert detect.CENTERFACE_STAGES == ("centerface", "centerface_tiles")
    assert detect.MODEL_FAMILY == {**dict.fromkeys(("full", "flip", "tiles", "tiles2", "tiles3", "padded"), "full_range"),
                                   "short": "short_range", "short_tiles": "short_range"}
    assert set(detect.STAGES) == set(detect.STAGE_TABLE) and set(detect.DEFAULT_STAGES) <= set(detect.STAGES)
