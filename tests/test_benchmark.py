"""scripts/benchmark.py: the FLOP count it reads from XLA and the arithmetic of its figures."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
_spec = importlib.util.spec_from_file_location("benchmark_script", _PATH)
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def test_cost_flops_counts_a_matmul_as_2mnk():
    m, k, n = 64, 48, 16
    compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((m, k)), jnp.ones((k, n))).compile()
    assert benchmark.cost_flops(compiled) == pytest.approx(2 * m * k * n, rel=0.01)


def test_time_steps_warms_up_twice_then_times_each_step():
    calls = []
    first_done, second, durations = benchmark.time_steps(lambda: calls.append(1), 3)
    assert len(calls) == 5 and len(durations) == 3 and second >= 0
    assert first_done > benchmark.process_start_time()


def test_summary_uses_the_median_step():
    out = benchmark.summarise(100, benchmark.process_start_time() + 1.0, 9.0, [1.0, 4.0, 2.0])
    assert out["images_per_sec"] == pytest.approx(50.0)
    assert out["start_to_first_step_s"] == pytest.approx(1.0, abs=0.05)
    assert out["peak_rss_gib"] > 0
    assert out["second_step_s"] == 9.0
