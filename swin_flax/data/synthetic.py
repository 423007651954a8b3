"""A synthetic stand-in for CIFAR, in its shapes: 10 classes of noisy coloured stripes, for offline
demos and tests (`--config.dataset=synthetic`). Deterministic in the seed (training reads seed 0's
set, whatever config.seed, as it reads the one CIFAR); not CIFAR."""

from __future__ import annotations

import colorsys

import numpy as np

NUM_CLASSES = 10

# Class c: stripes at angle _ANGLES[c % 5], _FREQS[c // 5] cycles across the image, in a foreground
# colour whose hue centres on c / 10. Per image: jittered angle and frequency, random phase (a
# random shift of the pattern), background colour, contrast and pixel noise.
_ANGLES = np.deg2rad([0.0, 36.0, 72.0, 108.0, 144.0])
_FREQS = np.array([2.0, 4.0])
# The classes named for their stripes: orientation and cycles across the image.
NAMES = tuple(
    f"stripes_{round(float(np.rad2deg(_ANGLES[c % 5])))}deg_x{int(_FREQS[c // 5])}"
    for c in range(NUM_CLASSES)
)


def synthetic_split(
    num_examples: int, *, seed: int = 0, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-shaped split, deterministic in seed (train and test are different draws); per-image
    jitter, contrast and noise keep it from being solved in a step."""
    rng = np.random.default_rng([seed, ("train", "test").index(split), 0x5717])
    labels = rng.permutation(np.arange(num_examples) % 10).astype(np.int32)
    images = np.empty((num_examples, 32, 32, 3), np.uint8)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) - 15.5
    for start in range(0, num_examples, 4096):
        c = labels[start : start + 4096]
        n = len(c)
        theta = _ANGLES[c % 5] + rng.normal(0.0, np.deg2rad(7.0), n)
        freq = _FREQS[c // 5] * rng.uniform(0.85, 1.15, n)
        phase = rng.uniform(0.0, 2 * np.pi, n)[:, None, None]
        cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        arg = (2 * np.pi / 32.0) * freq[:, None, None] * (xx * cos + yy * sin) + phase
        wave = 0.5 + 0.5 * np.sin(arg.astype(np.float32))
        hue = (c / 10.0 + rng.normal(0.0, 0.07, n)) % 1.0
        hsv = zip(hue, rng.uniform(0.5, 1.0, n), rng.uniform(0.6, 1.0, n))
        fg = np.array([colorsys.hsv_to_rgb(*colour) for colour in hsv]) * 255.0
        bg = rng.uniform(0.0, 255.0, (n, 3))
        contrast = rng.uniform(0.35, 1.0, n)[:, None]
        fg = bg + contrast * (fg - bg)
        bg, fg = bg.astype(np.float32), fg.astype(np.float32)
        img = bg[:, None, None, :] + (fg - bg)[:, None, None, :] * wave[..., None]
        img += 24.0 * rng.standard_normal(img.shape, np.float32)
        images[start : start + n] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels
