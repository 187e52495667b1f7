"""What reruns and what does not, through the Snakemake CLI: an edited custom simulator reruns the rounds
built with it (issue 15, item 3), and a run killed with SIGKILL resumes after ``snakemake --unlock``
with only the killed round and the ones after it redone (item 5)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, config_args, job_counts, per_observation_jobs, snakemake, tiny_run, write_workdir
from seqsbi.artifacts import ROUND_FILES, read_npz, temporary_path, write_npz
from seqsbi.simulators import simulator_source

MODEL = '''
import numpy as np

OFFSET = 1.0


def simulate(theta, rng, noise_std=0.1):
    """A user's model: x = theta + OFFSET + noise."""
    return theta + OFFSET + noise_std * rng.standard_normal(theta.shape)
'''


def test_simulator_source_names_the_file_a_custom_simulator_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "userpkg", raising=False)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my_model.py").write_text(MODEL)
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (tmp_path / "userpkg" / "sims_for_source_test.py").write_text(MODEL)
    assert simulator_source("linear_gaussian") is None and simulator_source("galaxy") is None
    assert simulator_source("./models/my_model.py:simulate") == os.path.join("models", "my_model.py")
    assert simulator_source("userpkg.sims_for_source_test:simulate") == os.path.join("userpkg",
                                                                                      "sims_for_source_test.py")
    assert "userpkg.sims_for_source_test" not in sys.modules  # found, not imported
    assert simulator_source("userpkg:simulate") == os.path.join("userpkg", "__init__.py")
    # Outside the working directory: an absolute path.
    assert simulator_source("json.decoder:JSONDecoder") == sys.modules["json.decoder"].__file__
    sys.modules.pop("userpkg", None)


def test_a_killed_writer_leaves_no_temporary_behind_the_next_write(tmp_path):
    """artifacts.atomic_path: a SIGKILL inside a write leaves .samples.tmp<host>-<pid>.npz; the next write
    of samples.npz removes it when that process is gone, and leaves a live writer's or another host's alone."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = temporary_path(tmp_path / "samples.npz", int(dead.stdout))
    live = temporary_path(tmp_path / "samples.npz", os.getppid())
    other = temporary_path(tmp_path / "samples_extra.npz", int(dead.stdout))
    other_host = tmp_path / f".samples.tmpanother_node-{int(dead.stdout)}.npz"
    for path in (stale, live, other, other_host):
        path.write_bytes(b"half a file")
    write_npz(tmp_path / "samples.npz", samples=np.zeros(3))
    assert not stale.exists() and live.exists() and other.exists() and other_host.exists()
    assert read_npz(tmp_path / "samples.npz")["samples"].shape == (3,)


def job_inputs(dry_run_output: str, rule: str) -> list[list[str]]:
    """The input files of every job of ``rule`` in a dry run's job list."""
    blocks = re.findall(rf"^rule {rule}:\n(.*?)(?:\n\n|\Z)", dry_run_output, re.M | re.S)
    return [re.search(r"^\s+input: (.*)$", block, re.M).group(1).split(", ") for block in blocks]


@pytest.mark.workflow
def test_galaxy_rounds_and_simulation_chunks_take_the_library_and_grid_as_inputs(tmp_path):
    """Rebuilding the library or the SPS grid reruns every round built from them: both are inputs of
    the jobs that simulate (train_round, simulate_chunk); propose_round follows round k-1."""
    config = yaml.safe_load((ROOT / "config/examples/synference_online.yaml").read_text())
    config["observations"] = str(ROOT / config["observations"])
    (run,) = config["runs"].values()
    run.update(simulation_chunks=2, simulation_block_size=100)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "-n", "--cores", "1")
    library = "results/galaxy/libraries/" + config["galaxy"]["library"]["name"] + ".hdf5"
    grid = f"results/galaxy/grids/{config['galaxy']['sps_grid']['name']}.hdf5"
    for rule in ("train_round", "simulate_chunk"):
        inputs = job_inputs(dry.stdout, rule)
        assert inputs and all(library in files and grid in files for files in inputs), (rule, inputs)
        assert not any(file.endswith(".py") for files in inputs for file in files)  # built-in: no source file


def custom_workdir(path: Path) -> Path:
    """Two custom simulators (a file; a package module run in 2 chunk jobs) of the same model."""
    prior = {"parameters": [{"name": "a", "low": -2, "high": 2}, {"name": "b", "low": -2, "high": 2}]}
    common = dict(prior=prior, simulator_settings={"noise_std": 0.1}, observations=["pair"], posterior_samples=300)
    runs = {
        "file": tiny_run(simulator="models/my_model.py:simulate", rounds=2, **common),
        "module": tiny_run(simulator="userpkg.model:simulate", rounds=1, simulation_chunks=2,
                           simulation_block_size=100, **common),
    }
    write_workdir(path, runs, "observation\tx_o\npair\t1.5,0.5\n")
    (path / "models").mkdir()
    (path / "models" / "my_model.py").write_text(MODEL)
    (path / "userpkg").mkdir()
    (path / "userpkg" / "__init__.py").write_text("")
    (path / "userpkg" / "model.py").write_text(MODEL)
    return path


def offsets(workdir: Path) -> dict[str, float]:
    """Mean x - theta of every round's stored simulations: the model's OFFSET."""
    found = {}
    for directory in sorted((workdir / "results" / "runs").glob("*/pair/round_*")):
        simulations = read_npz(directory / "simulations.npz")
        found[f"{directory.parts[-3]}/{directory.name}"] = float(np.mean(simulations["x"] - simulations["theta"]))
    return found


def bump_mtime(*paths: Path) -> None:
    """A modification time clearly after every output (file systems with coarse timestamps)."""
    later = time.time() + 5
    for path in paths:
        os.utime(path, (later, later))


@pytest.mark.workflow
@pytest.mark.slow
def test_editing_a_custom_simulator_reruns_the_rounds_built_with_it(tmp_path):
    workdir = custom_workdir(tmp_path)
    snakemake(workdir, "--cores", "2")
    before = offsets(workdir)
    assert before.keys() == {"file/round_0", "file/round_1", "module/round_0"}
    assert all(abs(value - 1.0) < 0.05 for value in before.values()), before
    sources = [workdir / "models" / "my_model.py", workdir / "userpkg" / "model.py"]

    # Only the modification time changes (a checkout, a copy): Snakemake 9 records a checksum of every
    # input up to 1 MB with the outputs and finds the same content, so nothing reruns.
    bump_mtime(*sources)
    dry = snakemake(workdir, "-n", "--cores", "2")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]

    for source in sources:
        source.write_text(MODEL.replace("OFFSET = 1.0", "OFFSET = 2.0"))
    bump_mtime(*sources)
    dry = snakemake(workdir, "-n", "--cores", "2")
    assert job_counts(dry.stdout) == {"train_round": 3, "propose_round": 1, "simulate_chunk": 2,
                                      **per_observation_jobs(2), "all": 1}, dry.stdout[-3000:]
    # The jobs that ran the edited file; round 1 and the module run's round follow as "updated by another job".
    assert dry.stdout.count("Updated input files: models/my_model.py") == 1  # round 0
    assert dry.stdout.count("Updated input files: userpkg/model.py") == 2  # round 0's 2 chunk jobs

    snakemake(workdir, "--cores", "2")
    after = offsets(workdir)
    assert all(abs(value - 2.0) < 0.05 for value in after.values()), after
    assert "Nothing to be done" in "".join(snakemake(workdir, "-n", "--cores", "2").stdout)


def command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            *config_args(workdir), *args]


def wait_for(condition, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.05)


@pytest.mark.workflow
@pytest.mark.slow
def test_a_run_killed_mid_round_resumes_after_unlock_redoing_only_that_round_on(tmp_path):
    """SIGKILL to snakemake and its training job in round 1 of 3; the same command then stops at
    Snakemake's lock; after `snakemake --unlock` it redoes rounds 1 and 2 only, round 0 untouched, and
    ends with the samples an uninterrupted run gives."""
    run = tiny_run(rounds=3, observations=["zero"], posterior_samples=300)
    workdir = tmp_path / "killed"
    write_workdir(workdir, {"tiny": run})
    rounds = workdir / "results/runs/tiny/zero"
    round_1_log = workdir / "results/logs/train_round/tiny/zero/round_1.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "killed.out", "w") as out:
        process = subprocess.Popen(command(workdir, "--cores", "1"), stdout=out, stderr=subprocess.STDOUT,
                                   cwd=workdir, env=env, start_new_session=True)
        # Kill once round 1 has read round 0 and started training: mid-round, before any output.
        wait_for(lambda: round_1_log.exists() and "round 1 (engine" in round_1_log.read_text(), process, 600,
                 "round 1 training")
        os.killpg(process.pid, signal.SIGKILL)  # snakemake and its job: one process group
        process.wait()
    assert not (rounds / "round_1" / "samples.npz").exists()
    round_0 = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in (rounds / "round_0").iterdir()}
    assert sorted(round_0) == sorted(ROUND_FILES.values())
    # What a kill inside a write leaves (the job died before its rename): a temporary named by its pid.
    (rounds / "round_1").mkdir(exist_ok=True)
    temporary_path(rounds / "round_1" / "samples.npz", process.pid).write_bytes(b"half a file")

    locked = subprocess.run(command(workdir, "--cores", "1"), capture_output=True, text=True, cwd=workdir, env=env)
    message = locked.stdout + locked.stderr
    assert locked.returncode != 0
    assert "Error: Directory cannot be locked." in message, message[-3000:]
    assert "the remaining lock was likely caused by a kill signal or a power loss. " \
           "It can be removed with the --unlock argument." in message
    assert not (rounds / "round_1" / "samples.npz").exists()

    snakemake(workdir, "--unlock")
    resumed = snakemake(workdir, "--cores", "1")
    counts = job_counts(resumed.stdout + resumed.stderr)
    assert counts == {"train_round": 2, **per_observation_jobs(1), "all": 1}, counts
    assert "round=0" not in resumed.stdout + resumed.stderr
    for name, (data, mtime) in round_0.items():
        path = rounds / "round_0" / name
        assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime, name
    for k in (1, 2):
        assert sorted(p.name for p in (rounds / f"round_{k}").iterdir()) == sorted(ROUND_FILES.values())
    leftovers = [p for p in (workdir / "results").rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    incomplete = workdir / ".snakemake" / "incomplete"
    assert not incomplete.exists() or not any(p.is_file() for p in incomplete.rglob("*"))

    uninterrupted = tmp_path / "uninterrupted"
    write_workdir(uninterrupted, {"tiny": run})
    snakemake(uninterrupted, "--cores", "1", "results/runs/tiny/zero/round_2/samples.npz")
    for k in (0, 1, 2):
        relative = Path(f"results/runs/tiny/zero/round_{k}/samples.npz")
        assert np.array_equal(read_npz(workdir / relative)["samples"], read_npz(uninterrupted / relative)["samples"])
