"""Runs the lit + FileCheck suite under tests/filecheck/ so that one pytest command runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parent / "filecheck"


def _tool(name: str) -> str:
    tool = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if tool is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return tool


def test_lit_suite_passes() -> None:
    _tool("filecheck")
    _tool("bitmod-opt")
    result = subprocess.run(
        [_tool("lit"), str(SUITE), "-v"], capture_output=True, text=True, timeout=1500
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-30000:]
    assert "Failed" not in report.split("Testing Time")[-1], report[-30000:]
