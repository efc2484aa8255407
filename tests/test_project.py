"""The project's promises about itself."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def readme_commands() -> list[str]:
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", quickstart)


def test_ci_runs_the_readme_test_command() -> None:
    _, tests, *_ = readme_commands()  # the demo, the tests, then serve and new
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == tests
    assert "pytest" in tests


def test_readme_main_command_runs_the_cli() -> None:
    main, *_ = readme_commands()
    assert main.startswith("python -m pip install -e . && bangi-landing ")
