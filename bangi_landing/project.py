"""``bangi-landing new DIR``: a landing project to edit, the demo's landing wired to the tracker.

The project is the demo landing (``demo_site``: its Flask app, templates and
styles, copied as they are, so the template is the landing the demo runs),
a ``wsgi.py`` that wraps it with the Flask extension (settings from the
environment), its README, ``.env.example``, ``requirements.txt`` and tests of
the journey against the bundled tracker (``_template/``).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

TEMPLATE_SUFFIX = ".tmpl"  # keeps the template's Python out of this package's linters
DOT = "dot-"  # a dotfile's name in the template (package data leaves dotfiles out)
LANDING_PACKAGE = "landing"  # the demo's package, in the project


class ProjectError(ValueError):
    """The project cannot be written there; the message says why."""


def write_project(target: Path, *, force: bool = False) -> list[Path]:
    """Write the project into ``target``; the files written, relative to it.

    :param force: write into a folder that has files already, overwriting
        the project's own files (and leaving the others).
    :raises ProjectError: ``target`` is a file, or a folder with files in it and not ``force``.
    """
    if target.exists() and not target.is_dir():
        raise ProjectError(f"{target} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ProjectError(f"{target} is not empty: choose a new folder, or pass --force")
    written: list[Path] = []
    for source, name in _walk(files("bangi_landing") / "_template", Path()):
        name = name.with_name(name.name.removesuffix(TEMPLATE_SUFFIX))
        if name.name.startswith(DOT):
            name = name.with_name("." + name.name.removeprefix(DOT))
        written.append(_copy(source, target, name))
    for source, name in _walk(files("demo_site"), Path(LANDING_PACKAGE)):
        written.append(_copy(source, target, name))
    return written


def _walk(folder: Traversable, into: Path) -> list[tuple[Traversable, Path]]:
    """Every file under ``folder`` with its path under ``into``; caches left out."""
    found: list[tuple[Traversable, Path]] = []
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found.extend(_walk(entry, into / entry.name))
        else:
            found.append((entry, into / entry.name))
    return found


def _copy(source: Traversable, target: Path, name: Path) -> Path:
    path = target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(source.read_bytes())
    return name
