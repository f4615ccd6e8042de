"""README tables made from result rows, never typed by hand.

    python -m mask2face.benchmarks.readme_tables            # rewrite every table in README.md from its rows
    python -m mask2face.benchmarks.readme_tables --check    # exit 1, naming the table, if one is stale

A table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->`; NAME picks its renderer in TABLES, which
reads the rows file named there (benchmarks/results/) and takes the newest row per file or accelerator.
`tests/test_readme_tables.py` runs the check, so a figure in those tables always is what its rows say.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from mask2face.edge_runtime.inpaint import BlendConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# What each precision of the shipped model is for (the one column that is advice, not a measurement).
PRECISION_USE = {
    "student-qat-int8.tflite": "**the shipped model**: CPU (XNNPACK), NNAPI",
    "student-fp16.tflite": "GPU delegates, Core ML: the shipped file's weights in float16 (`compress/recover.py`)",
    "teacher-fp32.tflite": "the teacher in `models/cpu/export/` (the same design, before the adversarial fine-tuning)",
}


def read_rows(name: str, results: Path | None = None) -> list[dict]:
    path = (results or RESULTS) / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def newest(rows: list[dict], key) -> dict:
    """The last row for each value of key(row), in the order those values first appear."""
    out: dict = {}
    for r in rows:
        out[key(r)] = r
    return out


def precisions_table(rows: list[dict]) -> str:
    """README "Pick a precision": the shipped model's files and its teacher on the LFW test pairs
    (full_resolution_student_precisions)."""
    by_file = newest(rows, lambda r: r["file"])
    lines = ["| file in `models/cpu-full/export/` | size (KB) | invoke p50, 1 / 2 threads (ms) | masked PSNR / SSIM | "
             "sharpness / structure / blockiness / seam | for |", "|---|---|---|---|---|---|"]
    for name, use in PRECISION_USE.items():
        r = by_file[name]
        q, lat = r["quality"], r["latency"]
        lines.append(f"| `{name}` | {r['bytes'] / 1024:.1f} | {lat['1']['p50_ms']:.2f} / {lat['2']['p50_ms']:.2f} | "
                     f"{q['psnr_masked']:.2f} dB / {q['ssim']:.3f} | {q['sharpness']:.2f} / {q['structure']:.2f} / "
                     f"{q['blockiness']:.2f} / "
                     f"{q['seam']:.2f} | {use} |")
    return "\n".join(lines)


def _ms(v: float) -> str:
    return f"{v:.1f} ms" if v < 10 else f"{v:.0f} ms"


def web_table(rows: list[dict]) -> str:
    """README "In the browser": the page's times per accelerator on the masked astronaut (web.jsonl)."""
    label = {"wasm": "WASM, {threads} threads", "webgpu": "WebGPU (SwiftShader, a CPU)"}
    lines = ["| inpainting on | models ready | first result | detection | mask decision | model | blending | photo |",
             "|---|---|---|---|---|---|---|---|"]
    for accelerator, r in newest(rows, lambda r: r["accelerator"]).items():
        ms = r["photos"]["astronaut-masked"]["page_ms"]
        lines.append(f"| {label.get(accelerator, accelerator).format(threads=r['threads'])} | "
                     f"{r['page_ready_ms'] / 1000:.1f} s | {r['first_result_ms'] / 1000:.1f} s | "
                     f"{_ms(ms['detection'])} | {_ms(ms['mask_decision'])} | {_ms(ms['model'])} | "
                     f"{_ms(ms['blending'])} | {_ms(ms['total'])} (512x512) |")
    return "\n".join(lines)


def _share(v: float) -> str:
    return "0" if v == 0 else f"{100 * v:.2f}".rstrip("0").rstrip(".") + "%"


MASK_THRESHOLDS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)   # the rows shown besides the shipped threshold and 0
SWEPT_GATES = ("min_change", "min_eye_distance_px", "min_mask_probability", "min_eye_spacing")   # gate_bench opens them


def runs_as_shipped(blend: dict | None) -> bool:
    """Whether a gate row's paste settings (None: rows from before they were recorded) are this version's, but
    for the gates the bench opens to sweep them: a row made with `--blend` describes another runtime."""
    if blend is None:
        return True
    defaults = dataclasses.asdict(BlendConfig())
    return all(blend.get(k, v) == v for k, v in defaults.items() if k not in SWEPT_GATES)


def mask_decision_table(rows: list[dict]) -> str:
    """README "Masked or not": the shipped model and classifier on every real masked photo and the test photos of the
    unmasked sets (gate.jsonl: the newest row of the default on the test split, every real masked photo), one line
    per threshold of its sweep."""
    shipped = [r for r in rows if r.get("model") == "default" and r.get("split") == "test"
               and r.get("masked_half") == "all" and r.get("classifier_info")
               and str(r["classifier_info"].get("source", "")).endswith("mask2face_mask_classifier.tflite")
               and runs_as_shipped(r.get("blend"))]
    if not shipped:
        raise SystemExit("gate.jsonl has no row of the shipped model and classifier on the test split and every real "
                         "masked photo: run python -m mask2face.benchmarks.gate_bench --split test (README)")
    r = shipped[-1]
    titles = {"lfw": "LFW", "celeba": "CelebA", "aaf": "All-Age-Faces", "faces-dev": "faces-dev"}
    names = sorted(r["bare_sets"], key=lambda n: list(titles).index(n) if n in titles else len(titles))
    found = r["annotated_faces"]
    lines = [f"| `--mask-threshold` | real masked photos restored (of {r['masked_photos']}) | photos of unmasked "
             f"people changed: {' / '.join(titles.get(n, n) for n in names)} "
             f"({' / '.join(str(r['bare_sets'][n]['photos']) for n in names)}) | hand-labelled faces in the real "
             f"photos restored: masked (of {found['with_mask']['found']} found) / unmasked (of "
             f"{found['without_mask']['found']} found) |", "|---|---|---|---|"]
    shipped_t = r["min_mask_probability"]
    for s in r["probability_sweep"]:
        t = s["min_mask_probability"]
        if not (t == 0.0 or abs(t - shipped_t) < 1e-9 or any(abs(t - m) < 1e-9 for m in MASK_THRESHOLDS)):
            continue
        label = "0 (every face the model sees a mask on)" if t == 0.0 else f"{t:g}"
        cells = [label, _share(s["masked_restored"]), " / ".join(_share(s[f"{n}_altered"]) for n in names),
                 f"{s['annotated']['with_mask']['pasted']} / {s['annotated']['without_mask']['pasted']}"]
        if abs(t - shipped_t) < 1e-9:
            cells = [f"**{c}**" for c in cells]
            cells[0] = f"**{t:g}** (default)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLES = {"precisions": (precisions_table, "full_resolution_student_precisions.jsonl"), "web": (web_table, "web.jsonl"),
          "mask_decision": (mask_decision_table, "gate.jsonl")}
BLOCK = re.compile(r"(<!-- table:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(\n<!-- /table:(?P=name) -->)", re.S)


def render(text: str, results: Path | None = None) -> tuple[str, list[str]]:
    """`text` with every table block rendered from its rows (in `results`, default the source tree's
    benchmarks/results), and the names of the blocks that changed."""
    changed = []

    def one(m: re.Match) -> str:
        name = m.group("name")
        if name not in TABLES:
            raise SystemExit(f"README table {name!r} has no renderer: choose from {', '.join(TABLES)}")
        fn, rows = TABLES[name]
        body = fn(read_rows(rows, results))
        if body != m.group("body"):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(one, text), changed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--readme", type=Path, default=REPO / "README.md")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the rows files")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is not what its rows say")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    new, changed = render(text, args.results)
    if args.check:
        if changed:
            print(f"{args.readme}: stale table(s) {', '.join(changed)}: run python -m "
                  "mask2face.benchmarks.readme_tables", file=sys.stderr)
            return 1
        return 0
    if changed:
        from mask2face.runs import write_bytes
        write_bytes(args.readme, new.encode())
    print(f"{args.readme}: {len(changed)} table(s) rewritten" + (f" ({', '.join(changed)})" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
