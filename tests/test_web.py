"""The browser page (web/) against the Python runtime: its image operations against OpenCV (Node), and the whole
page in headless Chromium against `mask2face remove` on the same photos.

These need Node.js, `npm ci --prefix web` (LiteRT.js and playwright-core) and Debian's chromium; .ci/run installs
them. Where one is missing the tests fail with what to install, never skip: the page is a shipped implementation.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from mask2face.benchmarks import web_bench

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
LITERTJS = WEB / "node_modules" / "@litertjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SETUP = "install Node.js and Chromium (Debian: apt-get install -y nodejs npm chromium), then `npm ci --prefix web`"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH: {SETUP}")
    return node


def _needs_page():
    _node()
    if not (LITERTJS / "core" / "dist" / "index.js").is_file() or not (WEB / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"web/node_modules lacks @litertjs/core or playwright-core: {SETUP}")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: {SETUP} (or set CHROMIUM)")


def js_op(tmp_path: Path, op: str, arr: np.ndarray, out_dtype=None, **args) -> np.ndarray:
    spec = {"width": arr.shape[1], "height": arr.shape[0], "channels": arr.shape[2] if arr.ndim == 3 else 1,
            "dtype": str(arr.dtype), "data": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode(),
            "args": args}
    (tmp_path / "op.json").write_text(json.dumps(spec))
    subprocess.run([_node(), str(WEB / "tests" / "imageops_cli.mjs"), op, str(tmp_path / "op.json"),
                    str(tmp_path / "op.bin")], check=True, timeout=60)
    out = np.fromfile(tmp_path / "op.bin", out_dtype or arr.dtype)
    return out


@pytest.fixture(scope="module")
def photo():
    from skimage import data
    return data.astronaut()


@pytest.mark.parametrize("size", [(320, 320), (300, 217), (64, 64)])
def test_resize_area_is_opencvs(tmp_path, photo, size):
    src = photo if size != (64, 64) else photo[:128, :128].copy()
    ref = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
    assert np.array_equal(js_op(tmp_path, "resize_area", src, width=size[0], height=size[1]), ref.ravel())
    f = src.astype(np.float32) / 255
    ref = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
    assert np.abs(js_op(tmp_path, "resize_area", f, width=size[0], height=size[1]) - ref.ravel()).max() < 1e-5


def test_resize_linear_is_opencvs(tmp_path, photo):
    f = photo[:64, :64].astype(np.float32) / 255
    ref = cv2.resize(f, (128, 128), interpolation=cv2.INTER_LINEAR)
    assert np.abs(js_op(tmp_path, "resize_linear", f, width=128, height=128) - ref.ravel()).max() < 1e-5


@pytest.mark.parametrize("border,code", [("reflect101", cv2.BORDER_REFLECT101), ("replicate", cv2.BORDER_REPLICATE),
                                         ("constant", cv2.BORDER_CONSTANT)])
def test_warp_affine_matches_opencv(tmp_path, photo, border, code):
    """Bilinear on a 1/32-pixel grid as OpenCV, which rounds its fixed-point coordinates slightly differently:
    a few pixels differ by 1-2 levels (up to 7 where a constant border meets the image)."""
    m = np.array([[0.7, -0.2, 30.3], [0.2, 0.7, -10.1]])
    ref = cv2.warpAffine(photo, m, (128, 128), flags=cv2.INTER_LINEAR, borderMode=code).ravel().astype(int)
    out = js_op(tmp_path, "warp_affine", photo, matrix=m.ravel().tolist(), width=128, height=128, border=border)
    diff = np.abs(out.astype(int) - ref)
    assert diff.mean() < 0.02 and diff.max() <= 8


def test_gaussian_blur_and_morphology_are_opencvs(tmp_path, photo):
    f = photo[:40, :50].astype(np.float32) / 255
    for sigma in (2.56, 6.0):
        ref = cv2.GaussianBlur(f, (0, 0), sigma).ravel()
        assert np.abs(js_op(tmp_path, "gaussian_blur", f, sigma=sigma) - ref).max() < 1e-5
    mask = (photo[:128, :128, 2] > 120).astype(np.uint8)
    for r in (1, 2, 3, 5):
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        assert np.array_equal(js_op(tmp_path, "dilate", mask, radius=r), cv2.dilate(mask, disc).ravel())
        assert np.array_equal(js_op(tmp_path, "erode", mask, radius=r), cv2.erode(mask, disc).ravel())


def test_median_blur_connected_components_and_clean_rim_are_pythons(tmp_path, photo):
    from mask2face.edge_runtime import harmonize
    img = photo[:60, :70].copy()
    for k in (5, 7):
        assert np.array_equal(js_op(tmp_path, "median_blur", img, k=k), cv2.medianBlur(img, k).ravel())
    mask = (photo[:128, :128, 2] > 120).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    assert np.array_equal(js_op(tmp_path, "connected_components", mask, out_dtype=np.int32), labels.ravel())
    # harmonize.clean_rim on a face-sized crop: a mask with a speck, a hem, texture
    rgb = (photo[100:228, 150:278].astype(np.float32) / 255)
    face = np.zeros((128, 128), np.uint8)
    cv2.ellipse(face, (64, 92), (38, 28), 0, 0, 360, 1, -1)
    face[46:49, 82:86] = 1
    for width in (2, 3):
        ref = harmonize.clean_rim(rgb, face.astype(bool), width).ravel()
        got = js_op(tmp_path, "clean_rim", rgb, mask=face.ravel().tolist(), width=width)
        assert np.abs(got - ref).max() < 1e-5
    # harmonize.limit_chroma: an orange patch over a blue-grey photo's mask, pulled back toward the cheeks' colour
    patch = rgb.copy()
    patch[face.astype(bool)] = (0.9, 0.5, 0.2)
    for radius in (0.02, 0.05):
        ref = harmonize.limit_chroma(patch, rgb, face.astype(bool), radius, 4).ravel()
        got = js_op(tmp_path, "limit_chroma", patch, photo=rgb.ravel().tolist(), mask=face.ravel().tolist(),
                    radius=radius, ring=4)
        assert np.abs(got - ref).max() < 1e-5 and not np.array_equal(ref, patch.ravel())


@pytest.fixture(scope="module")
def server():
    _needs_page()
    with web_bench.web_server(WEB) as url:
        yield url


# The page restores within this mean absolute difference (levels, 0-255) of the Python runtime over the pixels
# either changed. The two differ only in rounding (OpenCV's fixed-point warp vs float), which moves the eyes by a
# fraction of a pixel: 0.8 measured on the astronaut (benchmarks/results/web.jsonl).
RESTORED_MAE = 2.0


@pytest.mark.slow
def test_page_gives_what_mask2face_remove_gives(tmp_path, server):
    """The astronaut wearing a drawn mask, beside its bare mirror image, and as a close-up only BlazeFace's cascade
    finds: the same faces (IoU >= 0.9) from the same stage, the same decisions, restored pixels within RESTORED_MAE,
    and every pixel Python left alone (3 px from its changes) identical."""
    photos = web_bench.bench_photos(tmp_path / "in")
    py = web_bench.python_outputs(tmp_path / "in", tmp_path / "py")
    try:
        page = web_bench.page_outputs(WEB, server, tmp_path / "in", list(photos), tmp_path / "web", "wasm")
    except RuntimeError as exc:   # Chromium could not start, or the page broke: fail with its message
        pytest.fail(str(exc))
    from mask2face.edge_runtime.mask_decision import MaskClassifier
    assert page["runtime"]["accelerator"] == "wasm"
    assert page["runtime"]["classifier_threshold"] == MaskClassifier.from_file().threshold   # read from the file
    from mask2face.edge_runtime.runtime_spec import SPEC_VERSION
    assert page["runtime"]["spec_version"] == SPEC_VERSION
    for name, rgb in photos.items():
        c = web_bench.compare(rgb, py[name], page[name])
        assert c["decoded_identically"], "the browser decoded the PNG to other pixels"
        assert c["faces_page"] == c["faces_python"], c
        for f in c["faces"]:
            assert f["iou"] >= 0.9 and f["page_restored"] == f["python_restored"], c
            assert abs(f["page_mask_probability"] - f["python_mask_probability"]) < 0.05, c
        assert sum(f["python_restored"] for f in c["faces"]) == 1, c   # the masked face; the bare mirror stays
        assert c["page_changed_outside_python_region"] == 0, c
        assert c["restored_mae"] <= RESTORED_MAE, c
        assert sorted(f["stage"] for f in page[name]["faces"]) == sorted(f["stage"] for f in py[name]["faces"])
    assert [f["stage"] for f in py["close-up"]["faces"]] != ["centerface"], "the close-up no longer needs the cascade"
