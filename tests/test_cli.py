"""swin_flax.cli: where the entry point puts JAX's persistent compilation cache."""

from swin_flax import cli


def test_compilation_cache_flag_wins_then_jax_environment_then_workdir():
    env = {"JAX_COMPILATION_CACHE_DIR": "/shared/xla"}
    assert cli.compilation_cache_dir("/mine", "runs/a", env) == "/mine"
    assert cli.compilation_cache_dir("", "runs/a", env) == ""  # '' turns the cache off
    assert cli.compilation_cache_dir(None, "runs/a", env) is None  # JAX reads its variable itself
    assert cli.compilation_cache_dir(None, "runs/a/", {}) == "runs/a/compilation_cache"
    assert cli.compilation_cache_dir(None, "gs://b/run", {}) == "gs://b/run/compilation_cache"
