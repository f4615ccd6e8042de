"""mask2face demo: the README's before/after picture is the real runtime on the generator's masks, and says so."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dlib")
pytest.importorskip("skimage.data")
from skimage.metrics import peak_signal_noise_ratio  # noqa: E402

from mask2face import demo  # noqa: E402


def test_the_masked_psnr_it_prints_matches_scikit_image_on_the_masked_pixels():
    """The demo scores tiles with metrics.psnr over the drawn mask (uint8 images, a 0/255 mask)."""
    from mask2face.train.metrics import psnr
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 5:25] = 255
    ours = psnr(b, a, mask)
    reference = peak_signal_noise_ratio(a[mask > 0], b[mask > 0], data_range=255)
    assert ours == pytest.approx(reference, abs=1e-9)


def test_before_after_restores_the_drawn_mask_with_the_shipped_model():
    sheet, records = demo.before_after(models=(("default", "default"),), types=("surgical", "n95"))
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    rows, columns = len(records), 3                    # masked | default | original
    assert sheet.shape[0] % rows == 0 and sheet.shape[1] % columns == 0
    tile = sheet.shape[0] // rows
    assert sheet.shape[1] // columns == tile           # square tiles
    masked_tile, original_tile = sheet[:tile, :tile], sheet[:tile, 2 * tile:]
    assert np.abs(masked_tile.astype(int) - original_tile).mean() > 5    # the mask is in the picture
    for r in records:
        assert r["pasted_default"] == 1, r
        # The shipped model measured 17.9 / 17.7 dB here against the masked input's 11.1 / 10.3 dB (0.1.0).
        assert r["masked_psnr_default"] > r["masked_psnr_input"] + 4, r


def test_before_after_leaves_the_bare_astronaut_alone_and_says_why():
    sheet, records = demo.before_after(models=(("default", "default"),), types=("surgical", "none"))
    masked, bare = records
    from mask2face.edge_runtime.inpaint import Inpainter
    threshold = Inpainter.from_file().mask_threshold
    assert masked["pasted_default"] == 1 and masked["mask_probability_default"] >= threshold, masked
    assert bare["pasted_default"] == 0 and bare["mask_probability_default"] < threshold, bare
    tile = sheet.shape[0] // 2
    # the bare row's output tile is the photo itself (labels aside)
    out, original = sheet[tile + 20:, tile:2 * tile], sheet[tile + 20:, 2 * tile:]
    assert np.array_equal(out, original)


def test_compare_adds_a_column_pasted_as_remove_pastes_it(tmp_path):
    from mask2face.edge_runtime.inpaint import DEFAULT_MODEL
    sheet, records = demo.before_after(types=("surgical",), compare=(("old", str(DEFAULT_MODEL)),))
    tile = sheet.shape[0]
    assert sheet.shape[1] == 4 * tile                 # masked | old | default | original
    assert records[0]["pasted_old"] == 1 and records[0]["pasted_default"] == 1
    # the compared file is pasted with its own settings, as `remove` pastes it: the same file, the same pixels
    assert np.array_equal(sheet[20:, tile:2 * tile], sheet[20:, 2 * tile:3 * tile])
    from mask2face.edge_runtime.errors import Mask2FaceError
    with pytest.raises(Mask2FaceError, match="LABEL=MODEL"):
        demo._compare_entry(f"old={tmp_path / 'missing.tflite'}")


def test_a_missing_compare_classifier_is_one_clear_error_before_any_work(tmp_path):
    import argparse
    from mask2face.edge_runtime.errors import Mask2FaceError
    args = argparse.Namespace(out=tmp_path / "out", compare=["old=x.tflite"], compare_classifier=str(tmp_path / "old.tflite"))
    with pytest.raises(Mask2FaceError, match="--compare-classifier"):
        demo.cli_main(None, args)
    args = argparse.Namespace(out=tmp_path / "out", compare=[], compare_classifier="none")
    with pytest.raises(Mask2FaceError, match="add --compare"):
        demo.cli_main(None, args)
    assert not (tmp_path / "out").exists()
