"""``workers=N``: N worker processes on this machine, one GPU slot each, no orphans.

The study is created by ``prepare`` before any worker starts (two processes creating a new
study at once can fail). Each worker is ``python -m mspe_sweep.sweep.work`` with the plan in
its environment, so it runs the worker loop only. Ctrl-C / SIGTERM reach the workers as
SIGTERM: each one queues its running trial for a resumed retry and exits.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess

import torch

from mspe_sweep.sweep.launch import worker_command, worker_env
from mspe_sweep.sweep.plan import Plan
from mspe_sweep.sweep.worker import raise_keyboard_interrupt

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 60


def gpu_for(index: int, trials_per_gpu: int) -> str | None:
    """The CUDA device a worker gets: workers 0..k-1 share the first visible GPU, and so on."""
    count = torch.cuda.device_count()
    if count == 0:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(count)]
    return devices[(index // trials_per_gpu) % len(devices)]


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to the worker if the launcher dies, even by SIGKILL.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalLauncher:
    """Worker processes on this machine (see :class:`~mspe_sweep.sweep.launch.Launcher`)."""

    detached = False

    def launch(self, plan: Plan) -> int:
        return launch_workers(plan)


def launch_workers(plan: Plan) -> int:
    """Run ``plan.workers`` worker processes and wait for all of them.

    Returns:
        0 when every worker succeeded, else the first non-zero exit code.
    """
    workers, trials_per_gpu = plan.workers, plan.trials_per_gpu
    if torch.cuda.device_count() and workers > torch.cuda.device_count() * trials_per_gpu:
        log.warning("workers=%d > GPUs (%d) x trials_per_gpu (%d): GPUs are shared further",
                    workers, torch.cuda.device_count(), trials_per_gpu)
    procs = []
    # CPU workers share the cores: oversubscribed intra-op threads spin against each other and
    # can be 10x slower than one thread each.
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for index in range(workers):
        env = {**os.environ, **worker_env(plan, index)}
        env.setdefault("OMP_NUM_THREADS", threads)
        gpu = gpu_for(index, trials_per_gpu)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        # A session of their own: Ctrl-C reaches only the launcher, which forwards one SIGTERM
        # (two signals would interrupt a worker's clean-up of the first).
        procs.append(subprocess.Popen(worker_command(), env=env, preexec_fn=_die_with_parent,
                                      start_new_session=True))
    previous = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        log.warning("stopping %d workers (their trials resume on the next run)", len(procs))
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [_wait_or_kill(proc) for proc in procs]
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return next((code for code in codes if code != 0), 0)


def _wait_or_kill(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
