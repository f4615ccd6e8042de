"""The detector's stages, in one table: which model looks at which view of the photo, and the rules its faces pass.

A stage is a model (CenterFace, BlazeFace full range or short range, dlib) on a view of the photo (the whole
photo, its mirror, grid x grid overlapping tiles, a padded copy). Every per-stage setting the cascade and the joining
of views use (union thresholds, cross-model thresholds, the model family, tiling, the confirming and reused stages)
is a field here; the older names (UNION_THRESHOLDS, CROSS_THRESHOLDS, MODEL_FAMILY, TILED_STAGES, ...) are derived
from the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from .blazeface import FULL_OPTIONS


@dataclass(frozen=True)
class Stage:
    model: str                                  # centerface | full_range | short_range | dlib
    view: str = "whole"                         # whole | mirror | tiles | padded
    grid: int = 1                               # tiles: grid x grid
    min_side: int = 0                           # runs only on photos whose longer side is at least this
    union: tuple[float, float] | None = None    # (accept, confirmed) of a union stage (below)
    cross: float | None = None                  # cross-model agreement threshold (below)
    confirming: bool = False                    # its faces give way in merge() to any overlapping face of another stage
    fallback_reuse: bool = False                # a union stage that is also a fallback (its detections are reused)

    @property
    def tiled(self) -> bool:
        return self.view == "tiles"


# Union stages always run (tiles ones unless every face is big) and their faces are joined. Each has two
# thresholds (accept, confirmed): a face scoring >= accept counts on its own; one scoring >= confirmed counts only
# if another union stage found an overlapping face (IoU >= CONFIRM_IOU) above that stage's confirmed threshold.
# Agreement between views (the mirrored photo, tiles, the short-range model on 3x3 tiles) lets true small faces
# through at a lower score while single-view noise stays out. Chosen on the 75 even-numbered annotated FMD photos
# of data/real-masked-dev (sorted by name), checked on the 75 odd ones and on face-free scikit-image pictures
# (benchmarks/detect_bench.py, rows with variant "confirm-v1" in benchmarks/results/detect.jsonl).
# short_tiles never counts alone (accept > 1): on its own it fires on coffee, cells and the Hubble field.
# short (the short-range model on the whole photo) is a union stage only as a confirming view (never counts alone
# there; it stays a fallback of its own at FALLBACK_THRESHOLD, `fallback_reuse`).
# Cross-model agreement: a face of a full-range view scoring >= its CROSS_THRESHOLDS value also counts when a
# short-range view found an overlapping face >= its value, and the other way round. The two models are trained
# apart and fail on different things (full-range views fire together on the Hubble field, short-range ones on coins
# and cells), while same-model views (full/flip/tiles) share their mistakes, so tiles need 0.6 to agree with full
# but only 0.4 to agree with the short-range model. Misses diagnosed on real-masked-dev were mostly small masked
# faces found by tiles at 0.45-0.6 and by short_tiles/short at 0.5-0.8. Chosen on the pick half (even FMD photos):
# recall 92% -> 96% there, 83% -> 87% on the check half (not used to choose), false detections 0.18 -> 0.19 per
# photo, none on the face-free pictures (variant "cross-v1" in benchmarks/results/detect.jsonl).
# CenterFace sees every photo in a 416x320 canvas, so in a big photo a face of 40 px becomes 10-15 px. Photos at
# least twice the canvas are also looked at in 2x2 overlapping tiles (TILE_OVERLAP; each tile again in the canvas),
# unless a face of TILE_SKIP_FRACTION of the photo is found (a portrait). Measured on mosaics of 3x3 annotated
# real-masked-dev photos (`detect_bench --mosaic 3`), see the "mosaic" rows in detect.jsonl.
CENTERFACE_TILE_MIN_SIDE = 832
STAGE_TABLE = {
    "centerface": Stage("centerface"),
    "centerface_tiles": Stage("centerface", "tiles", grid=2, min_side=CENTERFACE_TILE_MIN_SIDE),
    "full": Stage("full_range", union=(0.5, 0.35), cross=0.4),
    "flip": Stage("full_range", "mirror", union=(0.5, 0.35), cross=0.4),
    # tiling a photo smaller than two model inputs only upsamples it
    "tiles": Stage("full_range", "tiles", grid=2, min_side=2 * FULL_OPTIONS.input_size, union=(0.6, 0.6), cross=0.4),
    "tiles2": Stage("full_range", "tiles", grid=2),
    "tiles3": Stage("full_range", "tiles", grid=3),
    "padded": Stage("full_range", "padded"),
    "short": Stage("short_range", union=(1.01, 1.01), cross=0.5, confirming=True, fallback_reuse=True),
    "short_tiles": Stage("short_range", "tiles", grid=3, union=(1.01, 0.5), cross=0.5),
    "dlib": Stage("dlib"),
}

STAGES = tuple(STAGE_TABLE)
UNION_THRESHOLDS = {n: st.union for n, st in STAGE_TABLE.items() if st.union is not None}
CROSS_THRESHOLDS = {n: st.cross for n, st in STAGE_TABLE.items() if st.cross is not None}
UNION_STAGES = tuple(UNION_THRESHOLDS)
FALLBACK_REUSE = tuple(n for n, st in STAGE_TABLE.items() if st.fallback_reuse)
CONFIRMING_STAGES = tuple(n for n, st in STAGE_TABLE.items() if st.confirming)
TILED_STAGES = tuple(n for n, st in STAGE_TABLE.items() if st.tiled and st.model != "centerface")
CENTERFACE_STAGES = tuple(n for n, st in STAGE_TABLE.items() if st.model == "centerface")
# The BlazeFace views of one model fuse (views.fused_face) and count as one model for the cross-model rule.
MODEL_FAMILY = {n: st.model for n, st in STAGE_TABLE.items() if st.model in ("full_range", "short_range")}
