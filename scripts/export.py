"""A run's best (else its latest, or a given) checkpoint as a PyTorch Swin state_dict.

    python scripts/export.py --workdir runs/strong --layout official --out swin.safetensors
    python scripts/export.py --workdir runs/strong --layout timm --out swin.pth

--layout official loads into microsoft/Swin-Transformer's SwinTransformer, timm into timm's
swin_* models, both with load_state_dict(strict=True) (the official persistent buffers
relative_position_index and attn_mask are written too). The format follows --out's suffix: .npz
and .safetensors (pip install -e '.[pretrained]') are written without PyTorch, .pth needs it.
--out's folder is created if new (the `wrote` line says so); the file is written beside it and
renamed over it, so a failed write leaves the one there as it was (and no folder it created); it
may not be among the run's files (its records, checkpoints/, runs/, ...; a new name in its folder,
or in a folder of your own there such as exports/, is fine). The last line says the input the
model expects and, for CIFAR, its classes by output index; a .safetensors keeps them in its
metadata. The checkpoint is the run's best, else its latest. A checkpoint of several runs
(config.num_runs, config.sweep) exports one of them: --run K (an index or a name such as 'seed=1').
"""

from swin_flax import cli  # standard library and absl only

cli.start()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's folder (holds config.json and checkpoints/).")
flags.DEFINE_string(
    "checkpoint", None, "A checkpoint step folder; default: the run's best, else its latest."
)
flags.DEFINE_string("layout", "official", "State_dict names: 'official' or 'timm'.")
flags.DEFINE_string("out", None, "The file to write: .safetensors, .npz or .pth.")
flags.DEFINE_string(
    "run", None, "For a checkpoint of several runs: the one to export (index or name)."
)
flags.mark_flags_as_required(["out"])

SUFFIXES = (".safetensors", ".npz", ".pth")


def main(argv):
    del argv  # parse_flags refused stray arguments
    if FLAGS.layout not in ("official", "timm"):
        cli.exit_user_error(f"--layout {FLAGS.layout!r} is not 'official' or 'timm'.")
    if not FLAGS.out.endswith(SUFFIXES):
        cli.exit_user_error(
            f"give --out, the file to write, ending in {', '.join(SUFFIXES)} (got {FLAGS.out!r})."
        )
    replacing = cli.check_output_file(
        "out", FLAGS.out, create_folder=True, keep=[FLAGS.workdir, FLAGS.checkpoint]
    )
    from swin_flax import build, evaluate  # noqa: PLC0415 (jax, orbax: after the flags)
    from swin_flax.models import convert, layout  # noqa: PLC0415

    convert.require_package(FLAGS.out, "writing")
    run = evaluate.open_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.run, several=False)
    choice = run.choice
    if len(choice.indices) > 1:
        listing = ", ".join(f"{k} {choice.names[k]!r}" for k in choice.indices)
        held = f"{len(choice.names)} runs" + (
            f" ({len(choice.indices)} match --run {FLAGS.run})" if FLAGS.run else ""
        )
        cli.exit_user_error(
            f"{run.checkpoint} holds the params of {held} and a state_dict holds one model: "
            f"choose it with --run, an index or a whole name ({listing})."
        )
    model = build.model_from_config(run.config)
    if FLAGS.layout == "timm" and (model.ape or not model.patch_norm or model.qk_scale):
        cli.exit_user_error(
            "timm's SwinTransformer has no absolute position embedding or qk_scale and always "
            f"normalises the patch embedding; this run (ape={model.ape}, patch_norm="
            f"{model.patch_norm}, qk_scale={model.qk_scale}) exports only with --layout official."
        )
    params = run.members()[0]
    if model.scan_blocks:
        params = layout.unstack_block_params(params, model)
    state = convert.flax_to_torch(params, FLAGS.layout, model)
    made = cli.missing_folders(FLAGS.out)  # said when new: a typo in it would go unnoticed
    created = f" (created {os.path.join(os.path.dirname(FLAGS.out), '')})" if made else ""
    created += replacing
    facts = model_input(run.config)
    try:
        try:
            if made:
                os.makedirs(made[-1], exist_ok=True)
        except OSError as e:  # a folder the system will not make (/proc/x), which root may "write"
            cli.exit_user_error(f"--out {FLAGS.out}: its folder cannot be created ({e.strerror}).")
        convert.save_state_dict(state, FLAGS.out, {k: json.dumps(v) for k, v in facts.items()})
    except BaseException:  # a failed write leaves nothing written: the folders made, if empty
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    print(
        f"wrote {FLAGS.out}{created}: {FLAGS.layout} layout, {len(state)} tensors, "
        f"checkpoint {run.describe()}"
    )
    print(f"load it with strict=True into {constructor(model, FLAGS.layout)}")
    print(usage(facts, FLAGS.out.endswith(".safetensors")))


def model_input(config) -> dict[str, Any]:
    """What a PyTorch user of the export feeds it and reads from it, as the run's config says: the
    input size, the normalisation (after /255) and, for CIFAR, the class names by output index."""
    from swin_flax.data import archives  # noqa: PLC0415

    facts = {
        "img_size": config.model.img_size,
        "normalize_mean": list(config.normalize_mean),
        "normalize_std": list(config.normalize_std),
    }
    if names := archives.CLASS_NAMES.get(config.dataset):
        facts["class_names"] = list(names)
    return facts


def usage(facts: dict[str, Any], in_metadata: bool) -> str:
    """The line that says `model_input`'s facts (and that a .safetensors holds them)."""
    size, names = facts["img_size"], facts.get("class_names")
    said = (
        f"its input: RGB images resized to {size}x{size}, pixels / 255 normalized with mean "
        f"{tuple(facts['normalize_mean'])} and std {tuple(facts['normalize_std'])}"
    )
    if names:
        shown = [f"{i} {n}" for i, n in enumerate(names)]
        shown = shown if len(shown) <= 10 else [*shown[:2], "...", shown[-1]]
        said += f"; its outputs: the classes' logits by index ({', '.join(shown)})"
    return said + (f" (also in the file's metadata: {', '.join(facts)})" if in_metadata else "")


# The official arguments a state_dict's shapes depend on (the dropout rates do not).
SHAPE_ARGUMENTS = (
    "img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depths", "num_heads",
    "window_size", "mlp_ratio", "qkv_bias",
)  # fmt: skip


def constructor(model, layout: str) -> str:
    """The PyTorch model an export of `model` loads into: the official SwinTransformer with its
    arguments (qk_scale, ape and patch_norm when not the defaults: qk_scale changes no shape,
    but the model's outputs), or timm's, which clamps the window to a
    smaller grid as the official code does only with always_partition=False and builds its masks
    for img_size once (as the official code) with strict_img_size=True."""
    from swin_flax.models import plan  # noqa: PLC0415

    given = model.official_arguments()
    args = {k: given[k] for k in SHAPE_ARGUMENTS}
    if layout == "official":
        name, source = (
            "SwinTransformer",
            " (microsoft/Swin-Transformer, models/swin_transformer.py)",
        )
        kept = ("qk_scale", "ape", "patch_norm")  # only when not the defaults
        args |= {k: given[k] for k in kept if given[k] != plan.OFFICIAL_DEFAULTS[k]}
    else:
        name, source = "timm.models.swin_transformer.SwinTransformer", ""
        args |= {"always_partition": False, "strict_img_size": True}
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())}){source}"


if __name__ == "__main__":
    cli.run(main)
