"""gate_bench: the shares of bare photos altered / masked photos restored, for any min_change, from face records."""
import json

import numpy as np

from mask2face.benchmarks import gate_bench
from mask2face.train import pairs


share_pasted, Gates = gate_bench.share_pasted, gate_bench.Gates


def _rec(*faces):
    return {"photo": "p", "faces": [{"other_gates": g, "change": c, "confidence": 0.9} for g, c in faces]}


def test_shares_follow_min_change_and_the_other_gates():
    bare = [_rec((True, 0.05)), _rec((True, 0.09), (False, 0.5)), _rec(), _rec((False, 0.3))]
    masked = [_rec((True, 0.2)), _rec((True, 0.07), (True, 0.11)), _rec((False, 0.4))]
    assert share_pasted(bare, Gates(0.0)) == 0.5          # a failed gate never pastes, whatever the change
    assert share_pasted(bare, Gates(0.08)) == 0.25
    assert share_pasted(masked, Gates(0.08)) == 2 / 3     # one pasted face is enough for the photo
    assert share_pasted(masked, Gates(0.15)) == 1 / 3
    s = gate_bench.summarise(bare, masked, 0.08)
    assert s["bare_altered"] == 0.25 and s["bare_left_alone"] == 0.75 and s["bare_with_face"] == 3
    sweep = {r["min_change"]: r for r in s["sweep"]}
    assert sweep[0.0]["bare_altered"] == 0.5 and sweep[0.1]["masked_restored"] == round(2 / 3, 4)
    assert s["masked_change_quantiles"]["p50"] == 0.11


def test_eye_distance_sweep_drops_small_faces_only():
    """A face counts only from its eye distance up (records without one, from older versions, count as 0)."""
    big = {"other_gates": True, "change": 0.2, "eye_distance": 20.0}
    small = {"other_gates": True, "change": 0.2, "eye_distance": 5.0}
    masked = [{"faces": [big]}, {"faces": [small]}, {"faces": [small, big]}]
    assert share_pasted(masked, Gates(0.08, 0.0)) == 1.0
    assert share_pasted(masked, Gates(0.08, 6.0)) == 2 / 3
    assert share_pasted([{"faces": [{"other_gates": True, "change": 0.2}]}], Gates(0.08, 1.0)) == 0.0
    s = gate_bench.summarise([], masked, 0.08)
    sweep = {r["min_eye_distance_px"]: r["masked_restored"] for r in s["eye_distance_sweep"]}
    assert sweep[0.0] == 1.0 and sweep[6.0] == round(2 / 3, 4) and sweep[16.0] == round(2 / 3, 4)


def test_bare_photos_are_the_split_sources_once_each(tmp_path):
    root = tmp_path / "shared"
    for name in ("a/a_1.jpg", "b/b_1.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    z = np.zeros((3, 4, 4, 3), np.uint8)
    pairs.write_shard(tmp_path / "data" / "test" / pairs.shard_name(0), z, z, z[..., 0],
                      [{"source": "a/a_1.jpg"}, {"source": "a/a_1.jpg"}, {"source": "missing/m.jpg"}])
    pairs.write_shard(tmp_path / "data" / "test" / pairs.shard_name(1), z[:1], z[:1], z[:1, ..., 0],
                      [{"source": "b/b_1.jpg"}])
    got = gate_bench.bare_photos(tmp_path / "data", "test", root, limit=0)
    assert [p.relative_to(root).as_posix() for p in got] == ["a/a_1.jpg", "b/b_1.jpg"]
    assert len(gate_bench.bare_photos(tmp_path / "data", "test", root, limit=1)) == 1
    json.dumps(gate_bench.summarise([], [], 0.08), allow_nan=True)


def test_the_probability_sweep_and_the_annotated_faces_count_each_face_once():
    """Faces carry the classifier's probability; annotated boxes point at the detected face they match."""
    def face(p, box, gates=True):
        return {"other_gates": gates, "change": 0.2, "eye_distance": 20.0, "probability": p, "box": box}
    masked = [{"faces": [face(0.9, [0, 0, 50, 50]), face(0.2, [100, 0, 150, 50])],
               "annotated": gate_bench.label_faces([face(0.9, [0, 0, 50, 50]), face(0.2, [100, 0, 150, 50])],
                                                   [("con_mascarilla", [2, 2, 50, 52]),
                                                    ("sin_mascarilla", [100, 0, 148, 50]),
                                                    ("con_mascarilla", [300, 300, 330, 330])])}]
    bare = {"a": [{"faces": [face(0.6, [0, 0, 9, 9])]}], "b": [{"faces": [face(0.95, [0, 0, 9, 9], gates=False)]}]}
    assert [a["face"] for a in masked[0]["annotated"]] == [0, 1, None]
    s = gate_bench.summarise(bare, masked, 0.08, 0.0, probability=0.5)
    assert s["bare_sets"] == {"a": {"photos": 1, "with_face": 1, "altered": 1},
                              "b": {"photos": 1, "with_face": 1, "altered": 0}}
    assert s["annotated_faces"]["with_mask"] == {"boxes": 2, "found": 1, "pasted": 1}
    assert s["annotated_faces"]["without_mask"] == {"boxes": 1, "found": 1, "pasted": 0}
    assert s["annotated_faces_40px"]["with_mask"]["boxes"] == 1       # the 30 px box is left out
    sweep = {r["min_mask_probability"]: r for r in s["probability_sweep"]}
    assert sweep[0.0]["a_altered"] == 1.0 and sweep[0.7]["a_altered"] == 0.0 and sweep[0.7]["masked_restored"] == 1.0
    assert sweep[0.0]["annotated"]["without_mask"]["pasted"] == 1
    assert s["annotated_scores"] == {"with_mask": [0.9], "without_mask": [0.2], "worn_incorrectly": []}


def test_the_decision_curves_are_drawn_with_the_threshold_marked(tmp_path):
    import cv2
    from mask2face.benchmarks import plots
    face = {"other_gates": True, "change": 0.2, "probability": 0.7, "box": [0, 0, 9, 9]}
    s = gate_bench.summarise({"lfw": [{"faces": [face]}]}, [{"faces": [face]}], 0.08, probability=0.5)
    out = plots.decision_curves(s, tmp_path / "curves.png")
    img = cv2.imread(str(out))
    assert img.shape == (520, 1160, 3) and (img < 250).any()
    assert plots.roc_points([0.9, 0.6], [0.1, 0.7], [0.5]) == ([0.5], [1.0])


def test_the_recommended_threshold_restores_most_within_the_bare_budget():
    row = {"bare_sets": {"a": {}, "b": {}}, "probability_sweep": [
        {"min_mask_probability": 0.1, "a_altered": 0.05, "b_altered": 0.0, "masked_restored": 0.99},
        {"min_mask_probability": 0.2, "a_altered": 0.02, "b_altered": 0.01, "masked_restored": 0.97},
        {"min_mask_probability": 0.3, "a_altered": 0.01, "b_altered": 0.01, "masked_restored": 0.97},
        {"min_mask_probability": 0.4, "a_altered": 0.0, "b_altered": 0.0, "masked_restored": 0.90}]}
    assert gate_bench.recommended_threshold(row) == 0.2
    assert gate_bench.recommended_threshold(row, max_altered=0.0) == 0.4
    assert gate_bench.recommended_threshold(row, max_altered=-1) is None
    photos = [f"p{i}" for i in range(5)]
    assert gate_bench.half(photos, "even") == ["p0", "p2", "p4"] and gate_bench.half(photos, "odd") == ["p1", "p3"]
