"""The pins stay in one place in spirit: requirements.txt and envs/seqsbi.yaml must agree."""

from __future__ import annotations

import re

import yaml

from conftest import ROOT


def pins(lines):
    return dict(re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip()).groups() for line in lines
                if re.match(r"^[A-Za-z0-9_.-]+==", line.strip()))


def test_conda_env_pins_match_requirements():
    requirements = pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "envs" / "seqsbi.yaml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert pins(pip_section) == requirements
    assert requirements["torch"] == "2.13.0" and requirements["sbi"].startswith("0.27.")
    assert requirements["snakemake"].startswith("9.") and "six" in requirements


def test_installed_versions_are_the_pinned_ones():
    from importlib.metadata import version

    for requirements in ("requirements.txt", "benchmarks/sbibm/requirements.txt",
                         "benchmarks/sbibm/requirements-no-deps.txt"):
        for name, pinned in pins((ROOT / requirements).read_text().splitlines()).items():
            assert version(name).split("+")[0] == pinned, (requirements, name)
