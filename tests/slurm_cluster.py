"""A real one-node SLURM for tests: Debian slurm-wlm + munge, daemons started here, stopped by PID.

Set-up installs the packages when missing (needs root, as in CI). Config and state live in a
temporary directory; slurm.conf is also placed at /etc/slurm/slurm.conf while the cluster runs,
because the SLURM job-step plugin drops SLURM_CONF before its inner srun. Whatever was there before
is restored afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ETC_CONF = Path("/etc/slurm/slurm.conf")


def ensure_installed() -> None:
    """apt-get install slurm-wlm and munge unless slurmctld, slurmd and munged are already there."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch", "squeue")):
        return
    if os.geteuid() != 0:
        raise RuntimeError("SLURM is not installed and installing it needs root: apt-get install slurm-wlm munge")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"], check=True, env=env, capture_output=True)


def slurm_conf(state: Path, cpus: int, memory_mb: int) -> str:
    host = socket.gethostname()
    return f"""\
ClusterName=seqsbi-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPort=6817
SlurmdPort=6818
MinJobAge=3600
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _node_idle(env: dict) -> bool:
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env)
    return result.returncode == 0 and result.stdout.strip().startswith("idle")


@contextmanager
def one_node_slurm(workdir: Path, cpus: int = 2, memory_mb: int = 16000) -> Iterator[dict]:
    """Run munged, slurmctld and slurmd for the duration of the block; yield the environment to use."""
    ensure_installed()
    state = workdir / "slurm"
    for sub in ("ctld", "d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    # munged runs as user munge, which cannot enter pytest's private (0700) temporary directories.
    munge_dir = Path(tempfile.mkdtemp(prefix="seqsbi-munge-"))
    conf = state / "slurm.conf"
    conf.write_text(slurm_conf(state, cpus, memory_mb))
    backup = None
    if ETC_CONF.exists():
        backup = ETC_CONF.read_bytes()
    ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(conf, ETC_CONF)
    env = dict(os.environ, SLURM_CONF=str(conf))

    processes: list[subprocess.Popen] = []
    try:
        munge_run = Path("/run/munge")
        munge_run.mkdir(parents=True, exist_ok=True)
        shutil.chown(munge_run, "munge", "munge")
        shutil.chown(munge_dir, "munge", "munge")
        processes.append(subprocess.Popen(
            ["runuser", "-u", "munge", "--", "munged", "--foreground", "--force",
             "--socket", "/run/munge/munge.socket.2", "--log-file", str(munge_dir / "munged.log"),
             "--pid-file", str(munge_dir / "munged.pid"), "--seed-file", str(munge_dir / "munged.seed")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(lambda: Path("/run/munge/munge.socket.2").exists(), "munged's socket")
        for daemon in (["slurmctld", "-D", "-i", "-f", str(conf)], ["slurmd", "-D", "-f", str(conf)]):
            processes.append(subprocess.Popen(daemon, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        _wait_for(lambda: _node_idle(env), "the SLURM node to become idle")
        yield env
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(munge_dir, ignore_errors=True)
        if backup is None:
            ETC_CONF.unlink(missing_ok=True)
        else:
            ETC_CONF.write_bytes(backup)
