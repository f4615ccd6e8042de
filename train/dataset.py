"""`mask2face data`: faces folder(s) -> aligned masked/clean pairs, sharded and split by identity.

    mask2face data --preset cpu --faces ../shared/data/lfw --workers 2 [--shard i/n] [--contact-sheet] [--bench]

Steps: list JPEG/PNG files recursively (sorted), identity = parent folder (LFW `name/name_0001.jpg`) or the
file stem for files at a folder's top level; split identities into train/val/test with a fixed seed; cut each
split into shards of `data.shard_size` source files. A shard is one unit of work: detect (or read cached)
landmarks, align the eyes-only crop (edge_runtime/align.py, with `data.crop_jitter`), draw a mask, write
`SPLIT/shard-NNNNN.npz/.json` (train/pairs.py). Everything random is derived from (data.seed, file path),
so the output does not depend on worker count or on which machine ran a shard, and a re-run skips every shard
whose .npz exists (resume).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mask2face.train import pairs
from mask2face.edge_runtime import align, safeio
from mask2face.edge_runtime.errors import ImageError, Mask2FaceError, NoFacesError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".jpe"}
SKIPPED_SUFFIX = ".skipped.json"     # per-shard list of skipped files (written before the .npz)


@dataclass(frozen=True)
class Source:
    path: str          # absolute path
    rel: str           # "<root name>/<path inside root>": stable across machines, used for seeds
    identity: str


def list_sources(roots: list[Path], max_faces: int = 0, seed: int = 0) -> list[Source]:
    """Every image-like file under the roots, sorted. Files with other suffixes are not considered at all;
    files with an image suffix but wrong content are kept here and reported as skipped later."""
    out: list[Source] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise NoFacesError(f"--faces {root}: no such folder; point it at a folder of face photos "
                               "(e.g. ../shared/data/lfw)")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                p = Path(dirpath) / name
                rel_in_root = p.relative_to(root)
                ident = rel_in_root.parts[0] if len(rel_in_root.parts) > 1 else p.stem
                out.append(Source(str(p.resolve()), f"{root.resolve().name}/{rel_in_root.as_posix()}",
                                  f"{root.resolve().name}/{ident}"))
    out.sort(key=lambda s: s.rel)
    if not out:
        raise NoFacesError(f"no JPEG/PNG files found in {', '.join(map(str, roots))}; "
                           "pass --faces DIR with face photos")
    if max_faces and len(out) > max_faces:
        idx = np.random.default_rng(seed).permutation(len(out))[:max_faces]
        out = [out[i] for i in sorted(idx)]
    return out


def split_identities(sources: list[Source], test_size: int, val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Whole identities per split: test gets identities until it holds >= test_size images (capped at half the
    data), val gets val_fraction of the remaining identities, train the rest."""
    counts: dict[str, int] = {}
    for s in sources:
        counts[s.identity] = counts.get(s.identity, 0) + 1
    idents = sorted(counts)
    order = [idents[i] for i in np.random.default_rng(seed).permutation(len(idents))]
    test, n = [], 0
    target = min(test_size, len(sources) // 2)
    while order and n < target:
        ident = order.pop()
        test.append(ident)
        n += counts[ident]
    n_val = int(round(val_fraction * len(order))) if len(order) > 2 else 0
    if val_fraction > 0 and len(order) > 2:
        n_val = max(1, n_val)
    val, train = order[:n_val], order[n_val:]
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def plan_shards(sources: list[Source], splits: dict[str, list[str]], shard_size: int, seed: int):
    """[(split, shard index, [Source...])] in a fixed order; sources shuffled (seeded) so shards mix identities."""
    which = {ident: split for split, idents in splits.items() for ident in idents}
    jobs = []
    for split in pairs.SPLITS:
        items = [s for s in sources if which[s.identity] == split]
        rng = np.random.default_rng([seed, pairs.SPLITS.index(split)])
        items = [items[i] for i in rng.permutation(len(items))]
        for k in range(math.ceil(len(items) / shard_size)):
            jobs.append((split, k, items[k * shard_size:(k + 1) * shard_size]))
    return jobs


def file_seed(seed: int, rel: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{rel}".encode()).digest()[:8], "little") >> 1


# ---------------------------------------------------------------- worker side

def make_pair(src: Source, data_cfg, cache, stats: dict) -> tuple[dict | None, str | None]:
    """One source file -> (pair dict, None) or (None, skip reason)."""
    from mask2face.train import faces, masks
    try:
        data = safeio.read_bytes(src.path)
        key = cache.key(data) if data else None
        det = cache.get(key) if key else None
        image = safeio.decode_image(data, name=src.path)
        if det is None:
            t0 = time.perf_counter()
            det = faces.detect(image, data_cfg.detector)
            stats["detect_s"] += time.perf_counter() - t0
            stats["detected"] += 1
            cache.put(key, det)
        else:
            stats["cached"] += 1
    except ImageError as exc:
        return None, exc.reason
    if det.landmarks is None:
        return None, det.stage  # "no-face"
    stats.setdefault("stages", {})
    stats["stages"][det.stage] = stats["stages"].get(det.stage, 0) + 1
    seed = file_seed(data_cfg.seed, src.rel)
    rng = np.random.default_rng(seed)
    size = data_cfg.image_size
    try:
        matrix = align.similarity_from_eyes(*align.eye_centers_from_68(det.landmarks), size,
                                            align.Framing(data_cfg.eye_line, data_cfg.eye_distance))
    except ValueError:
        return None, "bad-landmarks"
    matrix = align.jitter(matrix, size, data_cfg.crop_jitter, rng)
    # Render in the aligned crop: cheap (S^2 pixels) and the crop is what the model sees.
    clean = align.crop(image, matrix, size)
    lm = align.transform_points(matrix, det.landmarks)
    kind = data_cfg.mask_types[int(rng.integers(len(data_cfg.mask_types)))]
    masked, mask, info = masks.render(clean, lm, kind, int(rng.integers(2 ** 31)))
    meta = {"source": src.rel, "identity": src.identity, "mask_type": kind, "seed": seed,
            "detector_stage": det.stage, "landmarks": np.round(lm, 2), "matrix": np.round(matrix, 5), **info}
    return {"masked": masked, "clean": clean, "mask": mask, "meta": meta}, None


def _init_worker():
    import cv2
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would fight over the same cores


def run_shard(job) -> dict:
    """Worker: make and write one shard. Returns its summary (also used for shards skipped as done)."""
    split, index, items, out_dir, data_cfg = job
    from mask2face.train.faces import LandmarkCache
    stem = Path(out_dir) / split / pairs.shard_name(index)
    cache = LandmarkCache(Path(out_dir) / "landmarks_cache", data_cfg.detector)
    stats = {"detect_s": 0.0, "detected": 0, "cached": 0}
    t0 = time.perf_counter()
    masked, clean, mask, meta, skipped = [], [], [], [], []
    for src in items:
        pair, reason = make_pair(src, data_cfg, cache, stats)
        if pair is None:
            skipped.append({"file": src.path, "reason": reason})
            continue
        masked.append(pair["masked"]); clean.append(pair["clean"]); mask.append(pair["mask"])
        meta.append(pair["meta"])
    s = data_cfg.image_size
    from mask2face.runs import write_json
    write_json(stem.with_suffix(SKIPPED_SUFFIX), skipped)
    pairs.write_shard(stem,
                      np.stack(masked) if masked else np.zeros((0, s, s, 3), np.uint8),
                      np.stack(clean) if clean else np.zeros((0, s, s, 3), np.uint8),
                      np.stack(mask) if mask else np.zeros((0, s, s), np.uint8), meta)
    return {"split": split, "index": index, "pairs": len(meta), "files": len(items), "skipped": skipped,
            "seconds": time.perf_counter() - t0, **stats}


# ---------------------------------------------------------------- driver side

def _parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
        if not 0 <= i < n:
            raise ValueError
        return i, n
    except ValueError:
        raise Mask2FaceError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. --shard 0/4") from None


def _shard_done(out: Path, split: str, index: int) -> bool:
    stem = out / split / pairs.shard_name(index)
    return pairs.shard_is_whole(stem.with_suffix(".npz")) and stem.with_suffix(SKIPPED_SUFFIX).exists()


def _summarise_done(out: Path, split: str, index: int, n_files: int) -> dict:
    stem = out / split / pairs.shard_name(index)
    meta = pairs.read_meta(stem.with_suffix(".npz"))
    skipped = json.loads(stem.with_suffix(SKIPPED_SUFFIX).read_text())
    return {"split": split, "index": index, "pairs": len(meta), "files": n_files, "skipped": skipped,
            "seconds": 0.0, "detect_s": 0.0, "detected": 0, "cached": 0, "resumed": True}


def _plan_hash(data_cfg) -> str:
    """Hash of everything that decides the shards' content (not the worker count)."""
    import dataclasses
    d = dataclasses.asdict(data_cfg)
    d.pop("workers", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _check_plan(out: Path, data_cfg, roots: list[Path]) -> None:
    """Resuming into a folder made with other settings would mix incompatible shards: refuse, say what to do."""
    from mask2face.runs import read_json, write_json
    plan = {"plan_hash": _plan_hash(data_cfg), "faces": sorted(str(Path(r).resolve()) for r in roots)}
    old = read_json(out / "plan.json")
    if old is not None and old != plan:
        raise Mask2FaceError(f"{out} holds pairs made with other data settings or --faces folders "
                             f"({old} vs now {plan}); use another --out or delete {out} to start over")
    if old is None:
        write_json(out / "plan.json", plan)


def generate(data_cfg, roots: list[Path], out: Path, workers: int = 1, shard: tuple[int, int] = (0, 1),
             progress: bool = True) -> dict:
    """Make (or resume) the pairs in `out`. Returns the report dict (also written as out/report.json)."""
    from tqdm import tqdm
    from mask2face.config import config_hash
    from mask2face.runs import write_json

    t_start = time.time()
    out = Path(out)
    sources = list_sources(roots, data_cfg.max_faces, data_cfg.seed)
    splits = split_identities(sources, data_cfg.test_size, data_cfg.val_fraction, data_cfg.seed)
    jobs = plan_shards(sources, splits, data_cfg.shard_size, data_cfg.seed)
    _check_plan(out, data_cfg, roots)
    part, nparts = shard
    mine = [j for g, j in enumerate(jobs) if g % nparts == part]
    todo = [j for j in mine if not _shard_done(out, j[0], j[1])]
    results = [_summarise_done(out, j[0], j[1], len(j[2])) for j in mine if _shard_done(out, j[0], j[1])]
    for split in pairs.SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)

    n_todo = sum(len(j[2]) for j in todo)
    t0 = time.perf_counter()
    made = 0
    bar = tqdm(total=n_todo, unit="img", desc="mask2face data", disable=not progress or not n_todo,
               dynamic_ncols=True)
    payload = [(split, idx, items, str(out), data_cfg) for split, idx, items in todo]
    try:
        if workers > 1 and len(payload) > 1:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ctx.Pool(min(workers, len(payload)), initializer=_init_worker) as pool:
                for res in pool.imap_unordered(run_shard, payload):
                    results.append(res)
                    made += res["pairs"]
                    bar.update(res["files"])
                    bar.set_postfix(pairs_per_s=f"{made / max(time.perf_counter() - t0, 1e-9):.1f}")
        else:
            _init_worker()
            for p in payload:
                res = run_shard(p)
                results.append(res)
                made += res["pairs"]
                bar.update(res["files"])
                bar.set_postfix(pairs_per_s=f"{made / max(time.perf_counter() - t0, 1e-9):.1f}")
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0

    results.sort(key=lambda r: (pairs.SPLITS.index(r["split"]), r["index"]))
    skipped = [s for r in results for s in r["skipped"]]
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    stages: dict[str, int] = {}
    for r in results:
        for k, v in r.get("stages", {}).items():
            stages[k] = stages.get(k, 0) + v
    n_files = sum(r["files"] for r in results)
    n_pairs = sum(r["pairs"] for r in results)
    report = {
        "found": len(sources), "files_in_this_part": n_files, "pairs": n_pairs,
        "yield": round(n_pairs / max(n_files, 1), 4), "skipped": skipped, "skipped_by_reason": reasons,
        "detector_stages_this_run": stages,
        "shard": f"{part}/{nparts}", "shards_total": len(jobs), "shards_this_part": len(mine),
        "shards_made_now": len(todo), "shards_resumed": len(mine) - len(todo),
        "timing": {"seconds": round(elapsed, 2), "workers": workers, "pairs_made_now": made,
                   "pairs_per_s": round(made / elapsed, 2) if made and elapsed > 0 else None,
                   "detected_now": sum(r["detected"] for r in results),
                   "cached_now": sum(r["cached"] for r in results),
                   "detect_cpu_s": round(sum(r["detect_s"] for r in results), 2),
                   "wall_s_total": round(time.time() - t_start, 2)},
        "config_hash": config_hash(data_cfg),
    }
    name = "report.json" if nparts == 1 else f"report-{part}-of-{nparts}.json"
    write_json(out / name, report)

    # dataset.json once every shard of every part exists (the last part to finish writes it).
    if all(_shard_done(out, j[0], j[1]) for j in jobs):
        per_split = {sp: {"shards": [], "pairs": 0, "identities": len(splits[sp])} for sp in pairs.SPLITS}
        for split, idx, items in jobs:
            stem = out / split / pairs.shard_name(idx)
            n = len(pairs.read_meta(stem.with_suffix(".npz")))
            per_split[split]["shards"].append(f"{split}/{pairs.shard_name(idx)}.npz")
            per_split[split]["pairs"] += n
        info = {"image_size": data_cfg.image_size, "splits": per_split, "identities": splits,
                "counts": {sp: per_split[sp]["pairs"] for sp in pairs.SPLITS},
                "pairs": sum(per_split[sp]["pairs"] for sp in pairs.SPLITS), "sources": len(sources),
                "faces": [str(Path(r).resolve()) for r in roots], "config": _asdict(data_cfg),
                "config_hash": config_hash(data_cfg), "seed": data_cfg.seed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if nparts > 1:  # the full report spans all parts: rebuild it from the shard files
            all_skipped = [s for split, idx, _ in jobs for s in json.loads(
                (out / split / pairs.shard_name(idx)).with_suffix(SKIPPED_SUFFIX).read_text())]
            info["skipped"] = len(all_skipped)
        write_json(out / "dataset.json", info)
        report["dataset_complete"] = True
    return report


def _asdict(cfg) -> dict:
    import dataclasses
    return dataclasses.asdict(cfg)


def contact_sheet(out: Path, path: Path, n: int = 48, cols: int = 8) -> Path | None:
    """Grid of masked | clean thumbnails from the first shards (train first), for eyeballing mask placement."""
    tiles = []
    for split in pairs.SPLITS:
        for shard_path in pairs.shard_paths(out, split):
            d = pairs.read_shard(shard_path)
            for m, c in zip(d["masked"], d["clean"]):
                tiles.append(np.concatenate([m, c], axis=1))
                if len(tiles) >= n:
                    break
            if len(tiles) >= n:
                break
        if len(tiles) >= n:
            break
    if not tiles:
        return None
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    sheet = np.full((rows * (h + 4), cols * (w + 4), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * (h + 4):r * (h + 4) + h, c * (w + 4):c * (w + 4) + w] = t
    safeio.save_image(path, sheet)
    return path


def bench_cached(data_cfg, roots: list[Path], out: Path, workers: int, limit: int = 512) -> dict:
    """Throughput of pair making from cached landmarks (decode + align + render, no writes)."""
    from mask2face.train.faces import LandmarkCache
    sources = list_sources(roots, data_cfg.max_faces, data_cfg.seed)[:limit]
    chunks = [sources[i::workers] for i in range(workers)]
    t0 = time.perf_counter()
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        counts = pool.starmap(_bench_chunk, [(c, data_cfg, str(out)) for c in chunks])
    elapsed = time.perf_counter() - t0
    made = sum(c[0] for c in counts)
    return {"pairs": made, "seconds": round(elapsed, 2), "pairs_per_s": round(made / elapsed, 2),
            "detected": sum(c[1] for c in counts), "workers": workers}


def _bench_chunk(chunk, data_cfg, out):
    from mask2face.train.faces import LandmarkCache
    cache = LandmarkCache(Path(out) / "landmarks_cache", data_cfg.detector)
    stats = {"detect_s": 0.0, "detected": 0, "cached": 0}
    made = sum(1 for s in chunk if make_pair(s, data_cfg, cache, stats)[0] is not None)
    return made, stats["detected"]


def benchmark_record(out: Path, name: str) -> dict:
    """One result row for benchmarks/results/data_<name>.json, built from a finished run's report/bench files."""
    from mask2face.runs import machine_info, package_versions, read_json
    out = Path(out)
    report, bench, info = (read_json(out / n, {}) for n in ("report.json", "bench.json", "dataset.json"))
    return {"benchmark": f"data_{name}", "faces": info.get("faces"), "image_size": info.get("image_size"),
            "config_hash": info.get("config_hash"), "found": report.get("found"), "pairs": report.get("pairs"),
            "yield": report.get("yield"), "skipped_by_reason": report.get("skipped_by_reason"),
            "skipped": [{"file": Path(s["file"]).name, "reason": s["reason"]} for s in report.get("skipped", [])],
            "detector_stages": report.get("detector_stages_this_run"), "splits": info.get("counts"),
            "first_run": bench.get("first_run") or report.get("timing"), "cached": bench.get("cached"),
            "machine": machine_info(), "versions": package_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def cli_main(cfg, args) -> int:
    from mask2face import config as config_mod
    from mask2face.runs import init_run, read_json, write_json, write_manifest

    if not args.faces:
        raise NoFacesError("mask2face data needs --faces DIR (a folder of face photos, e.g. ../shared/data/lfw)")
    roots = [Path(f) for f in args.faces]
    workers = args.workers or cfg.data.workers
    if workers < 1:
        raise Mask2FaceError("--workers must be >= 1")
    shard = _parse_shard(args.shard)
    out = Path(args.out) if args.out else Path(args.run) / "data"
    list_sources(roots)  # fail on empty/missing folders before creating anything
    init_run(args.run, config_mod.to_dict(cfg))
    report = generate(cfg.data, roots, out, workers=workers, shard=shard)
    t = report["timing"]
    print(f"mask2face data: {report['pairs']} pairs from {report['files_in_this_part']} files "
          f"(yield {report['yield']:.1%}), {len(report['skipped'])} skipped {report['skipped_by_reason']}; "
          f"{t['pairs_made_now']} made now in {t['seconds']} s"
          + (f" = {t['pairs_per_s']} pairs/s" if t["pairs_per_s"] else "") + f" -> {out}")
    counts = (read_json(out / "dataset.json", {}) or {}).get("counts")
    if counts:   # a small folder loses up to half its photos to the test split: say so (data.test_size)
        print(f"mask2face data: split by identity: train {counts['train']}, val {counts['val']}, test {counts['test']} "
              f"pairs (data.test_size={cfg.data.test_size} images, data.val_fraction={cfg.data.val_fraction})")
    if args.bench:
        cached = bench_cached(cfg.data, roots, out, workers)
        bench = {"first_run": t, "cached": cached, "image_size": cfg.data.image_size,
                 "faces": [str(r) for r in roots]}
        write_json(out / "bench.json", bench)
        print(f"mask2face data --bench: this run {t['pairs_per_s']} pairs/s "
              f"({t['detected_now']} detections); from cached landmarks {cached['pairs_per_s']} pairs/s "
              f"({cached['pairs']} pairs, {workers} workers)")
    if args.contact_sheet:
        p = contact_sheet(out, out / "contact_sheet.png")
        if p:
            print(f"mask2face data: contact sheet -> {p}")
    outputs = sorted(out.glob("*/shard-*.npz")) + [p for p in (out / "dataset.json", out / "report.json")
                                                    if p.exists()]
    write_manifest(out, stage="data", config=config_mod.to_dict(cfg.data),
                   inputs=[{"faces": str(r.resolve()), "files": report["found"]} for r in roots],
                   outputs=outputs, extra={"report": {k: v for k, v in report.items() if k != "skipped"}})
    if not report["pairs"]:
        print(f"mask2face data: error: no usable face in {', '.join(str(r) for r in roots)}: every file was "
              f"skipped (reasons above and in {out / 'report.json'})", file=sys.stderr)
        return 2
    return 0
