"""README tables are what their result rows say (benchmarks/readme_tables.py), read from this clone."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

from mask2face.benchmarks import readme_tables

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def test_every_readme_table_is_what_its_rows_say(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mask2face.benchmarks.readme_tables", "--check", "--readme",
                        str(REPO / "README.md"), "--results", str(RESULTS)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)   # not the clone's root, whose mask2face/ would shadow the package
    assert r.returncode == 0, r.stderr


def test_a_changed_row_changes_its_table_and_the_check_says_so(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    rows = readme_tables.read_rows("full_resolution_student_precisions.jsonl", results)
    last = next(r for r in reversed(rows) if r["file"] == "student-qat-int8.tflite")
    last = {**last, "quality": {**last["quality"], "psnr_masked": 12.3456}}
    with open(results / "full_resolution_student_precisions.jsonl", "a") as f:
        f.write(json.dumps(last) + "\n")
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", readme)
    args = ["--readme", str(readme), "--results", str(results)]
    assert readme_tables.main(args + ["--check"]) == 1
    assert readme_tables.main(args) == 0
    assert "| `student-qat-int8.tflite` | 1303.1 | 21.05 / 10.33 | 12.35 dB / 0.826 |" in readme.read_text()
    assert readme_tables.main(args + ["--check"]) == 0


def test_the_mask_decision_table_bolds_the_shipped_classifiers_threshold():
    from mask2face.edge_runtime.mask_decision import MaskClassifier
    table = readme_tables.mask_decision_table(readme_tables.read_rows("gate.jsonl", RESULTS))
    shipped = MaskClassifier.from_file().threshold
    bold = [line for line in table.splitlines() if line.startswith("| **")]
    assert len(bold) == 1 and bold[0].startswith(f"| **{shipped:g}** (default)"), \
        "the README's mask-threshold table is not from a gate row of the shipped classifier: run gate_bench"


def test_the_mask_decision_table_skips_rows_of_another_runtime():
    """A gate row made with `--blend` (another decision or paste) never becomes the README's default table."""
    import copy
    rows = readme_tables.read_rows("gate.jsonl", RESULTS)
    table = readme_tables.mask_decision_table(rows)
    other = copy.deepcopy(rows[-1])
    other["blend"] = {**(other.get("blend") or {}), "mirror_views": False}
    other["probability_sweep"][0]["masked_restored"] = 0.0123
    assert readme_tables.mask_decision_table(rows + [other]) == table
    assert readme_tables.runs_as_shipped(None) and readme_tables.runs_as_shipped({"min_mask_probability": 0.0})
