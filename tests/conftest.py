"""Test-wide setup: two host CPU devices, so pmap and sharding paths run with more than one device, and
one persistent XLA compilation cache for the session (runs that rebuild the same step, in this process or
in subprocesses, compile it once)."""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="swin_flax_xla_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


import pytest  # noqa: E402


@pytest.fixture
def scan_every_stage(monkeypatch):
    """Lets every stage scan (swin.SCAN_MIN_DEPTH = 1), so the scanned-layout tests can use the
    small fixture models, whose stages have one or two blocks."""
    from swin_flax.models import swin  # noqa: PLC0415

    monkeypatch.setattr(swin, "SCAN_MIN_DEPTH", 1)
