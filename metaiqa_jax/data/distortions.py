"""The 25 KADID-10k distortion types at their 5 published levels, in numpy/scipy/Pillow.

`distort(image_uint8, dist_type, level, seed=0)` reproduces the KADIS-700k / KADID-10k generator
(Lin, Hosu, Saupe, QoMEX 2019) with the parameter per level listed in `LEVEL_PARAMS` (the
published ones). The generator was written in MATLAB; where its exact formula is not published we
use the operation its name describes with the published parameter, noted in each function's
docstring. Images are processed as float64 in [0, 1]; the output is uint8 of the input's shape.

Randomness (noise, jitter, patch positions) comes from `np.random.default_rng(seed)` only, so
the result is a deterministic function of (image, dist_type, level, seed); for one seed the
levels of a type share their random draws and differ only by the parameter.

Levels whose parameter is the identity leave the image unchanged (up to colour-space rounding):
Saturation_Dist._Lab level 1 (factor 1), Mean_Shift level 3 (shift 0), Contrast level 3 (0).
"""

import io
import warnings
from typing import Callable, Dict, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage, signal
from skimage import color, restoration

from metaiqa_jax.data.labels import KADID_TYPES, NUM_LEVELS, check_type_level

# Parameter per level (1..5) of each KADID type (1..25), from the KADIS-700k generator.
LEVEL_PARAMS: Dict[int, Tuple[float, ...]] = {
    1: (0.1, 0.5, 1, 2, 5),  # Gaussian blur sigma (px)
    2: (1, 2, 4, 6, 8),  # lens (disk) blur radius (px)
    3: (1, 2, 4, 6, 10),  # motion blur length (px)
    4: (1, 3, 6, 8, 12),  # colour diffusion: sigma (px) of the blur of Lab a*, b*
    5: (1, 3, 6, 8, 12),  # colour shift: green-channel shift (px)
    6: (64, 48, 32, 16, 8),  # colour quantisation: palette size
    7: (0.4, 0.2, 0.1, 0, -0.4),  # HSV saturation factor
    8: (1, 2, 3, 6, 9),  # Lab a*, b* factor
    9: (16, 32, 45, 120, 400),  # JPEG2000 compression ratio
    10: (43, 36, 24, 7, 4),  # JPEG quality
    11: (0.001, 0.002, 0.003, 0.005, 0.01),  # white noise variance (RGB, [0, 1] scale)
    12: (0.0001, 0.0005, 0.001, 0.002, 0.003),  # white noise variance in YCbCr
    13: (0.001, 0.005, 0.01, 0.02, 0.03),  # salt & pepper density
    14: (0.001, 0.005, 0.01, 0.02, 0.05),  # multiplicative (speckle) noise variance
    15: (0.01, 0.03, 0.05, 0.1, 0.15),  # denoising: variance of the noise removed
    16: (0.1, 0.2, 0.4, 0.7, 1.1),  # brighten amount
    17: (0.05, 0.1, 0.2, 0.4, 0.8),  # darken amount
    18: (0.15, 0.08, 0, -0.08, -0.15),  # mean shift ([0, 1] scale)
    19: (0.05, 0.1, 0.2, 0.5, 1),  # jitter: displacement std (px)
    20: (20, 40, 60, 80, 100),  # non-eccentricity: number of displaced patches
    21: (0.01, 0.05, 0.1, 0.2, 0.5),  # pixelate strength
    22: (20, 16, 13, 10, 7),  # quantisation: levels per channel
    23: (2, 4, 6, 8, 10),  # colour block: number of blocks
    24: (1, 2, 3, 6, 12),  # high sharpen: unsharp-mask amount
    25: (0.3, 0.15, 0, -0.4, -0.6),  # contrast change amount
}

# KADID-10k images are 512x384; sizes of patches/blocks scale with the shorter side over 384.
_KADID_SHORT_SIDE = 384
MIN_SIDE = 16


def _gauss2d(x: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur of the spatial axes of (H, W[, C]), replicate borders."""
  sig = (sigma, sigma) + (0,) * (x.ndim - 2)
  return ndimage.gaussian_filter(x, sig, mode='nearest', truncate=3.0)


def _filter2d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Correlates each channel of (H, W, C) with a 2-D kernel, replicate borders (FFT)."""
  kh, kw = kernel.shape
  padded = np.pad(x, ((kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2), (0, 0)),
                  mode='edge')
  return signal.fftconvolve(padded, kernel[::-1, ::-1, None], mode='valid', axes=(0, 1))


def _scaled(size_at_kadid: int, x: np.ndarray) -> int:
  return max(1, int(round(size_at_kadid * min(x.shape[:2]) / _KADID_SHORT_SIDE)))


def _lab2rgb(lab: np.ndarray) -> np.ndarray:
  """Lab -> RGB; out-of-gamut colours are clipped (skimage's clipping warning is expected)."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', UserWarning)
    return color.lab2rgb(lab)


def gaussian_blur(x, sigma, rng):
  """Isotropic Gaussian blur, standard deviation `sigma` px, kernel truncated at 3 sigma."""
  del rng
  return _gauss2d(x, sigma)


def lens_blur(x, radius, rng):
  """Convolution with a uniform disk of `radius` px (MATLAB fspecial('disk'), unsampled edge)."""
  del rng
  r = int(np.ceil(radius))
  yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
  kernel = (xx**2 + yy**2 <= radius**2).astype(np.float64)
  return _filter2d(x, kernel / kernel.sum())


def motion_blur(x, length, rng):
  """Horizontal linear motion blur over `length` px (fspecial('motion', length, 0))."""
  del rng
  n = int(np.ceil(length)) | 1  # odd support
  kernel = np.ones((1, n))
  frac = (length - (n - 2)) / 2.0 if n > 1 else 1.0
  kernel[0, [0, -1]] = frac if n > 1 else 1.0
  return _filter2d(x, kernel / kernel.sum())


def color_diffusion(x, sigma, rng):
  """Gaussian blur (std `sigma` px) of the Lab chroma channels a*, b*; lightness kept."""
  del rng
  lab = color.rgb2lab(x)
  lab[..., 1:] = _gauss2d(lab[..., 1:], sigma)
  return _lab2rgb(lab)


def color_shift(x, shift, rng):
  """Green channel shifted right by `shift` px, blended in by normalised edge strength."""
  del rng
  gray = color.rgb2gray(x)
  edges = np.hypot(ndimage.sobel(gray, 0), ndimage.sobel(gray, 1))
  mask = edges / max(edges.max(), 1e-12)
  s = int(round(shift))
  shifted = np.concatenate([np.repeat(x[:, :1, 1], s, axis=1), x[:, :x.shape[1] - s, 1]], 1)
  out = x.copy()
  out[..., 1] = x[..., 1] * (1 - mask) + shifted * mask
  return out


def color_quantization(x, colors, rng):
  """Median-cut palette of `colors` entries with Floyd-Steinberg dithering (MATLAB rgb2ind)."""
  del rng
  img = Image.fromarray(_to_uint8(x))
  quant = img.quantize(colors=int(colors), method=Image.Quantize.MEDIANCUT,
                       dither=Image.Dither.FLOYDSTEINBERG)
  return np.asarray(quant.convert('RGB'), np.float64) / 255.0


def saturation_hsv(x, factor, rng):
  """HSV saturation multiplied by `factor`; negative factors flip towards the opposite hue.

  HSV -> RGB is linear in S at fixed H and V (each channel is V - V * S * w(H)), so scaling S
  by `factor` is `V - factor * (V - x)` with V = max(R, G, B): no colour-space round trip.
  """
  del rng
  value = x.max(axis=-1, keepdims=True)
  return value - factor * (value - x)


def saturation_lab(x, factor, rng):
  """Lab chroma a*, b* multiplied by `factor` (over-saturation; 1 is the identity)."""
  del rng
  lab = color.rgb2lab(x)
  lab[..., 1:] *= factor
  return _lab2rgb(lab)


def jpeg2000(x, ratio, rng):
  """JPEG2000 (OpenJPEG via Pillow, irreversible 9/7 wavelet) at compression ratio `ratio`."""
  del rng
  buf = io.BytesIO()
  Image.fromarray(_to_uint8(x)).save(buf, format='JPEG2000', quality_mode='rates',
                                     quality_layers=[float(ratio)], irreversible=True)
  return _decode(buf)


def jpeg(x, quality, rng):
  """Baseline JPEG (libjpeg via Pillow, 4:2:0 chroma) at `quality` 1..100."""
  del rng
  buf = io.BytesIO()
  Image.fromarray(_to_uint8(x)).save(buf, format='JPEG', quality=int(quality))
  return _decode(buf)


def white_noise(x, var, rng):
  """Additive Gaussian noise of variance `var` on each RGB value ([0, 1] scale)."""
  return x + rng.standard_normal(x.shape) * np.sqrt(var)


def white_noise_ycbcr(x, var, rng):
  """Additive Gaussian noise of variance `var` on each of Y, Cb, Cr (full-range BT.601)."""
  ycc = color.rgb2ycbcr(x) / 255.0
  ycc = ycc + rng.standard_normal(x.shape) * np.sqrt(var)
  return color.ycbcr2rgb(ycc * 255.0)


def impulse_noise(x, density, rng):
  """Salt and pepper: a fraction `density` of the values set to 0 or 1 (half each)."""
  u = rng.random(x.shape)
  out = x.copy()
  out[u < density / 2] = 0.0
  out[(u >= density / 2) & (u < density)] = 1.0
  return out


def multiplicative_noise(x, var, rng):
  """Speckle: x + n * x with n uniform, zero mean, variance `var` (MATLAB imnoise 'speckle')."""
  n = (rng.random(x.shape) - 0.5) * np.sqrt(12.0 * var)
  return x + n * x


def denoising(x, var, rng):
  """Gaussian noise of variance `var` added, then removed by TV (Chambolle) denoising.

  The KADID generator used a learned denoiser; total-variation denoising with weight twice the
  noise std leaves the same kind of over-smoothed, "waxy" result. The noisy image is not
  clipped before denoising (clipping would bias dark and bright regions towards grey).
  """
  noisy = x + rng.standard_normal(x.shape) * np.sqrt(var)
  return restoration.denoise_tv_chambolle(noisy, weight=2.0 * float(np.sqrt(var)),
                                          channel_axis=-1)


def _tone_curve_value(x, exponent):
  """HSV value V -> V ** exponent at fixed hue and saturation: every channel is proportional
  to V then, so RGB is scaled by V ** exponent / V (black stays black)."""
  value = x.max(axis=-1, keepdims=True)
  safe = np.where(value > 0, value, 1.0)
  return x * np.where(value > 0, safe**exponent / safe, 0.0)


def brighten(x, amount, rng):
  """HSV value raised by the tone curve v ** (1 / (1 + amount)) (shadows lifted most)."""
  del rng
  return _tone_curve_value(x, 1.0 / (1.0 + amount))


def darken(x, amount, rng):
  """HSV value lowered by the tone curve v ** (1 + amount)."""
  del rng
  return _tone_curve_value(x, 1.0 + amount)


def mean_shift(x, shift, rng):
  """Every value shifted by `shift` ([0, 1] scale), clipped."""
  del rng
  return x + shift


def jitter(x, std, rng):
  """Each pixel resampled (bilinear) at its position displaced by N(0, std^2) px in x and y."""
  h, w = x.shape[:2]
  yy = np.arange(h)[:, None] + rng.standard_normal((h, w)) * std
  xx = np.arange(w)[None, :] + rng.standard_normal((h, w)) * std
  return np.stack([ndimage.map_coordinates(x[..., c], [yy, xx], order=1, mode='nearest')
                   for c in range(x.shape[2])], axis=-1)


def non_eccentricity(x, count, rng):
  """`count` square patches (16 px at KADID's 384-px short side) copied to a nearby spot."""
  h, w = x.shape[:2]
  ps = min(_scaled(16, x), h // 2, w // 2)
  out = x.copy()
  for _ in range(int(count)):
    sy, sx = rng.integers(0, h - ps + 1), rng.integers(0, w - ps + 1)
    ty = int(np.clip(sy + rng.integers(-2 * ps, 2 * ps + 1), 0, h - ps))
    tx = int(np.clip(sx + rng.integers(-2 * ps, 2 * ps + 1), 0, w - ps))
    out[ty:ty + ps, tx:tx + ps] = x[sy:sy + ps, sx:sx + ps]
  return out


def pixelate(x, strength, rng):
  """Box-downscaled by z = 0.95 - strength ** 0.6, then nearest-neighbour upscaled back."""
  del rng
  h, w = x.shape[:2]
  z = 0.95 - strength**0.6
  small = Image.fromarray(_to_uint8(x)).resize(
      (max(1, round(w * z)), max(1, round(h * z))), Image.Resampling.BOX)
  return np.asarray(small.resize((w, h), Image.Resampling.NEAREST), np.float64) / 255.0


def quantization(x, levels, rng):
  """Each channel quantised to `levels` values: the optimal 1-D k-means (= multi-level Otsu,
  as MATLAB multithresh + imquantize) of its 256-bin histogram, each value -> its class mean."""
  del rng
  u8 = _to_uint8(x)
  out = np.empty(x.shape, np.float64)
  values = np.arange(256, dtype=np.float64)
  for c in range(x.shape[2]):
    hist = np.bincount(u8[..., c].ravel(), minlength=256).astype(np.float64)
    cdf = np.cumsum(hist) / hist.sum()
    centres = np.interp((np.arange(levels) + 0.5) / levels, cdf, values)
    for _ in range(30):
      edges = (centres[1:] + centres[:-1]) / 2
      label = np.searchsorted(edges, values)
      mass = np.bincount(label, hist, minlength=levels)
      moment = np.bincount(label, hist * values, minlength=levels)
      centres = np.where(mass > 0, moment / np.maximum(mass, 1e-12), centres)
    lut = centres[np.searchsorted((centres[1:] + centres[:-1]) / 2, values)]
    out[..., c] = lut[u8[..., c]] / 255.0
  return out


def color_block(x, count, rng):
  """`count` uniformly coloured squares (32 px at KADID's 384-px short side) at random places."""
  h, w = x.shape[:2]
  bs = min(_scaled(32, x), h, w)
  out = x.copy()
  for _ in range(int(count)):
    y0, x0 = rng.integers(0, h - bs + 1), rng.integers(0, w - bs + 1)
    out[y0:y0 + bs, x0:x0 + bs] = rng.random(3)
  return out


def high_sharpen(x, amount, rng):
  """Unsharp mask of Lab lightness: L + amount * (L - blur_3px(L)) (MATLAB imsharpen)."""
  del rng
  lab = color.rgb2lab(x)
  lightness = lab[..., 0]
  lab[..., 0] = np.clip(lightness + amount * (lightness - _gauss2d(lightness, 3.0)), 0, 100)
  return _lab2rgb(lab)


def contrast_change(x, amount, rng):
  """Contrast scaled by (1 + amount) about mid-grey: 0.5 + (x - 0.5) * (1 + amount)."""
  del rng
  return 0.5 + (x - 0.5) * (1.0 + amount)


_FUNCTIONS: Tuple[Callable, ...] = (
    gaussian_blur, lens_blur, motion_blur, color_diffusion, color_shift, color_quantization,
    saturation_hsv, saturation_lab, jpeg2000, jpeg, white_noise, white_noise_ycbcr,
    impulse_noise, multiplicative_noise, denoising, brighten, darken, mean_shift, jitter,
    non_eccentricity, pixelate, quantization, color_block, high_sharpen, contrast_change)
assert len(_FUNCTIONS) == len(KADID_TYPES) == len(LEVEL_PARAMS)


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _decode(buf: io.BytesIO) -> np.ndarray:
  buf.seek(0)
  with Image.open(buf) as img:
    return np.asarray(img.convert('RGB'), np.float64) / 255.0


def distort(image_uint8: np.ndarray, dist_type: int, level: int, *, seed: int = 0) -> np.ndarray:
  """Applies KADID-10k distortion `dist_type` (1..25, `KADID_TYPES` order) at `level` (1..5).

  Args:
    image_uint8: (H, W, 3) uint8 RGB, H and W >= 16.
    dist_type: 1..25.
    level: 1..5 (1 mildest by parameter; see `LEVEL_PARAMS`).
    seed: seeds every random draw; same inputs and seed -> identical output.

  Returns:
    (H, W, 3) uint8.
  """
  check_type_level(dist_type, level)
  image = np.asarray(image_uint8)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f'distort expects a (H, W, 3) uint8 RGB image, got shape {image.shape} '
                     f'dtype {image.dtype}')
  if min(image.shape[:2]) < MIN_SIDE:
    raise ValueError(f'distort needs H, W >= {MIN_SIDE}, got {image.shape[:2]}')
  rng = np.random.default_rng(seed)
  param = LEVEL_PARAMS[dist_type][level - 1]
  out = _FUNCTIONS[dist_type - 1](image.astype(np.float64) / 255.0, param, rng)
  return _to_uint8(out)


__all__ = ['distort', 'LEVEL_PARAMS', 'KADID_TYPES', 'NUM_LEVELS']
