"""Test-wide setup: two host CPU devices, so pmap and sharding paths run with more than one device, and
one persistent XLA compilation cache for the session (runs that rebuild the same step, in this process or
in subprocesses, compile it once). Also the `slow` marker of the tests listed in SLOW (below)."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the scripts have it (cli.start)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # made here; pytest-xdist's workers inherit it
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="swin_flax_xla_cache_")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


import pytest  # noqa: E402

import swin_flax  # noqa: E402, F401 (its TensorFlow setting, before a test module imports TensorFlow)


@pytest.fixture
def scan_every_stage(monkeypatch):
    """Lets every stage scan (swin.SCAN_MIN_DEPTH = 1), so the scanned-layout tests can use the
    small fixture models, whose stages have one or two blocks."""
    from swin_flax.models import swin  # noqa: PLC0415

    monkeypatch.setattr(swin, "SCAN_MIN_DEPTH", 1)


# The `slow` tests (registered in pyproject.toml; `make test-fast` = `pytest -m "not slow"` leaves them
# out, `make test` runs everything): those that run scripts/main.py or another script as a subprocess,
# start several processes, or train. Marked here for the modules whose own files carry no mark: one
# explicit list, by module and test name (every parametrisation of a listed test); ALL: the whole module.
# test_benchmark.py, test_entry_points.py and test_runs.py mark their slow tests themselves. A renamed or
# new slow test belongs in this list.
ALL = "*"
SLOW = {
    "test_reliability.py": {  # scripts/main.py run, killed and resumed as real processes; trains
        "test_interrupted_runs_resume_to_the_uninterrupted_result",
        "test_console_of_a_run_and_of_running_it_again",
        "test_full_disk_while_saving_keeps_previous_checkpoint",
        "test_nan_loss_stops_with_step_and_epoch",
        "test_compilation_cache_defaults_to_the_workdir",
        "test_a_finished_run_without_its_latest_checkpoints_is_refused",
        "test_a_workdir_moved_while_training_stops_the_run_before_it_writes_at_the_old_path",
    },
    "test_multihost.py": ALL,  # two processes of scripts/main.py joined by jax.distributed
    "test_train.py": {"test_train_then_resume", "test_profile_steps_writes_one_trace"},  # trains
    "test_bad_input.py": {  # scripts/main.py as a subprocess
        "test_unknown_config_field_on_the_command_line",
        "test_workdir_that_is_a_file",
        "test_multi_process_flags_on_the_command_line",
    },
    "test_evaluate.py": {"test_cli_refuses_before_evaluating"},  # scripts/evaluate.py, per case
    "test_predict.py": {  # scripts/predict.py as a subprocess
        "test_cli_prints_names_and_probabilities",
        "test_cli_predicts_the_good_files_and_names_the_bad_ones",
        "test_cli_refuses_before_loading_a_checkpoint",
        "test_cli_checks_the_run_before_reading_any_image",
        "test_cli_refuses_only_bad_files_before_compiling",
    },
    "test_export.py": {  # scripts/export.py as a subprocess
        "test_export_script_takes_one_run_of_several",
        "test_export_script_writes_the_best_checkpoint",
        "test_export_script_bad_arguments_exit_2_and_write_nothing",
        "test_the_export_says_the_input_and_classes_it_was_trained_on",
    },
}


def pytest_collection_modifyitems(config, items):
    """Adds the `slow` marker to the tests SLOW lists."""
    for item in items:
        names = SLOW.get(item.path.name)
        if names == ALL or (names and getattr(item, "originalname", item.name) in names):
            item.add_marker(pytest.mark.slow)
