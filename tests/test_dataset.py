"""train.dataset: identity split, hostile folders, resume, determinism, the CLI's error for empty input."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from mask2face.train import pairs
from mask2face.config import DataConfig
from mask2face.edge_runtime import safeio
from mask2face.edge_runtime.errors import NoFacesError
from mask2face.train import dataset

from conftest import shared_data

SMALL = DataConfig(image_size=32, test_size=1, shard_size=4, val_fraction=0.0, workers=1, detector="hog")


def _src(identity, i):
    return dataset.Source(f"/x/{identity}/{i}.jpg", f"r/{identity}/{i}.jpg", f"r/{identity}")


def test_split_has_no_identity_overlap_and_is_seeded():
    sources = [_src(f"id{k:03d}", i) for k in range(120) for i in range(1 + k % 3)]
    s1 = dataset.split_identities(sources, test_size=40, val_fraction=0.1, seed=0)
    s2 = dataset.split_identities(sources, test_size=40, val_fraction=0.1, seed=0)
    s3 = dataset.split_identities(sources, test_size=40, val_fraction=0.1, seed=1)
    assert s1 == s2 and s1 != s3
    sets = [set(s1[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == {s.identity for s in sources}
    n_test = sum(1 for s in sources if s.identity in sets[2])
    assert 40 <= n_test <= 42          # whole identities: at most one identity's worth above the target
    assert len(s1["val"]) == round(0.1 * (120 - len(s1["test"])))
    jobs = dataset.plan_shards(sources, s1, 16, 0)
    assert jobs == dataset.plan_shards(sources, s1, 16, 0)
    assert sorted(s.rel for _, _, items in jobs for s in items) == sorted(s.rel for s in sources)


def test_identity_from_folder_or_stem(tmp_path):
    (tmp_path / "Ann_Bee").mkdir()
    for p in (tmp_path / "Ann_Bee" / "Ann_Bee_0001.jpg", tmp_path / "Ann_Bee" / "Ann_Bee_0002.jpg",
              tmp_path / "solo.png", tmp_path / "notes.txt"):
        p.write_bytes(b"x")
    got = {Path(s.path).name: s.identity for s in dataset.list_sources([tmp_path])}
    root = tmp_path.name
    assert got == {"Ann_Bee_0001.jpg": f"{root}/Ann_Bee", "Ann_Bee_0002.jpg": f"{root}/Ann_Bee",
                   "solo.png": f"{root}/solo"}


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory):
    """Good astronaut photos in awkward encodings plus every kind of broken file."""
    from PIL import Image
    skimage_data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("faces")
    rgb = skimage_data.astronaut()
    safeio.save_image(root / "plain.jpg", rgb)
    (root / "png_named.jpg").write_bytes(safeio.encode_image(rgb, ".png"))          # accepted by magic
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg", "JPEG", quality=90)
    cv2.imwrite(str(root / "deep16.png"), (rgb[..., ::-1].astype(np.uint16) * 257))
    exif = Image.Exif()
    exif[0x0112] = 8   # stored rotated 90 deg clockwise; orientation 8 = rotate 90 deg counter-clockwise back
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, k=-1))).save(root / "exif_rotated.jpg", "JPEG",
                                                                      quality=90, exif=exif.tobytes())
    (root / "text.jpg").write_text("this is not an image")
    (root / "zero.jpg").write_bytes(b"")
    jpg = safeio.encode_image(rgb, ".jpg")
    (root / "truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    corrupt = bytearray(jpg[:600]) + bytes(np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8)) \
        + b"\xff\xd9"
    (root / "corrupt.jpg").write_bytes(bytes(corrupt))
    ihdr = struct.pack(">IIBBBBB", 80_000, 80_000, 8, 2, 0, 0, 0)
    chunk = lambda k, b: struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b) & 0xFFFFFFFF)
    (root / "bomb.png").write_bytes(safeio.PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 99))
                                    + chunk(b"IEND", b""))
    noface = np.full((200, 200, 3), 120, np.uint8)
    safeio.save_image(root / "no_face.png", noface)
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return root


EXPECTED_SKIPS = {"text.jpg": "not-an-image", "zero.jpg": "empty", "truncated.jpg": "truncated",
                  "bomb.png": "too-large", "no_face.png": "no-face"}
EXPECTED_PAIRS = {"plain.jpg", "png_named.jpg", "cmyk.jpg", "deep16.png", "exif_rotated.jpg"}


def test_hostile_folder_finishes_with_reasons_and_resumes(hostile_folder, tmp_path):
    out = tmp_path / "data"
    report = dataset.generate(SMALL, [hostile_folder], out, workers=1, progress=False)
    skipped = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    for name, reason in EXPECTED_SKIPS.items():
        assert skipped.get(name) == reason, (name, skipped)
    assert skipped.get("corrupt.jpg") in ("truncated", "no-face")   # garbage scan data: undecodable or faceless
    made = {Path(m["source"]).name for split in pairs.SPLITS for p in pairs.shard_paths(out, split)
            for m in pairs.read_meta(p)}
    assert made == EXPECTED_PAIRS                       # CMYK, 16-bit, EXIF-rotated and PNG-as-.jpg all work
    assert report["found"] == 11 and report["pairs"] == 5
    on_disk = json.loads((out / "report.json").read_text())
    assert {Path(s["file"]).name for s in on_disk["skipped"]} == set(skipped)
    info = json.loads((out / "dataset.json").read_text())
    assert info["pairs"] == 5 and info["image_size"] == 32
    # shards follow the pairs format
    for split in pairs.SPLITS:
        for p in pairs.shard_paths(out, split):
            d = pairs.read_shard(p)
            assert d["masked"].shape[1:] == (32, 32, 3) and d["mask"].shape[1:] == (32, 32)
            assert set(np.unique(d["mask"])) <= {0, 255}
            keep = d["mask"] == 0
            assert np.array_equal(d["masked"][keep], d["clean"][keep])
    # resume: a second run makes nothing and leaves the shards byte-identical; landmarks come from the cache
    before = {p: p.read_bytes() for p in out.glob("*/shard-*.npz")}
    again = dataset.generate(SMALL, [hostile_folder], out, workers=1, progress=False)
    assert again["shards_made_now"] == 0 and again["pairs"] == 5
    assert {p: p.read_bytes() for p in out.glob("*/shard-*.npz")} == before
    # landmark cache: with the shards gone, a re-run re-renders everything without a single detection
    for p in before:
        p.unlink()
    third = dataset.generate(SMALL, [hostile_folder], out, workers=1, progress=False)
    assert third["timing"]["detected_now"] == 0 and third["timing"]["cached_now"] >= 6
    assert {p: p.read_bytes() for p in out.glob("*/shard-*.npz")} == before
    # other settings into the same folder: refused with a message, nothing mixed
    with pytest.raises(Exception, match="other data settings"):
        dataset.generate(replace(SMALL, image_size=48), [hostile_folder], out, workers=1, progress=False)
    # a fresh output folder sharing nothing gives the same bytes (determinism)
    out2 = tmp_path / "data2"
    dataset.generate(SMALL, [hostile_folder], out2, workers=1, progress=False)
    for p, blob in before.items():
        assert (out2 / p.relative_to(out)).read_bytes() == blob
    # ... and so does a run with two worker processes (seeds come from file paths, not from the schedule)
    out3 = tmp_path / "data3"
    dataset.generate(SMALL, [hostile_folder], out3, workers=2, progress=False)
    for p, blob in before.items():
        assert (out3 / p.relative_to(out)).read_bytes() == blob


def test_shard_parts_cover_everything_once(hostile_folder, tmp_path):
    out = tmp_path / "parts"
    cfg = replace(SMALL, shard_size=2)
    r0 = dataset.generate(cfg, [hostile_folder], out, shard=(0, 2), progress=False)
    assert not (out / "dataset.json").exists()          # half the shards: not complete yet
    r1 = dataset.generate(cfg, [hostile_folder], out, shard=(1, 2), progress=False)
    assert r0["shards_this_part"] + r1["shards_this_part"] == r0["shards_total"]
    info = json.loads((out / "dataset.json").read_text())
    assert info["pairs"] == len(EXPECTED_PAIRS) and info["skipped"] == 6


def test_empty_and_missing_folders_raise_one_clear_error(tmp_path):
    with pytest.raises(NoFacesError, match="no JPEG/PNG files"):
        dataset.list_sources([tmp_path])
    with pytest.raises(NoFacesError, match="no such folder"):
        dataset.list_sources([tmp_path / "nope"])
    r = subprocess.run(["mask2face", "data", "--faces", str(tmp_path), "--run", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2
    assert "no JPEG/PNG files" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(["mask2face", "data", "--run", str(tmp_path / "run")], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 2 and "--faces" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.data
@pytest.mark.slow
def test_lfw_sample_yield(tmp_path):
    lfw = shared_data("lfw")
    cfg = DataConfig(image_size=64, max_faces=64, test_size=8, shard_size=32, detector="cascade")
    report = dataset.generate(cfg, [lfw], tmp_path / "d", workers=1, progress=False)
    assert report["yield"] >= 0.95, report["skipped"]


@pytest.mark.data
@pytest.mark.slow
def test_faces_dev_tight_crops_sample_yield(tmp_path):
    """Tight crops defeat plain HOG (~26%); the cascade (padding, BlazeFace, MMOD CNN) must find most."""
    faces_dev = shared_data("faces-dev")
    cfg = DataConfig(image_size=64, max_faces=40, test_size=4, shard_size=40, detector="cascade")
    report = dataset.generate(cfg, [faces_dev], tmp_path / "d", workers=1, progress=False)
    assert report["yield"] >= 0.85, report["skipped"]
    assert all(s["reason"] for s in report["skipped"])


def test_a_damaged_shard_is_named_and_rebuilt_on_resume(hostile_folder, tmp_path):
    """A shard cut short after it was written (a copy, a full disk elsewhere): reading it is one error that names
    it, and re-running `data` rebuilds exactly that shard, byte-identical."""
    from mask2face.edge_runtime.errors import Mask2FaceError
    out = tmp_path / "data"
    dataset.generate(SMALL, [hostile_folder], out, workers=1, progress=False)
    shards = sorted(out.glob("*/shard-*.npz"))
    before = {p: p.read_bytes() for p in shards}
    victim = shards[0]
    victim.write_bytes(before[victim][: len(before[victim]) // 2])
    with pytest.raises(Mask2FaceError, match=f"{victim.name} is damaged.*mask2face data"):
        pairs.read_shard(victim)
    again = dataset.generate(SMALL, [hostile_folder], out, workers=1, progress=False)
    assert again["shards_made_now"] == 1
    assert {p: p.read_bytes() for p in shards} == before


def test_a_folder_without_any_usable_face_is_an_error(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "text.jpg").write_text("not an image")
    safeio.save_image(tmp_path / "faces" / "grey.png", np.full((64, 64, 3), 120, np.uint8))
    r = subprocess.run(["mask2face", "data", "--preset", "smoke", "--faces", str(tmp_path / "faces"),
                        "--run", str(tmp_path / "run"), "--workers", "1"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "no usable face" in r.stderr and "Traceback" not in r.stderr


def _pairs_folder(root: Path, size: int, per_split: dict[str, list[int]]) -> Path:
    """A tiny pairs folder: per split, shards of the given lengths; each pair's pixels hold its own tag."""
    for split, lengths in per_split.items():
        for i, n in enumerate(lengths):
            tag = np.arange(n, dtype=np.uint8)[:, None, None, None] + 10 * i
            img = np.broadcast_to(tag, (n, size, size, 3)).copy()
            pairs.write_shard(root / split / pairs.shard_name(i), img, img, img[..., 0],
                              [{"source": f"{root.name}/{split}/{i}/{k}"} for k in range(n)])
    (root / "dataset.json").write_text(json.dumps({"image_size": size}))
    return root


def test_merge_joins_train_splits_and_keeps_one_sets_val_and_test(tmp_path):
    a = _pairs_folder(tmp_path / "a", 8, {"train": [3, 2], "val": [1], "test": [2]})
    b = _pairs_folder(tmp_path / "b", 8, {"train": [4], "val": [5], "test": [5]})
    info = pairs.merge(tmp_path / "m", [a, b], eval_from=a)
    assert info["counts"] == {"train": 9, "val": 1, "test": 2} and info["image_size"] == 8
    train = pairs.load_split(tmp_path / "m", "train")
    expected = np.concatenate([pairs.load_split(a, "train")["masked"], pairs.load_split(b, "train")["masked"]])
    assert np.array_equal(train["masked"], expected)
    assert np.array_equal(pairs.load_split(tmp_path / "m", "test")["clean"], pairs.load_split(a, "test")["clean"])
    assert [m["source"] for m in pairs.read_meta(tmp_path / "m" / "train" / "shard-00002.npz")][0] == "b/train/0/0"
    c = _pairs_folder(tmp_path / "c", 16, {"train": [1], "val": [1], "test": [1]})
    with pytest.raises(pairs.Mask2FaceError, match="different sizes"):
        pairs.merge(tmp_path / "m2", [a, c], eval_from=a)
    with pytest.raises(pairs.Mask2FaceError, match="not empty"):
        pairs.merge(tmp_path / "m", [a], eval_from=a)


def test_merge_command_says_what_is_missing(tmp_path):
    a = _pairs_folder(tmp_path / "a", 8, {"train": [1], "val": [1], "test": [1]})
    (tmp_path / "empty").mkdir()
    out = subprocess.run([sys.executable, "-m", "mask2face.train.pairs", "merge", str(tmp_path / "m"), "--train",
                          str(a), str(tmp_path / "empty"), "--eval", str(a)], capture_output=True, text=True,
                         cwd=tmp_path)   # outside the clone, whose mask2face/ folder would shadow the installed package
    assert out.returncode == 2 and "no train pairs in" in out.stderr and "Traceback" not in out.stderr


def test_a_refused_merge_leaves_nothing_behind(tmp_path):
    a = _pairs_folder(tmp_path / "a", 8, {"train": [2], "val": [1], "test": [1]})
    c = _pairs_folder(tmp_path / "c", 16, {"train": [1], "val": [1], "test": [1]})
    (c / "dataset.json").unlink()
    d = _pairs_folder(tmp_path / "d", 16, {"train": [1], "val": [1], "test": [1]})
    for train, match in (([a, c], "no train pairs in"), ([a, tmp_path / "missing"], "no train pairs in"),
                         ([a, d], "different sizes")):
        with pytest.raises(pairs.Mask2FaceError, match=match):
            pairs.merge(tmp_path / "m", train, eval_from=a)
        assert not (tmp_path / "m").exists()
