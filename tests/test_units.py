"""Unit tests of the numpy-level pieces: simulators, seeds, atomic writes, tables and plots."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from seqsbi import artifacts, scatter
from seqsbi.plots import pairplot, posterior_summary, zoom_limits
from seqsbi.priors import ParameterSpace
from seqsbi.seeds import block_seed, round_seed, training_seed
from seqsbi.simulators import resolve_simulator
from seqsbi.simulators.toy import linear_gaussian, two_moons


def test_linear_gaussian_matches_its_definition():
    rng = np.random.default_rng(1)
    theta = rng.uniform(-2, 2, size=(20000, 3))
    x = linear_gaussian(theta, np.random.default_rng(2), shift=1.0, noise_std=0.1)
    residual = x - theta - 1.0
    assert x.shape == theta.shape
    assert abs(residual.mean()) < 0.005 and abs(residual.std() - 0.1) < 0.005


def test_two_moons_shapes_and_radius():
    theta = np.zeros((5000, 2))
    x = two_moons(theta, np.random.default_rng(0))
    # With theta = 0 the moon is centred at (0.25, 0) with radius 0.1 +- 0.01.
    radius = np.hypot(x[:, 0] - 0.25, x[:, 1])
    assert x.shape == (5000, 2) and abs(radius.mean() - 0.1) < 0.002


def test_simulator_shape_check_names_the_simulator():
    bad = resolve_simulator("linear_gaussian", {}, key="runs.r.simulator")
    bad.function = lambda theta, rng: theta.ravel()  # wrong shape on purpose
    with pytest.raises(ValueError, match=r"runs\.r\.simulator: simulator 'linear_gaussian' returned shape \(6,\)"):
        bad(np.zeros((2, 3)), np.random.default_rng(0))


SEEDS_IN_A_FRESH_INTERPRETER = (
    "from seqsbi.seeds import block_seed, round_seed, training_seed; "
    "seed = round_seed(0, 'run', 'obs', 1); print(seed, block_seed(seed, 3), training_seed(seed))"
)


def test_round_seeds_are_stable_and_distinct():
    # Stable: the same in other interpreters, whatever their string-hash salt (reruns reproduce).
    seed = round_seed(0, "run", "obs", 1)
    here = f"{seed} {block_seed(seed, 3)} {training_seed(seed)}"
    for hash_seed in ("0", "1"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT / "workflow")}
        fresh = subprocess.run([sys.executable, "-c", SEEDS_IN_A_FRESH_INTERPRETER], capture_output=True, text=True,
                               env=env, check=True)
        assert fresh.stdout.split() == here.split()
    seeds = {round_seed(s, r, o, k) for s in (0, 1) for r in ("a", "b") for o in ("x", "y") for k in (0, 1, 2)}
    assert len(seeds) == 24
    assert all(0 <= s < 2**63 for s in seeds)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "samples.npz"
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target) as temporary:
            temporary.write_bytes(b"half a file")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert os.listdir(target.parent) == []


def test_npz_round_trip(tmp_path):
    path = tmp_path / "s.npz"
    samples = np.random.default_rng(0).normal(size=(10, 2))
    artifacts.write_npz(path, samples=samples, parameter_names=np.array(["a", "b"]))
    back = artifacts.read_npz(path)
    assert np.array_equal(back["samples"], samples) and back["parameter_names"].tolist() == ["a", "b"]
    assert sorted(os.listdir(tmp_path)) == ["s.npz"]


def test_posterior_summary_table():
    samples = np.random.default_rng(0).normal(loc=[1.0, -2.0], scale=[0.1, 0.5], size=(20000, 2))
    table = posterior_summary(samples, ["log_mass", "tau_v"], ["dex", "mag"], np.array([1.0, -2.0]))
    header, first, second = table.strip().split("\n")
    assert header.split("\t")[:4] == ["parameter", "unit", "mean", "std"]
    fields = first.split("\t")
    assert fields[:2] == ["log_mass", "dex"]
    assert abs(float(fields[2]) - 1.0) < 0.01 and abs(float(fields[3]) - 0.1) < 0.01
    assert second.split("\t")[-1] == "-2"


def test_zoom_limits_stay_inside_prior_and_cover_truth():
    prior = np.array([[-2.0, 2.0], [-2.0, 2.0]])
    samples = [np.random.default_rng(0).normal(-1.0, 0.1, size=(5000, 2))]
    limits = zoom_limits(samples, prior, theta_true=np.array([-1.0, 1.9]))
    assert np.all(limits[:, 0] >= -2) and np.all(limits[:, 1] <= 2)
    assert limits[0, 1] < 0  # zoomed in on the first parameter
    assert limits[1, 1] >= 1.9  # the truth stays in view


def test_pairplot_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    rounds = [rng.normal(0, 1.0, size=(500, 3)), rng.normal(0, 0.3, size=(500, 3))]
    space = ParameterSpace(("a", "b", "c"), ("dex", "", "mag"), np.full(3, -3.0), np.full(3, 3.0))
    path = tmp_path / "pair.png"
    pairplot(rounds, space.labels(), np.stack([space.low, space.high], 1), path, theta_true=np.zeros(3), title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["pair.png"]


@pytest.mark.parametrize("n_blocks", [1, 2, 7, 10])
def test_chunks_split_blocks_into_contiguous_near_equal_runs(n_blocks):
    for n_chunks in range(1, n_blocks + 1):
        runs = [scatter.chunk_blocks(n_blocks, n_chunks, chunk) for chunk in range(n_chunks)]
        assert [b for run in runs for b in run] == list(range(n_blocks))
        assert max(map(len, runs)) - min(map(len, runs)) <= 1
    with pytest.raises(ValueError, match="cannot split"):
        scatter.chunk_blocks(n_blocks, n_blocks + 1, 0)


def test_block_and_training_seeds_differ_from_each_other_and_the_round():
    seed = round_seed(0, "run", "obs", 1)
    seeds = {seed, training_seed(seed), *(block_seed(seed, b) for b in range(100))}
    assert len(seeds) == 102


def test_scattered_simulations_are_bit_identical_for_any_chunk_count():
    simulator = resolve_simulator("two_moons", {})
    theta = np.random.default_rng(1).uniform(-1, 1, size=(1050, 2))
    block_size, seed = 100, round_seed(3, "run", "obs", 2)

    def gathered(n_chunks: int) -> np.ndarray:
        pieces = []
        for chunk in range(n_chunks):
            rows = scatter.chunk_rows(len(theta), block_size, n_chunks, chunk)
            pieces.append(scatter.simulate_blocks(simulator, theta[rows], rows.start, block_size, seed))
        return np.concatenate(pieces)

    whole = gathered(1)
    assert whole.shape == (1050, 2)
    for n_chunks in (2, 3, 11):
        assert np.array_equal(gathered(n_chunks), whole)
    # The noise really comes from the seeds: another round seed gives other simulations.
    assert not np.array_equal(scatter.simulate_blocks(simulator, theta, 0, block_size, seed + 1), whole)
