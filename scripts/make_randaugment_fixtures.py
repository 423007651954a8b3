"""Write tests/fixtures/randaugment.npz: timm's RandAugment ops on a few 32x32 photographs.

Reference outputs for tests/test_randaugment.py, produced by timm's own `AugmentOp` on PIL images.
Needs timm, Pillow and scikit-image (for its bundled photographs), so it runs in the reference venv,
never in the package or the tests:

    /work/refvenv/bin/python scripts/make_randaugment_fixtures.py [--out PATH]

How each entry is made: `AugmentOp(name, prob=1.0, magnitude=m, hparams=HPARAMS)` with hparams
fixing `interpolation` to bilinear and no `magnitude_std`, so the op draws nothing from Python's
`random` except the sign of the signed ops (timm's `_randomly_negate`, which negates when
`random.random() > 0.5`). The sign is fixed by swapping the module's `random` for a stub whose
random() returns 0.25 (keep the sign) or 0.75 (negate) while the op runs; the stub counts its calls,
and the script checks that exactly the signed ops drew a sign. The argument the op received
(timm's LEVEL_TO_ARG[name](m)) is recorded too.

Layout (np.savez_compressed):
  images      uint8 [K, 32, 32, 3]: 3 photographs (skimage.data, resized by PIL) + 1 synthetic
              image whose channels hit edge cases (a flat channel; a channel with 700 of 1024
              pixels at its top value, so Equalize's LUT exceeds 255 and is clipped; noise)
  image_names str [K]
  names       str [E]: op name of each entry;  magnitudes float64 [E];  signs int64 [E] (+1/-1,
              0 for unsigned ops);  args float64 [E] (nan for ops without argument)
  outputs     uint8 [E, K, 32, 32, 3]
  level_names str [L], level_magnitudes float64 [L], level_signs int64 [L], level_args float64 [L]:
              timm's LEVEL_TO_ARG[name](m, hparams) over a grid of magnitudes (0..12.5) and both
              signs, sign fixed the same way (no images)
  rand_transforms, rand_increasing_transforms  str: timm's op lists, in order
  weighted_names str, weighted_weights float64: timm's _RAND_WEIGHTED_0 ('tweights'), in order
  hparams     str: JSON of the hparams used;  versions  str: JSON of timm / Pillow / skimage
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import PIL
import skimage
import skimage.data
import timm
import timm.data.auto_augment as aa
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea")
MAGNITUDES = (9.0, 4.0)  # the recipe's m, and one mid value (m=10 would ask Pillow for 0 bits)
LEVEL_MAGNITUDES = (0.0, 0.5, 1.3, 2.5, 4.0, 5.0, 7.77, 9.0, 9.99, 10.0, 12.5)
OPS = (
    *aa._RAND_TRANSFORMS,
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "TranslateX",
    "TranslateY",
)
SIGNED = {
    "Rotate",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "TranslateXRel",
    "TranslateYRel",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
}
NO_ARG = {"AutoContrast", "Equalize", "Invert"}
# translate_const 10 (not the recipe's 117, which moves a 32-pixel image out of view at m >= 3) so
# the absolute TranslateX/Y entries show something; the Rel ops use translate_pct (default 0.45).
HPARAMS = dict(
    translate_const=10,
    translate_pct=0.45,
    img_mean=(124, 116, 104),
    interpolation=Image.Resampling.BILINEAR,
)


class _FixedRandom:
    """Stands in for timm's `random` module: random() always returns `value`; calls are counted."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return self.value


def photographs() -> tuple[np.ndarray, list[str]]:
    """3 photographs shipped with scikit-image, resized to 32x32 by PIL, + 1 synthetic image."""
    images = []
    for name in PHOTOS:
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        images.append(np.asarray(photo.resize((32, 32), Image.Resampling.BICUBIC)))
    rng = np.random.default_rng(0)
    synthetic = np.empty((32, 32, 3), np.uint8)
    synthetic[..., 0] = 77
    top = np.zeros(32 * 32, bool)
    top[rng.permutation(32 * 32)[:700]] = True
    synthetic[..., 1] = np.where(top, 200, rng.integers(0, 200, 32 * 32)).reshape(32, 32)
    synthetic[..., 2] = rng.integers(0, 256, (32, 32))
    images.append(synthetic)
    return np.stack(images), [*PHOTOS, "synthetic"]


def run_op(name: str, magnitude: float, sign: int, images: np.ndarray):
    """timm's AugmentOp on each image with the sign fixed; returns (outputs, arg)."""
    op = aa.AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=HPARAMS)
    assert op.magnitude_std == 0 and op.kwargs["resample"] == Image.Resampling.BILINEAR
    stub = _FixedRandom(0.25 if sign >= 0 else 0.75)
    real_random = aa.random
    aa.random = stub
    try:
        outputs = np.stack([np.asarray(op(Image.fromarray(x))) for x in images])
        level = op.level_fn(magnitude, op.hparams) if op.level_fn is not None else ()
    finally:
        aa.random = real_random
    expected_calls = len(images) + 1 if name in SIGNED else 0  # one per op call + level_fn above
    assert stub.calls == expected_calls, (name, stub.calls, expected_calls)
    arg = float(level[0]) if level else float("nan")
    return outputs, arg


def level_table():
    """timm's level-to-argument mapping of every op with one, on a grid of magnitudes and signs."""
    names, magnitudes, signs, args = [], [], [], []
    for name in OPS:
        if name in NO_ARG:
            continue
        op = aa.AugmentOp(name, prob=1.0, magnitude=0.0, hparams=HPARAMS)
        for magnitude in LEVEL_MAGNITUDES:
            for sign in (1, -1) if name in SIGNED else (0,):
                stub = _FixedRandom(0.25 if sign >= 0 else 0.75)
                real_random = aa.random
                aa.random = stub
                try:
                    (arg,) = op.level_fn(magnitude, op.hparams)
                finally:
                    aa.random = real_random
                assert stub.calls == (1 if name in SIGNED else 0), name
                names.append(name)
                magnitudes.append(magnitude)
                signs.append(sign)
                args.append(float(arg))
    return names, magnitudes, signs, args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures/randaugment.npz")
    out = Path(parser.parse_args().out)

    images, image_names = photographs()
    names, magnitudes, signs, args, outputs = [], [], [], [], []
    for name in OPS:
        for magnitude in (0.0,) if name in NO_ARG else MAGNITUDES:
            for sign in (1, -1) if name in SIGNED else (0,):
                result, arg = run_op(name, magnitude, sign, images)
                names.append(name)
                magnitudes.append(magnitude)
                signs.append(sign)
                args.append(arg)
                outputs.append(result)
    level_names, level_magnitudes, level_signs, level_args = level_table()
    hparams = {**HPARAMS, "interpolation": "bilinear"}
    versions = dict(timm=timm.__version__, pillow=PIL.__version__, skimage=skimage.__version__)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=images,
        image_names=np.array(image_names),
        names=np.array(names),
        magnitudes=np.array(magnitudes, np.float64),
        signs=np.array(signs, np.int64),
        args=np.array(args, np.float64),
        outputs=np.stack(outputs),
        level_names=np.array(level_names),
        level_magnitudes=np.array(level_magnitudes, np.float64),
        level_signs=np.array(level_signs, np.int64),
        level_args=np.array(level_args, np.float64),
        rand_transforms=np.array(aa._RAND_TRANSFORMS),
        rand_increasing_transforms=np.array(aa._RAND_INCREASING_TRANSFORMS),
        weighted_names=np.array(list(aa._RAND_WEIGHTED_0)),
        weighted_weights=np.array(list(aa._RAND_WEIGHTED_0.values()), np.float64),
        hparams=json.dumps(hparams),
        versions=json.dumps(versions),
    )
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {len(names)} entries, {versions}")


if __name__ == "__main__":
    main()
