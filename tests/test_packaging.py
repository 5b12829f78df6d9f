"""Packaging: a non-editable install carries the prompt templates (they live in the top-level prompts/
folder); pyproject.toml, constraints.txt and the Makefile agree on what gets installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_the_prompts_and_the_package_finds_them(tmp_path):
    pytest.importorskip("setuptools", minversion="68")  # the build backend pyproject.toml names
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "rag", "prompts"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    prompts = sorted(p.name for p in (ROOT / "prompts").glob("*.txt"))
    assert prompts and all(f"rag/prompts/{p}" in names for p in prompts)
    assert "rag/models/reader.json" in names  # the extractive reader's model
    assert "rag/models/cross_reader.npz" in names  # the cross reader that rereads its best sentences

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"  # no prompts/ folder anywhere near
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", "import rag; from rag.generation import Prompts; p = Prompts(); "
                          "print(rag.__file__); print(p.dir); print(p.get('user'))"],
                         cwd=elsewhere, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert out[0].startswith(str(site)) and out[1] == str(site / "rag" / "prompts")
    assert "{question}" in "\n".join(out[2:])


# ------------------------------------------------------------------ pyproject.toml, constraints.txt, Makefile

def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _requirements() -> list[Requirement]:
    p = _project()
    return [Requirement(r) for r in (*p["dependencies"], *p["optional-dependencies"]["test"])]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def test_every_dependency_is_pinned_in_constraints_within_its_range():
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} has no pin in constraints.txt (make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt: {name}=={pins[name]} " \
                                                                     f"is outside pyproject.toml's {req}"


def test_every_dependency_has_an_upper_bound():
    """A new major version (sentence-transformers 5 -> 6 came in unasked) is a decision, not an accident."""
    for req in _requirements():
        assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{req} has no upper bound"


def test_makefile_installs_with_the_constraints_and_one_torch():
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^CONSTRAINTS \?= constraints\.txt$", make, re.M)
    torch = re.search(r"^TORCH_VERSION \?= (\S+)$", make, re.M).group(1)
    assert "torch==" + torch in _project()["dependencies"]
    assert _pins()["torch"] == Version(torch)
    assert re.search(r"^TORCH_INDEX \?= https://download\.pytorch\.org/whl/cpu$", make, re.M)
    installs = [line.strip() for line in make.splitlines() if line.startswith("\t") and
                (" install " in line or "install-torch.sh" in line) and "--upgrade pip" not in line]
    assert len(installs) == 4  # torch, the project, its test extras, torch-dry-run
    assert all("-c $(CONSTRAINTS)" in line or line.endswith(" $(CONSTRAINTS)") for line in installs), installs


def test_setup_installs_what_running_needs_and_test_adds_the_test_extras(tmp_path):
    if not shutil.which("make"):
        pytest.skip("no make")
    venv = tmp_path / "venv"

    def plan(target: str) -> str:
        return subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=60).stdout

    setup = plan("setup")
    assert f"{venv}/bin/python -m pip install -q -c constraints.txt -e .\n" in setup
    assert "[test]" not in setup
    assert f"scripts/install-torch.sh {venv}/bin/python" in setup
    for target in ("test", "test-fast"):
        assert "-c constraints.txt -e '.[test]'" in plan(target)


def test_python_versions_agree():
    """requires-python, the Pythons the Makefile looks for and what scripts/make-venv.sh accepts."""
    spec = SpecifierSet(_project()["requires-python"])
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    looked_for = re.search(r"^PY \?= .*foreach v,([\d. ]+),", make, re.M).group(1).split()
    assert looked_for and all(Version(v) in spec for v in looked_for)
    assert Version(looked_for[0]).minor == min(v for v in range(30) if Version(f"3.{v}") in spec)
    assert Version(looked_for[-1]).minor == max(v for v in range(30) if Version(f"3.{v}") in spec)
    script = (ROOT / "scripts" / "make-venv.sh").read_text(encoding="utf-8")
    lo, hi = re.search(r"\(3, (\d+)\) <= sys.version_info\[:2\] <= \(3, (\d+)\)", script).groups()
    assert (f"3.{lo}", f"3.{hi}") == (looked_for[0], looked_for[-1])
