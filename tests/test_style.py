"""Formatting and linting by ruff, so style never becomes a review topic."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent
RUFF = [sys.executable, "-m", "ruff"]
PATHS = ["cnnbook", "tests", "chapters", "drafts", "book"]


def test_ruff_finds_no_lint_errors():
    result = subprocess.run([*RUFF, "check", *PATHS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted():
    result = subprocess.run([*RUFF, "format", "--check", *PATHS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"run `ruff format {' '.join(PATHS)}`:\n{result.stdout}{result.stderr}"
