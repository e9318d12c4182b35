"""`pip install cnnbook` is enough for the package: in a fresh virtual environment that holds
only the dependencies pyproject.toml declares (and theirs), `import cnnbook`, the CLI and
`cnnbook.train` in a plain script work; the notebook-only helpers say what to install.

The fresh environment is made offline: its dependencies are the test environment's own
installed copies, linked in one by one from the closure of the declared requirements, so
that ipywidgets, IPython and Jupyter are missing there as on a user's machine.
"""

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent


def _declared_closure() -> list[importlib.metadata.Distribution]:
    """The distributions pyproject.toml's dependencies need, recursively (extras left out)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    found, todo = {}, [Requirement(r) for r in declared] + [Requirement("setuptools")]  # to build
    while todo:
        requirement = todo.pop()
        key = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if key in found:
            continue
        distribution = importlib.metadata.distribution(requirement.name)
        found[key] = distribution
        for line in distribution.requires or []:
            needed = Requirement(line)
            if needed.marker is None or Marker(str(needed.marker)).evaluate({"extra": ""}):
                todo.append(needed)
    return list(found.values())


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory) -> Path:
    """A new venv with cnnbook installed by pip and only its declared dependencies beside it."""
    root = tmp_path_factory.mktemp("fresh")
    deps = root / "deps"
    deps.mkdir()
    for distribution in _declared_closure():
        site = Path(distribution.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in distribution.files or []} - {"..", "__pycache__"}:
            if (site / top).exists() and not (deps / top).exists():
                (deps / top).symlink_to(site / top)
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_packages,) = venv.glob("lib/python3*/site-packages")
    (site_packages / "declared-dependencies.pth").write_text(f"{deps}\n")
    python = venv / "bin" / "python"
    source = root / "source"  # a copy: building in the repository would leave build/ there
    shutil.copytree(REPO / "cnnbook", source / "cnnbook", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run(
        [*install, "--no-deps", "--no-index", "--no-build-isolation", str(source)],
        check=True,
        cwd=root,
        timeout=600,
    )
    return python


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_fresh_environment_lacks_the_notebook_stack(fresh_python, tmp_path):
    for module in ("ipywidgets", "IPython", "nbformat"):
        result = _run(fresh_python, "-c", f"import {module}", cwd=tmp_path)
        assert result.returncode != 0, f"{module} should not be installed in the fresh environment"


def test_import_cli_and_train_work_with_the_declared_dependencies_alone(fresh_python, tmp_path):
    script = tmp_path / "train_lenet.py"
    script.write_text(
        "import sys, torch, cnnbook\n"
        "assert cnnbook.__file__.startswith(sys.prefix), cnnbook.__file__  # the installed copy\n"
        "X, y = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (256,))\n"
        "train_iter = cnnbook.DeviceLoader(X, y, batch_size=64, shuffle=True)\n"
        "test_iter = cnnbook.DeviceLoader(X[:64], y[:64], batch_size=64)\n"
        "history = cnnbook.train(cnnbook.models.lenet(), train_iter, test_iter, 2, 0.9, 'cpu', plot=False)\n"
        "print('trained', len(history.epochs), 'epochs')\n"
        "print('notebook modules loaded:', sorted(m for m in sys.modules if m.split('.')[0] in "
        "('ipywidgets', 'IPython')))\n"
    )
    result = _run(fresh_python, str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 2 epochs" in result.stdout and "notebook modules loaded: []" in result.stdout

    cli = _run(fresh_python, "-m", "cnnbook", "--help", cwd=tmp_path)
    assert cli.returncode == 0 and "execute" in cli.stdout and "grade" in cli.stdout, cli.stderr[-2000:]


def test_a_notebook_helper_without_its_extra_says_what_to_install(fresh_python, tmp_path):
    result = _run(fresh_python, "-c", "import cnnbook; cnnbook.TrainingExplorer", cwd=tmp_path)
    assert result.returncode != 0
    assert "cnnbook.TrainingExplorer needs ipywidgets" in result.stderr
    assert "pip install 'cnnbook[notebooks]'" in result.stderr
