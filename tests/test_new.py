"""`bangi-landing new`: the project it writes, and that project's own tests, run as its owner
would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bangi_landing.cli import main

from .utils import ROOT


def test_the_project_written_passes_its_own_tests(tmp_path: Path) -> None:
    project = tmp_path / "my-landing"
    result = CliRunner().invoke(main, ["new", str(project)])
    assert result.exit_code == 0, result.output
    assert "Wrote 12 files" in result.output
    readme = (project / "README.md").read_text()
    assert "gunicorn -w 4 -b 0.0.0.0:8000 'wsgi:create_app()'" in readme
    assert "BANGI_SECRET_KEY=\n" in (project / ".env.example").read_text()
    assert (project / "landing" / "templates" / "index.html").is_file()
    # The project's tests in a virtual environment of their own, from the project's folder:
    # what its owner runs after pip install. Tests take nothing from the network, so the
    # environment sees the system's packages (flask, pytest) and this checkout as an
    # editable install would (a .pth file), and nothing of this repository's tests.
    python = fresh_environment(tmp_path / "venv")
    env = {**os.environ, "HOME": str(tmp_path)}
    for name in ("PYTHONPATH", "BANGI_OUTBOX"):
        env.pop(name, None)
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


def fresh_environment(folder: Path) -> str:
    """A virtual environment with this checkout of bangi-landing in it; its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(folder)],
        check=True,
        timeout=60,
    )
    python = str(folder / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    (Path(site) / "bangi-landing-checkout.pth").write_text(f"{ROOT}\n")
    return python


def test_a_folder_with_files_is_left_alone_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "wsgi.py").write_text("# mine too")
    refused = CliRunner().invoke(main, ["new", str(tmp_path)])
    assert refused.exit_code == 1
    assert "is not empty: choose a new folder, or pass --force" in refused.output
    assert (tmp_path / "wsgi.py").read_text() == "# mine too"
    assert not (tmp_path / "landing").exists()

    forced = CliRunner().invoke(main, ["new", "--force", str(tmp_path)])
    assert forced.exit_code == 0, forced.output
    assert "Bangi(app" in (tmp_path / "wsgi.py").read_text()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_file_is_no_project_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    result = CliRunner().invoke(main, ["new", str(tmp_path / "taken")])
    assert result.exit_code != 0
    assert "taken" in result.output
