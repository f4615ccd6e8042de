import json
import os

import pytest

from mask2face import runs


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "out.json"
    runs.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with runs.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_disk_full_becomes_clear_error(tmp_path, monkeypatch):
    def no_space(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(runs.DiskFullError, match="disk full"):
        runs.write_bytes(tmp_path / "x.bin", b"abc")
    assert not list(tmp_path.iterdir())


def test_manifest_records_sha256_versions_and_config(tmp_path):
    out = tmp_path / "a.bin"
    out.write_bytes(b"hello")
    path = runs.write_manifest(tmp_path, stage="export", config={"x": 1}, outputs=[out], parents=["p"])
    m = json.loads(path.read_text())
    assert m["outputs"][0]["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert m["outputs"][0]["bytes"] == 5
    assert m["config"] == {"x": 1} and m["parents"] == ["p"]
    assert "numpy" in m["versions"] and m["machine"]["cores"] >= 1


def test_atomic_files_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = runs.write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_cpu_details_name_the_vector_extensions_that_set_speed():
    x86 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
           "stepping\t: 1\nflags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_vnni\n\n"
           "processor\t: 1\nmodel name\t: other\nflags\t\t: sse2\n")
    assert runs.cpu_details(x86) == {"cpu": "AMD EPYC", "cpu_id": "26/2/1",
                                     "cpu_flags": ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"]}
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd0c\n"
    assert runs.cpu_details(arm) == {"cpu": "", "cpu_flags": ["asimd", "asimddp", "i8mm"]}
    assert runs.machine_info()["cores"] >= 1 and isinstance(runs.machine_info()["cpu_flags"], list)
