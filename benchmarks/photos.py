"""The photo sets benchmarks run on: real-masked-dev's annotated photos (PASCAL-VOC boxes, Spanish labels) and the
generated pairs put back into their full-size photos."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from mask2face.edge_runtime import align, detect

WITH_MASK = "con_mascarilla"


def read_boxes(xml_path: Path) -> list[tuple[str, list[float]]]:
    root = ET.parse(xml_path).getroot()
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        box = [float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        out.append((obj.findtext("name"), box))
    return out


def annotated_photos(folder: Path) -> list[Path]:
    """The photos of `folder` that have PASCAL-VOC boxes in `folder`/annotations, sorted."""
    return sorted(p for p in folder.iterdir() if (folder / "annotations" / (p.stem + ".xml")).exists())


def score_photo(boxes: list, annotated: list[tuple[str, list[float]]]) -> tuple[int, int, int]:
    """One photo's (hits, boxes, false): its with-mask boxes >= 40 px that a detection matches at IoU >= 0.4, how
    many such boxes there are, and the detections that match no annotated box of any class at IoU >= 0.4."""
    found = np.array(boxes, np.float64).reshape(-1, 4)
    truth = [box for label, box in annotated if label == WITH_MASK and box[2] - box[0] >= 40]
    hits = sum(len(found) > 0 and detect.box_iou(np.array(box), found).max() >= 0.4 for box in truth)
    every = np.array([box for _, box in annotated])
    false = sum(detect.box_iou(box, every).max() < 0.4 for box in found)
    return int(hits), len(truth), int(false)


def rebuild_photo(photo: np.ndarray, masked_crop: np.ndarray, mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The full-size masked photo: the pair's masked crop blended back where its mask is (alpha = mask / 255)."""
    return align.paste_back(photo, masked_crop, mask.astype(np.float32) / 255.0, np.asarray(matrix, np.float64))


def iter_pairs(data_dir: Path, split: str, limit: int = 0):
    """(masked crop, mask, meta) for every pair of a split, shard by shard (one shard in memory at a time)."""
    from mask2face.train import pairs
    shards = pairs.shard_paths(data_dir, split)
    if not shards:
        raise SystemExit(f"no pairs in {Path(data_dir) / split}: run `mask2face data` first or pass the run's data dir")
    n = 0
    for path in shards:
        arrays, meta = pairs.read_shard(path), pairs.read_meta(path)
        for i, m in enumerate(meta):
            yield arrays["masked"][i], arrays["mask"][i], m
            n += 1
            if limit and n >= limit:
                return
