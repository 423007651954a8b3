"""timm's RandAugment config strings ('rand-m9-mstd0.5') and op sets, without TensorFlow, so that
`config.validate` checks `--config.randaugment` in milliseconds (the ops are `randaugment.py`)."""

from __future__ import annotations

import dataclasses
import math
import re

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitude m is the fraction m / 10 of an op's range

# timm's NAME_TO_OP without the 3-Augment extras (GaussianBlur, Desaturate): every op implemented.
OP_NAMES = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "PosterizeIncreasing", "Solarize",
    "SolarizeIncreasing", "SolarizeAdd", "Color", "ColorIncreasing", "Contrast",
    "ContrastIncreasing", "Brightness", "BrightnessIncreasing", "Sharpness", "SharpnessIncreasing",
    "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip
RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)  # fmt: skip
# timm's _RAND_INCREASING_TRANSFORMS: the same ops, each in its Increasing form where it has one.
RAND_INCREASING_TRANSFORMS = tuple(
    f"{op}Increasing" if f"{op}Increasing" in OP_NAMES else op for op in RAND_TRANSFORMS
)
# timm's _RAND_WEIGHTED_0 ('rand-...-tweights'): op -> relative weight, drawn without replacement.
RAND_WEIGHTED_0 = {
    "Rotate": 3.0, "ShearX": 2.0, "ShearY": 2.0, "TranslateXRel": 1.0, "TranslateYRel": 1.0,
    "ColorIncreasing": 0.25, "SharpnessIncreasing": 0.25, "AutoContrast": 0.25,
    "SolarizeIncreasing": 0.05, "SolarizeAdd": 0.05, "ContrastIncreasing": 0.05,
    "BrightnessIncreasing": 0.05, "Equalize": 0.05, "PosterizeIncreasing": 0.05, "Invert": 0.05,
}  # fmt: skip
_CONFIG_KEYS = ("m", "n", "mstd", "mmax", "inc", "p", "t")


@dataclasses.dataclass(frozen=True)
class RandAugmentParams:
    """A parsed timm RandAugment config. magnitude_max: the clipping bound (timm's `mmax or 10`);
    magnitude_std > 0: Normal(magnitude, std), `inf`: Uniform(0, magnitude), <= 0: `magnitude`;
    choice_weights (normalised, one per op): weighted choice without replacement."""

    num_layers: int = 2
    magnitude: float = 10.0
    magnitude_std: float = 0.0
    magnitude_max: float = 10.0
    prob: float = 0.5
    increasing: bool = False
    ops: tuple[str, ...] = RAND_TRANSFORMS
    choice_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        assert set(self.ops) <= set(OP_NAMES), f"unknown op(s) in {self.ops}"
        assert self.num_layers >= 0 and (self.ops or not self.num_layers), self
        weights = self.choice_weights
        assert weights is None or len(weights) == len(self.ops) >= self.num_layers, self


def parse_config_str(config_str: str) -> RandAugmentParams:
    """A timm RandAugment string ('rand-m9-mstd0.5') parsed by timm's `rand_augment_transform`
    rules: sections m (magnitude, 10), n (layers, 2), mstd (> 100: uniform), mmax (0: 10), inc
    (0/1), p (probability, 0.5), t (op set 'weights'); a repeated mstd, mmax or t keeps its first
    value. Where timm asserts or silently ignores, this raises ValueError."""
    bad = lambda message: ValueError(f"config_str {config_str!r}: {message}")
    sections = str(config_str).split("-")
    if sections[0] != "rand":
        raise bad(
            "must start with 'rand' (timm's RandAugment), e.g. 'rand-m9-mstd0.5'; an empty "
            "string ('--config.randaugment=') turns it off."
        )
    found: dict[str, float | str] = {}  # key -> value; mstd, mmax and t keep their first
    for section in filter(None, sections[1:]):  # timm skips empty sections ('rand--m9')
        key, *value = re.split(r"(\d.*)", section) if section[0] != "t" else ("t", section[1:])
        keys = ", ".join(_CONFIG_KEYS)
        if not value:
            raise bad(
                f"section {section!r} has no number (timm would silently ignore it); a section is "
                f"a key ({keys}) and a number, e.g. 'mstd0.5', or 'mstd101' for uniform magnitudes."
            )
        if key not in _CONFIG_KEYS:
            raise bad(
                f"unknown key {key!r} in section {section!r}; valid keys are {keys} "
                "(e.g. 'rand-m9-n2-mstd0.5-mmax10-inc0')."
            )
        kind = {"t": str, "mstd": float, "p": float}.get(key, int)
        try:
            parsed = kind(value[0])
        except ValueError:
            need = "an integer" if kind is int else "a number"
            raise bad(f"'{key}' needs {need}, got {value[0]!r}.") from None
        if key not in ("mstd", "mmax", "t") or key not in found:
            found[key] = parsed

    num_layers, increasing = found.get("n", 2), bool(found.get("inc", 0))
    op_set, weights = found.get("t"), None
    if op_set is None:
        ops = RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS
    elif op_set == "weights":
        ops, total = tuple(RAND_WEIGHTED_0), sum(RAND_WEIGHTED_0.values())
        weights = tuple(w / total for w in RAND_WEIGHTED_0.values())
        if num_layers > len(ops):
            raise bad(
                f"n={num_layers} exceeds the {len(ops)} ops of 'tweights', which are drawn "
                "without replacement (as timm's np.random.choice)."
            )
    elif op_set in ("3a", "3aw"):
        raise bad(
            f"op set 't{op_set}' needs GaussianBlur and Desaturate, which this port does not "
            "implement; use the default set or 'tweights'."
        )
    else:
        raise bad(
            f"unknown op set 't{op_set}'; the valid one is 'tweights' (timm would fall back to "
            "the default set without a word)."
        )
    mstd = found.get("mstd", 0.0)
    return RandAugmentParams(
        num_layers=num_layers,
        magnitude=float(found.get("m", 10)),
        magnitude_std=math.inf if mstd > 100 else mstd,
        magnitude_max=float(found.get("mmax", 0) or LEVEL_DENOM),
        prob=found.get("p", 0.5),
        increasing=increasing,
        ops=ops,
        choice_weights=weights,
    )
