"""Every chapter runs where the site's launch buttons send a reader: Colab and Binder.

Colab opens a chapter alone, without the repository, so each chapter's first code cell
installs `cnnbook` from the repository when it is missing (and is quiet when it is there).
Binder builds from binder/: the pinned dependencies, then the package itself. Both use the
one repository URL of _config.yml, which the launch buttons use too.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))


def repository_url() -> str:
    """The repository URL of _config.yml (repository: url:), the one every link uses."""
    config = (REPO / "_config.yml").read_text()
    return re.search(r"^repository:\n\s+url:\s*(\S+)", config, re.MULTILINE).group(1)


def pins(path: Path) -> dict[str, str]:
    """``{package: version}`` of a requirements file's exact pins, local labels (+cpu) left out."""
    found = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s+#]+)", path.read_text(), re.MULTILINE)
    return {name.lower(): version for name, version in found}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_the_first_code_cell_installs_cnnbook_from_the_repository_when_it_is_missing(path):
    cells = json.loads(path.read_text())["cells"]
    first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    install = f'%pip install --quiet "cnnbook @ git+{repository_url()}"'
    assert re.search(
        r"try:.*\n\s+import cnnbook\nexcept ModuleNotFoundError:.*\n\s+" + re.escape(install), first
    ), f"{path.name}: the first code cell does not install cnnbook when it is missing:\n{first[:600]}"


def test_the_install_guard_is_quiet_when_cnnbook_is_installed(tmp_path):
    """The guard runs as plain Python where the package is present and prints nothing."""
    cells = json.loads(CHAPTERS[0].read_text())["cells"]
    first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    guard = first[first.index("try:") : first.index("except ModuleNotFoundError")]
    script = tmp_path / "guard.py"
    script.write_text(guard + "except ModuleNotFoundError:\n    raise SystemExit('would install')\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_binder_installs_the_pinned_dependencies_and_the_package():
    binder = pins(REPO / "binder" / "requirements.txt")
    main = pins(REPO / "requirements.txt")
    assert {"torch", "torchvision", "ipywidgets", "jupyterlab", "ipykernel"} <= binder.keys()
    disagree = {
        name: (version, main.get(name)) for name, version in binder.items() if main.get(name) != version
    }
    assert not disagree, f"binder/requirements.txt and requirements.txt pin different versions: {disagree}"
    post_build = (REPO / "binder" / "postBuild").read_text()
    assert "pip install --no-deps ." in post_build
    assert (REPO / "binder" / "postBuild").stat().st_mode & 0o111, "postBuild must be executable"


def test_the_launch_buttons_use_the_same_repository_url():
    config = (REPO / "_config.yml").read_text()
    assert "binderhub_url:" in config and "colab_url:" in config
    assert repository_url().startswith("https://github.com/")
