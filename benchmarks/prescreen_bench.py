"""Which faces can skip the detector's closer look: the mask classifier on the first detector's eyes against the
refined eyes.

    python -m mask2face.benchmarks.prescreen_bench --bare lfw=runs/cpu/data --bare faces-dev=runs/facesdev/data

For every face the runtime's detector finds in ../shared/data/real-masked-dev and in the bare sets' test photos,
the shipped classifier scores two crops: one aligned on the first detector's eyes (CenterFace's, corrected) and
one on the eyes of BlazeFace's closer look (what the runtime aligns on). The runtime declines the closer look for
a face whose first-eyes probability is below `BlendConfig.refine_min_probability` and decides it there as bare;
such a face is "lost" if its refined probability reaches the mask threshold (the runtime would have restored it
with the closer look; on a bare set, a false restore spared). One row per photo set and screening threshold in
benchmarks/results/refine_prescreen.jsonl: faces declined (the closer looks saved) and faces lost (`lost`). No
TensorFlow; nothing made from the photos is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime.detect import FaceDetector
from mask2face.edge_runtime.errors import ImageError
from mask2face.edge_runtime.inpaint import BlendConfig, Inpainter, aligned_crop
from mask2face.edge_runtime.mask_decision import MaskClassifier
from mask2face.edge_runtime.safeio import load_image

from .common import DATA, environment, report_row
from .gate_bench import bare_photos, named_folder

# The classifier's int8 output steps by 1/256: 0.002 declines faces it scores 0 only; the others decline steps up to
# 1, 2, 5, 12 and 25.
THRESHOLDS = (0.002, 0.006, 0.01, 0.02, 0.05, 0.1)


def probabilities(detector: FaceDetector, classifier: MaskClassifier, photo: np.ndarray,
                  crop: int) -> list[tuple[float, float]]:
    """(first-eyes probability, refined-eyes probability) of every face found in `photo`, on the aligned crop the
    inpainting model sees (`crop` px; the classifier area-downscales it to its own input); a face whose closer look
    does not find it again keeps its first eyes, as in the runtime."""
    out = []
    for face in detector.detect(photo, worth_refining=lambda f: False):
        crops = [aligned_crop(photo, f, crop) for f in (face, detector.refined(photo, face))]
        if all(c is not None for c in crops):
            out.append(tuple(classifier.probability(aligned) for _, aligned in crops))
    return out


def set_rows(name: str, photos: list[Path], detector: FaceDetector, classifier: MaskClassifier,
             thresholds: tuple[float, ...], crop: int) -> list[dict]:
    faces = []
    for path in tqdm(photos, desc=name, unit="photo", file=sys.stderr):
        try:
            image = load_image(path)
        except ImageError:
            continue
        faces += [(path.name, first, refined) for first, refined in probabilities(detector, classifier, image, crop)]
    rows = []
    for x in thresholds:
        declined = [f for f in faces if f[1] < x]
        lost = [f for f in declined if f[2] >= classifier.threshold]
        rows.append({"bench": "refine_prescreen", "set": name, "photos": len(photos), "faces": len(faces),
                     "refine_min_probability": x, "mask_threshold": classifier.threshold,
                     "declined": len(declined), "declined_share": len(declined) / max(1, len(faces)),
                     "lost": len(lost), "lost_faces": [[p, round(a, 4), round(b, 4)] for p, a, b in lost],
                     "restored_with_closer_look": sum(f[2] >= classifier.threshold for f in faces)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bare", type=named_folder, action="append", default=[], metavar="NAME=PAIRS",
                   help="a pairs folder whose split's source photos are a bare set (repeatable)")
    p.add_argument("--split", default="test")
    p.add_argument("--masked", type=Path, default=DATA / "real-masked-dev", help="folder of real masked photos")
    p.add_argument("--model", default="default",
                   help="inpainting .tflite whose crop size the faces are cut at (default: the shipped one)")
    p.add_argument("--classifier", default="default", help="mask classifier .tflite (default: the shipped one)")
    p.add_argument("--threshold", type=float, action="append", default=None,
                   help=f"screening threshold(s) to count (repeatable; default {THRESHOLDS})")
    p.add_argument("--limit", type=int, default=0, help="at most this many photos per set (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", type=Path, default=None, help="folder the rows are appended to (default: "
                   "benchmarks/results in a clone, else ./mask2face-results)")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)

    masked = sorted(x for x in args.masked.iterdir() if x.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if args.masked.is_dir() else []
    sets = {"real-masked-dev": masked[:args.limit] if args.limit else masked}
    sets.update({name: bare_photos(folder, args.split, DATA, args.limit) for name, folder in args.bare})
    if not all(sets.values()):
        raise SystemExit(f"no photos in {[name for name, photos in sets.items() if not photos]}: real masked photos "
                         f"in {args.masked}, bare ones as the sources of each --bare pairs folder's {args.split} "
                         f"split under {DATA}")
    detector = FaceDetector(threads=args.threads)
    classifier = MaskClassifier.from_file(args.classifier, threads=args.threads)
    crop = Inpainter.from_file(args.model, threads=args.threads, classifier=None).model.input_size[0]
    env = environment()
    for name, photos in sets.items():
        for row in set_rows(name, photos, detector, classifier, tuple(args.threshold or THRESHOLDS), crop):
            row["runtime_default"] = BlendConfig().refine_min_probability
            row["crop"] = crop
            report_row({**row, **env}, ("set", "faces", "refine_min_probability", "declined", "declined_share",
                                        "lost", "lost_faces"),
                       "refine_prescreen.jsonl", save=not args.no_save, results=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
