"""Multi-process start-up: jax.distributed from flags or the environment, before any other JAX call."""

from __future__ import annotations

import os

import jax
from absl import logging


def initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> None:
    """Starts jax.distributed when several processes are asked for; a no-op for one process.

    Flags win over the environment variables JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
    JAX_PROCESS_ID; `auto` lets JAX detect the cluster itself (TPU pods, SLURM, Open MPI).
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    if coordinator_address is None and not auto:
        if num_processes not in (None, 1):
            raise ValueError(
                f"num_processes={num_processes} needs --coordinator_address=HOST:PORT (process 0's "
                "address) and --process_id on every process."
            )
        return
    if jax.config.jax_platforms in (None, "", "cpu") and not auto:
        # CPU collectives across processes (tests, CPU clusters).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    logging.info(
        f"jax.distributed: process {jax.process_index()} of {jax.process_count()}, "
        f"{jax.local_device_count()} local / {jax.device_count()} global devices."
    )
