"""PSNR and SSIM against float64 NumPy references written independently of maskgan_jax.metrics."""

import math

import numpy as np
import pytest

from maskgan_jax import metrics


def _reference_ssim_map(x, y, data_range=255.0, sigma=1.5):
    """Wang et al. 2004 at every pixel, one window at a time: an 11x11 Gaussian (outer product of
    the normalised 1-D one), borders mirrored with the edge pixel repeated, weighted central moments."""
    radius = 5
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    window = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n, h, w, c = x.shape
    pad = ((radius, radius), (radius, radius))
    out = np.zeros((n, h, w, c))
    for b in range(n):
        for ch in range(c):
            xp = np.pad(x[b, :, :, ch].astype(np.float64), pad, mode="symmetric")
            yp = np.pad(y[b, :, :, ch].astype(np.float64), pad, mode="symmetric")
            for i in range(h):
                for j in range(w):
                    rows, cols = slice(i, i + 2 * radius + 1), slice(j, j + 2 * radius + 1)
                    px, py = xp[rows, cols], yp[rows, cols]
                    mx, my = (window * px).sum(), (window * py).sum()
                    vx, vy = (window * (px - mx) ** 2).sum(), (window * (py - my) ** 2).sum()
                    cov = (window * (px - mx) * (py - my)).sum()
                    numerator = (2 * mx * my + c1) * (2 * cov + c2)
                    out[b, i, j, ch] = numerator / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return out.mean(axis=-1)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(2, 13, 12, 3)).astype(np.uint8)
    noise = rng.normal(0, 20, size=x.shape)
    y = np.clip(x + noise, 0, 255).astype(np.uint8)
    region = rng.random((2, 13, 12)) < 0.3
    return x, y, region


def test_psnr_of_a_known_error():
    x = np.zeros((1, 8, 8, 3), np.uint8)
    y = np.full((1, 8, 8, 3), 10, np.uint8)
    np.testing.assert_allclose(metrics.psnr(x, y), [10 * math.log10(255.0 ** 2 / 100.0)], rtol=1e-12)


def test_psnr_in_a_region_averages_over_its_pixels_and_channels(pair):
    x, y, region = pair
    for n in range(2):
        diff = x[n].astype(np.float64) - y[n]
        mse = (diff[region[n]] ** 2).mean()  # (pixels, 3) -> every channel of every region pixel
        np.testing.assert_allclose(metrics.psnr(x, y, region)[n], 10 * np.log10(255.0 ** 2 / mse), rtol=1e-12)
    np.testing.assert_allclose(metrics.mse(x, y), ((x.astype(float) - y) ** 2).mean(axis=(1, 2, 3)), rtol=1e-12)


def test_psnr_of_identical_images_is_infinite_and_of_an_empty_region_nan(pair):
    x, _, region = pair
    assert np.all(np.isinf(metrics.psnr(x, x)))
    empty = np.zeros_like(region)
    assert np.all(np.isnan(metrics.psnr(x, x[::-1], empty)))


def test_ssim_map_matches_the_windowed_reference(pair):
    x, y, _ = pair
    np.testing.assert_allclose(metrics.ssim_map(x, y), _reference_ssim_map(x, y), rtol=1e-9, atol=1e-12)


def test_ssim_in_a_region_is_the_mean_of_the_whole_image_map_there(pair):
    x, y, region = pair
    reference = _reference_ssim_map(x, y)
    expected = [reference[n][region[n]].mean() for n in range(2)]
    np.testing.assert_allclose(metrics.ssim(x, y, region), expected, rtol=1e-9)
    np.testing.assert_allclose(metrics.ssim(x, y), reference.mean(axis=(1, 2)), rtol=1e-9)


def test_ssim_of_constant_images_and_of_an_image_with_itself():
    a, b = 100.0, 140.0
    x, y = np.full((1, 12, 12, 3), a), np.full((1, 12, 12, 3), b)
    c1 = (0.01 * 255) ** 2
    # Zero variances: SSIM reduces to the luminance term.
    np.testing.assert_allclose(metrics.ssim(x, y), [(2 * a * b + c1) / (a * a + b * b + c1)], rtol=1e-12)
    rng = np.random.default_rng(1)
    z = rng.integers(0, 256, size=(1, 16, 16, 3))
    np.testing.assert_allclose(metrics.ssim_map(z, z), np.ones((1, 16, 16)), rtol=1e-12)


def test_ssim_on_unit_range_images_equals_ssim_on_255():
    rng = np.random.default_rng(2)
    x, y = rng.random((1, 12, 12, 3)), rng.random((1, 12, 12, 3))
    np.testing.assert_allclose(metrics.ssim(x, y, data_range=1.0), metrics.ssim(255 * x, 255 * y), rtol=1e-10)


def test_gaussian_window_is_wangs_11_tap_sigma_1_5():
    window = metrics.gaussian_window()
    assert window.shape == (11,)
    np.testing.assert_allclose(window.sum(), 1.0)
    np.testing.assert_allclose(window[5] / window[6], math.exp(1 / (2 * 1.5 ** 2)))


def test_bad_shapes_are_errors(pair):
    x, y, region = pair
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(x, y[:, :-1])
    with pytest.raises(ValueError, match="region has shape"):
        metrics.ssim(x, y, region[:, :-1])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        metrics.psnr(x[0], y[0])
