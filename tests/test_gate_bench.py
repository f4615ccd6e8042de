"""gate_bench: the shares of bare photos altered / masked photos restored, for any min_change, from face records."""
import json

import numpy as np

from mask2face.benchmarks import gate_bench, pairs


def _rec(*faces):
    return {"photo": "p", "faces": [{"other_gates": g, "change": c, "confidence": 0.9} for g, c in faces]}


def test_shares_follow_min_change_and_the_other_gates():
    bare = [_rec((True, 0.05)), _rec((True, 0.09), (False, 0.5)), _rec(), _rec((False, 0.3))]
    masked = [_rec((True, 0.2)), _rec((True, 0.07), (True, 0.11)), _rec((False, 0.4))]
    assert gate_bench.share_pasted(bare, 0.0) == 0.5          # a failed gate never pastes, whatever the change
    assert gate_bench.share_pasted(bare, 0.08) == 0.25
    assert gate_bench.share_pasted(masked, 0.08) == 2 / 3     # one pasted face is enough for the photo
    assert gate_bench.share_pasted(masked, 0.15) == 1 / 3
    s = gate_bench.summarise(bare, masked, 0.08)
    assert s["bare_altered"] == 0.25 and s["bare_left_alone"] == 0.75 and s["bare_with_face"] == 3
    sweep = {r["min_change"]: r for r in s["sweep"]}
    assert sweep[0.0]["bare_altered"] == 0.5 and sweep[0.1]["masked_restored"] == round(2 / 3, 4)
    assert s["masked_change_quantiles"]["p50"] == 0.11


def test_eye_distance_sweep_drops_small_faces_only():
    """A face counts only from its eye distance up (records without one, as before session 10, count as 0)."""
    big = {"other_gates": True, "change": 0.2, "eye_distance": 20.0}
    small = {"other_gates": True, "change": 0.2, "eye_distance": 5.0}
    masked = [{"faces": [big]}, {"faces": [small]}, {"faces": [small, big]}]
    assert gate_bench.share_pasted(masked, 0.08, 0.0) == 1.0
    assert gate_bench.share_pasted(masked, 0.08, 6.0) == 2 / 3
    assert gate_bench.share_pasted([{"faces": [{"other_gates": True, "change": 0.2}]}], 0.08, 1.0) == 0.0
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
