"""Every setting a port of the runtime needs, as one JSON-able dict read from the modules that use them.

    from mask2face.edge_runtime.runtime_spec import runtime_spec
    spec = runtime_spec()          # {"version": ..., "crop": ..., "centerface": ..., "refine": ..., "blend": ...}

A second implementation (the browser page in web/, a native app) reads these values instead of copying numbers out
of prose: `mask2face web` serves this dict as /runtime.json, and the page takes every threshold, crop and blend
setting from it. What belongs to one model file (its input size, output channels, the mask classifier's threshold,
the paste settings it was tuned with: metadata `runtime.blend`) is in that file's own metadata (docs/ARCHITECTURE.md);
`blend` here is this version's defaults, for a file that carries none.
"""

from __future__ import annotations

from dataclasses import asdict

from . import align, centerface, detect
from .inpaint import BlendConfig

# 2: the BlazeFace-only cascade ("blazeface"); 3: blend.refine_min_probability (bare faces decided before the
# detector's closer look); 4: blend.mirror_views (the decision's geometric mean over the face's crops and their mirrors);
# 5: crop.framing (a model file's own framing replaces the canonical eyes; min_centroid_y follows it)
SPEC_VERSION = 5


def _ssd(model: str, opts: "detect.SsdOptions") -> dict:
    return {"model": model, "input_size": opts.input_size, "strides": list(opts.strides),
            "interpolated_scale_aspect_ratio": opts.interpolated_scale_aspect_ratio}


def runtime_spec(blend: BlendConfig = BlendConfig()) -> dict:
    return {
        "version": SPEC_VERSION,
        "crop": {
            "canonical_left_eye": list(align.CANONICAL_LEFT_EYE),
            "canonical_right_eye": list(align.CANONICAL_RIGHT_EYE),
            "interpolation": "bilinear",
            "border": "reflect101",
            # align.framing_of: each model is cut in its own framing, the classifier's too (it may differ from the
            # inpainter's: then the face is cut twice); blend.min_centroid_y is given for the default framing
            "framing": "a model's metadata `framing` {eye_line: y, eye_distance: d} puts the eyes at (0.5 - d/2, y) "
                       "and (0.5 + d/2, y) instead; min_centroid_y then becomes y + (min_centroid_y - 0.37) * d / 0.3, "
                       "min_area and max_area are multiplied by (d / 0.3)^2",
        },
        "centerface": {
            "threshold": detect.CENTERFACE_THRESHOLD,
            "stride": centerface.STRIDE,
            "nms_iou": centerface.NMS_IOU,
            "letterbox": "top-left, area-resized when shrinking, bilinear when growing; RGB 0-255",
            "tile_min_side": detect.CENTERFACE_TILE_MIN_SIDE,
            "tile_overlap": detect.TILE_OVERLAP,
            "tile_skip_fraction": detect.TILE_SKIP_FRACTION,
            "merge_iou": detect.NMS_IOU,
            "keypoints": ["image-left eye", "image-right eye", "nose", "mouth centre", "image-left mouth corner",
                          "image-right mouth corner"],
        },
        "refine": {
            "model": "face_detection_full_range.tflite",
            "input_size": detect.FULL_OPTIONS.input_size,
            "strides": list(detect.FULL_OPTIONS.strides),
            "input_range": [-1, 1],
            "raw_score_limit": detect.RAW_SCORE_LIMIT,
            "scale": detect.REFINE_SCALE,
            "min_score": detect.REFINE_MIN_SCORE,
            "nms_iou": detect.NMS_IOU,
            "border": "replicate",
        },
        # The BlazeFace-only cascade (detect.FaceDetector._blazeface_cascade): where CenterFace finds no face. Merging,
        # tiling and the tile skip are the detector's, in "centerface".
        "blazeface": {
            "stages": [st for st in detect.DEFAULT_STAGES if st not in detect.CENTERFACE_STAGES],
            "full": _ssd("face_detection_full_range.tflite", detect.FULL_OPTIONS),
            "short": _ssd("face_detection_short_range.tflite", detect.SHORT_OPTIONS),
            "union_thresholds": {st: list(v) for st, v in detect.UNION_THRESHOLDS.items()},
            "cross_thresholds": dict(detect.CROSS_THRESHOLDS),
            "confirm_iou": detect.CONFIRM_IOU,
            "fallback_threshold": detect.FALLBACK_THRESHOLD,
            "fallback_reuse": list(detect.FALLBACK_REUSE),
            "confirming_stages": list(detect.CONFIRMING_STAGES),
            "tiled_stages": list(detect.TILED_STAGES),
            "model_family": dict(detect.MODEL_FAMILY),
            # every union stage runs down to the lowest threshold any rule uses; the rules decide afterwards
            "min_score": min([lo for _, lo in detect.UNION_THRESHOLDS.values()]
                             + list(detect.CROSS_THRESHOLDS.values()) + [detect.FALLBACK_THRESHOLD]),
            "pad_fraction": detect.PAD_FRACTION,
            "padded_max_side": detect.PADDED_MAX_SIDE,
            "refine_min_zoom": detect.REFINE_MIN_ZOOM,
            "letterbox": "centred, black; area-resized when shrinking, bilinear when growing; input [-1, 1]",
        },
        "eye_corrections": {name: {side: list(v) for side, v in table.items()}
                            for name, table in detect.EYE_CORRECTIONS.items()},
        "blend": asdict(blend),
    }
