"""Multi-process start-up: jax.distributed from flags or the environment, before any other JAX call."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath

from swin_flax import errors
from swin_flax.errors import ConfigError

# How long the processes wait for each other at start-up (jax.distributed's own default).
JOIN_TIMEOUT_S = 300
_FLAGS = ("coordinator_address", "num_processes", "process_id")
# The file process 0 writes in the workdir at start-up, for the others to find (`StartUp.ready`).
SHARED_MARKER = ".shared_by_all_processes"


def initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> int | None:
    """Starts jax.distributed for several processes: by the flags, else the JAX_* variables, or
    with `auto` as JAX detects the cluster. Given by hand, they are checked first (JAX would end in
    a C++ abort). Returns the number of processes given (None: one process, or `auto`)."""
    values, from_env = [], []  # from_env: named in a refusal, which speaks of the flags
    for name, value in zip(_FLAGS, (coordinator_address or None, num_processes, process_id)):
        variable = f"JAX_{name.upper()}"  # the environment variable that stands for the flag
        if value is None and os.environ.get(variable):
            value = os.environ[variable]
            from_env.append(f"{variable}={value}")
            if name != "coordinator_address":
                try:
                    value = int(value)
                except ValueError:
                    raise ValueError(
                        f"The environment variable {variable}={value!r} is not a whole number: "
                        f"set it to one, or unset it and pass --{name}."
                    ) from None
        values.append(value)
    coordinator_address, num_processes, process_id = values
    env_note = f" (From the environment: {', '.join(from_env)}.)" if from_env else ""
    if coordinator_address is None and not auto:
        if num_processes not in (None, 1):
            raise ValueError(
                f"num_processes={num_processes} needs --coordinator_address=HOST:PORT (process 0's "
                f"address) and --process_id on every process.{env_note}"
            )
        if process_id:  # a node of several started without the others' address: not a run alone
            raise ValueError(
                f"process_id={process_id} needs --coordinator_address=HOST:PORT (process 0's "
                f"address) and --num_processes as well; a single process has no --process_id."
                f"{env_note}"
            )
        return None
    if not auto:
        try:
            host, port = _check_by_hand(coordinator_address, num_processes, process_id)
        except ValueError as e:
            raise ValueError(f"{e}{env_note}") from None
        logging.info(
            f"jax.distributed: process {process_id} of {num_processes} joining at "
            f"{coordinator_address} (waiting up to {JOIN_TIMEOUT_S} s for the others)"
        )
        if process_id:
            _wait_for_coordinator(coordinator_address, host, port, JOIN_TIMEOUT_S)
        else:
            _check_port_free(port)
        if jax.config.jax_platforms in (None, "", "cpu"):
            # CPU collectives across processes (tests, CPU clusters).
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    else:
        logging.info(
            "jax.distributed: --distributed: detecting the cluster (SLURM, Open MPI, a TPU pod) "
            f"and joining it (waiting up to {JOIN_TIMEOUT_S} s for the others)"
        )
    handler = signal.getsignal(signal.SIGTERM)
    try:  # JAX's own timeout (a C++ abort) is never reached
        _join(
            lambda: jax.distributed.initialize(*values, initialization_timeout=JOIN_TIMEOUT_S + 60),
            JOIN_TIMEOUT_S,
        )
    except JoinTimeout:
        if not auto:
            raise
        raise JoinTimeout(
            f"Not every process joined within {JOIN_TIMEOUT_S} s. {_detected()}"
        ) from None
    except ValueError as e:
        if not auto:
            raise
        jax_said = str(e).rstrip(".")  # JAX's words: 'coordinator_address should be defined.'
        raise ValueError(
            f"--distributed found no cluster to join ({jax_said}). It reads SLURM's, Open MPI's or "
            "a TPU pod's settings: run it there, or give --coordinator_address, --num_processes "
            "and --process_id, or leave --distributed out to train in this one process."
        ) from None
    if handler is not None:  # JAX's preemption notifier took SIGTERM over (in C++): given back
        signal.signal(signal.SIGTERM, handler)
    logging.info(
        f"jax.distributed: process {jax.process_index()} of {jax.process_count()}, "
        f"{jax.local_device_count()} local / {jax.device_count()} global devices."
    )
    return num_processes


class JoinTimeout(ValueError):
    """Not every process joined in time."""


def _detected() -> str:
    """What --distributed's detection found before the wait that timed out, and what to check."""
    from jax._src import distributed as jax_state  # noqa: PLC0415 (JAX keeps it only there)

    # Set as JAX read the cluster's settings, before it waited; private: any part may be missing.
    state = getattr(jax_state, "global_state", None)
    process, count, address = (
        getattr(state, k, None) for k in ("process_id", "num_processes", "coordinator_address")
    )
    found = (
        f"--distributed detected process {process} of {count}, the coordinator (process 0) at "
        f"{address}"
        if None not in (process, count, address)
        else "--distributed had not finished detecting the cluster"
    )
    return (
        f"{found}, from SLURM's, Open MPI's or the TPU pod's settings. Check that the job started "
        "every process with --distributed (e.g. each SLURM task runs this command), that process "
        "0's host can be reached from this one and its port is open between the machines; or "
        "give --coordinator_address, --num_processes and --process_id instead."
    )


def _join(initialize: Callable[[], None], timeout_s: float) -> None:
    """Runs `initialize` (blocking in C++) in a thread, so that signals still end this process
    while it waits, and a process that never joins ends it after `timeout_s`, not in a C++ abort."""
    failed: list[BaseException] = []

    def target() -> None:
        try:
            initialize()
        except Exception as e:  # noqa: BLE001 (raised again in the caller's thread)
            failed.append(e)

    thread = threading.Thread(target=target, name="jax.distributed join", daemon=True)
    thread.start()
    thread.join(timeout_s)  # wakes for signals: their handlers run in this, the main, thread
    if failed:
        raise failed[0]
    if thread.is_alive():
        raise JoinTimeout(
            f"Not every process joined within {timeout_s} s. Start all of them (given by hand: "
            "each with the same --coordinator_address and --num_processes and its own "
            "--process_id from 0 to num_processes - 1), and check that the port is open between "
            "the machines."
        )


def gather(value: Any) -> list[Any]:
    """Every process's JSON-able `value`, in process order ([value] for one process)."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils  # noqa: PLC0415

    mine = np.frombuffer(json.dumps(value, sort_keys=True, default=str).encode(), np.uint8)
    sizes = np.ravel(multihost_utils.process_allgather(np.array(mine.size)))
    # Padded to whole 4 KiB: the gathers of a start-up then share one compiled program, so none
    # compiles after the scripts set the compilation cache (which creates its folder).
    padded = np.zeros(-(-int(sizes.max()) // 4096) * 4096, np.uint8)
    padded[: mine.size] = mine
    rows = multihost_utils.process_allgather(padded)
    return [json.loads(bytes(row[:n])) for row, n in zip(rows, sizes, strict=True)]


def check_same_settings(settings: Mapping[str, Any]) -> None:
    """Refuses processes started with different `settings` (name -> JSON value), which would
    train each its own way or wait at a collective the others never reach. A no-op for one
    process; run before anything is compiled, read or written."""
    every = gather(dict(settings))
    differ = []
    for name in sorted(set().union(*every)):
        values = [json.dumps(s.get(name)) for s in every]  # None: a field this process lacks
        if (other := next((i for i, v in enumerate(values) if v != values[0]), None)) is not None:
            differ.append(
                f"{name} is {values[0]} on process 0 but {values[other]} on process {other}"
            )
    if differ:
        more = f"; and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise ValueError(
            f"The {len(every)} processes were started with different settings: "
            f"{'; '.join(differ[:3])}{more}. Start every process of a run with the same --config "
            "file and --config.* overrides, the same --workdir and --num_processes; only "
            "--process_id differs."
        )


class StartUp:
    """Each process says once how its start-up ended (`ready`, or a refusal on leaving) and goes on
    only if all will do the same, so that a process refused alone does not leave the others waiting
    in their first collective."""

    said = False  # set on the instance once this process has said how its start-up ended

    def __enter__(self) -> StartUp:
        return self

    def ready(self, outcome: str, workdir: epath.Path | None = None) -> None:
        """Says `outcome` ('train from step 0'); returns once every process said the same and, with
        `workdir` (created), saw there the file process 0 wrote: one folder that every process sees."""
        marker = workdir / SHARED_MARKER if workdir is not None else None
        if marker is not None and jax.process_count() > 1 and jax.process_index() == 0:
            marker.write_text(secrets.token_hex(16))  # before any process reads it: gather waits
        self.said = True  # after the write: a failed one is a refusal the others hear
        try:
            every = gather(outcome)
            for i, said in enumerate(every):
                if said.startswith("refused: "):
                    raise ConfigError(
                        f"process {i} could not start: {said.removeprefix('refused: ')}"
                    )
            if any(o != every[0] for o in every):
                where = "; ".join(f"process {i}: {o}" for i, o in enumerate(every))
                raise ConfigError(
                    f"The processes do not agree on where the run stands ({where}). Their "
                    "--workdir must be one folder that every process sees: a shared file system "
                    "or a bucket."
                )
            if marker is not None and len(every) > 1:
                _check_shared(workdir, gather([socket.gethostname(), _read(marker)]))
        finally:
            if marker is not None and jax.process_count() > 1 and jax.process_index() == 0:
                with contextlib.suppress(OSError):
                    marker.unlink()

    def __exit__(self, kind, error, tb) -> None:
        if error is None or self.said or jax.process_count() == 1:
            return
        self.said = True
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C: this process ends with its one line
            why = "interrupted (Ctrl-C)"
        else:
            why = str(error) if isinstance(error, errors.USER_ERRORS) else repr(error)
        try:
            gather(f"refused: {why}")  # the others' `ready` raises it; this process, its own
        except Exception as e:  # noqa: BLE001 (another process is gone: this refusal is the news)
            first = str(e).partition("\n")[0] or repr(e)
            logging.error(f"The other processes could not be told: {first}")  # its own news


def _read(path: epath.Path) -> str | None:
    """The text of the file at `path`; None when it cannot be read (not there)."""
    try:
        return path.read_text()
    except OSError:
        return None


def _check_shared(workdir: epath.Path, seen: list[list[str | None]]) -> None:
    """Refuses a `workdir` that is not one folder: `seen` holds each process's [host, the marker's
    text it read there], process 0's the text it wrote."""
    if blind := [
        f"process {i} on {host}" for i, (host, text) in enumerate(seen) if text != seen[0][1]
    ]:
        raise ConfigError(
            f"--workdir {workdir} is not one folder that every process sees: {', '.join(blind)} "
            f"did not find there the file that process 0 on {seen[0][0]} had just written. With "
            "several hosts the workdir must be a folder that all of them share, at the same path: "
            "a network file system's (NFS, Lustre, ...) or a bucket's (gs://...). Give such a "
            "folder to every process."
        )


def _check_by_hand(
    address: str, num_processes: int | None, process_id: int | None
) -> tuple[str, int]:
    """(host, port) of a coordinator given by hand, after checking the three values agree."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        what = "its port is not 1 to 65535" if host and port.isdigit() else "it is not HOST:PORT"
        raise ValueError(
            f"--coordinator_address={address!r}: {what}. Give process 0's host name or IP and a "
            "free port, the same on every process, e.g. --coordinator_address=node0:1234."
        )
    meanings = {
        "num_processes": (num_processes, "the number of processes (the same on every one)"),
        "process_id": (process_id, "this process's index, 0 on the coordinator's host"),
    }
    if missing := {f"--{name}": meaning for name, (v, meaning) in meanings.items() if v is None}:
        raise ValueError(
            f"--coordinator_address needs {' and '.join(missing)} as well: "
            f"{' and '.join(missing.values())}. Under SLURM, Open MPI or on a TPU pod, pass "
            "--distributed instead and JAX reads them itself."
        )
    if num_processes < 1:
        raise ValueError(f"--num_processes={num_processes}: a run has at least 1 process.")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"--process_id={process_id} with --num_processes={num_processes}: the processes are "
            f"numbered 0 to num_processes - 1, each with its own --process_id."
        )
    return host.strip("[]"), int(port)


def _check_port_free(port: int) -> None:
    """Refuses a port in use on this machine, where JAX's coordinator would end in a segfault."""
    try:
        socket.create_server(("", port), family=socket.AF_INET).close()
    except OSError as e:
        raise ValueError(
            f"Port {port} is in use on this machine ({e.strerror or e}; another run's process 0, "
            "or another process of this run also given --process_id=0?): give every process its "
            "own --process_id, or another port in --coordinator_address, the same on every process."
        ) from None


def _wait_for_coordinator(address: str, host: str, port: int, timeout_s: float) -> None:
    """Returns once process 0's port answers, else a ValueError after `timeout_s`; an unknown host
    is retried too (a cluster's DNS may name a machine only once it is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=2.0).close()
            return
        except OSError as e:
            if time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            what = (
                f"The coordinator's host {host!r} (in {address}) was not known here"
                if isinstance(e, socket.gaierror)
                else f"Process 0 did not answer at {address}"
            )
            raise ValueError(
                f"{what} within {timeout_s} s. Start it there (--process_id=0), and check that "
                "every process has the same --coordinator_address, naming process 0's host, and "
                "that the port is open between the machines."
            ) from None
