"""Trains (or resumes) a Swin Transformer: `python scripts/main.py --config configs/strong.py --workdir DIR`.

Any config field can be overridden, e.g. `--config.num_epochs=5`. Several processes (multi-host): pass
--coordinator_address, --num_processes and --process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID); on TPU pods, SLURM and Open MPI pass --distributed and JAX finds them itself.
"""

from swin_flax import cli  # standard library and absl only

cli.start()

import os  # noqa: E402

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_string(
    "workdir",
    None,
    "Folder for checkpoints, TensorBoard events and the config. With several hosts: one folder "
    "every host sees (a bucket, gs://..., or a shared file system), the same on every process.",
)
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes, for multi-process runs.")
flags.DEFINE_integer("process_id", None, "This process's index, for multi-process runs.")
flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with its auto-detection."
)
flags.DEFINE_string(
    "compilation_cache",
    None,
    "Folder of JAX's persistent compilation cache ('' for none). Default: JAX_COMPILATION_CACHE_DIR "
    "if set, else WORKDIR/compilation_cache, so a resumed or restarted run skips compiling the step.",
)
flags.mark_flags_as_required(["config", "workdir"])
flags.register_validator(
    "compilation_cache",
    lambda v: not v or not os.path.isfile(v),
    "--compilation_cache names a file: give a folder (created if new), or '' for no cache.",
)
flags.register_validator(
    "workdir",
    lambda v: v is None or bool(v.strip()),
    "--workdir is empty (an unset shell variable?): give the folder to train in, e.g. --workdir "
    "runs/strong.",
)


def main(argv):
    del argv  # parse_flags refused stray arguments
    from swin_flax import distributed  # noqa: PLC0415 (jax is imported after flag parsing)

    try:  # before anything else touches JAX
        told = distributed.initialize(
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
            auto=FLAGS.distributed,
        )
    except ValueError as e:
        cli.exit_user_error(str(e), now=True)
    import jax  # noqa: PLC0415

    if jax.process_count() > 1:
        cli.multi_process_console(jax.process_index())
    from swin_flax import config, rundir, runfiles  # noqa: PLC0415 (no TensorFlow yet)

    try:  # the first collective of several processes; a no-op for one
        distributed.check_same_settings(
            {
                **{f"config.{k}": v for k, v in config.flatten(FLAGS.config.to_dict()).items()},
                "--workdir": str(runfiles.absolute(FLAGS.workdir)),
                "--num_processes": told,
            }
        )
    except ValueError as e:
        cli.exit_user_error(str(e))
    cache = cli.compilation_cache_dir(FLAGS.compilation_cache, FLAGS.workdir, os.environ)
    if cache is not None:  # set after that check, so that a refused run leaves no folder
        jax.config.update("jax_compilation_cache_dir", cache or None)
    if "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES" not in os.environ:
        # XLA's own caches (GPU autotuning) put their folder, in the cache, into every entry's key:
        # a run moved, copied or untarred would compile again. Without them it finds its steps.
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
    if jax.process_count() == 1:  # several: train_and_evaluate checks, as they all agree
        config.validate(FLAGS.config, num_devices=jax.device_count(), num_hosts=1)
        saved, finished = rundir.inspect(FLAGS.config, FLAGS.workdir)
        if finished:  # answered without importing TensorFlow or reading data
            rundir.report_finished(FLAGS.workdir, saved, FLAGS.config)
            return 0
    from swin_flax import train  # noqa: PLC0415

    train.train_and_evaluate(FLAGS.config, FLAGS.workdir, command=cli.command_line())
    return 0


if __name__ == "__main__":
    cli.run(main)
