"""A non-editable install carries the prompt templates (they live in the top-level prompts/ folder)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


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
