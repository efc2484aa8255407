"""The ``bangi-landing`` command's own manners: plain-text help for every command and option."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from bangi_landing.cli import main


def commands(group: click.Group = main, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The argument lists of every command and group, the top one first."""
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


def test_the_bare_command_prints_its_help_and_succeeds() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bangi_landing"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: ")
    assert "Commands:" in done.stdout
    assert "demo" in done.stdout and "outbox" in done.stdout and "tracker" in done.stdout


def test_a_bare_group_prints_its_help_too() -> None:
    result = CliRunner().invoke(main, ["outbox"])
    assert result.exit_code == 0
    assert "purge-dead" in result.output


@pytest.mark.parametrize("args", list(commands()), ids=" ".join)
def test_help_is_plain_text(args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "`" not in result.output
    assert ":param" not in result.output
    assert ":class:" not in result.output


@pytest.mark.parametrize("args", [a for a in commands() if a], ids=" ".join)
def test_every_option_says_what_it_is_for(args: tuple[str, ...]) -> None:
    context = click.Context(main)
    command: click.Command = main
    for name in args:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    silent = [
        param.opts[0]
        for param in command.get_params(context)
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    assert silent == []


def test_a_docstring_in_rest_is_shown_as_plain_text() -> None:
    # Commands another module adds get the same treatment: the group renders them.
    group = type(main)(name="group")

    @group.command()
    @click.option("--size", help="Bytes (``0``: none), see :class:`~bangi_landing.Outbox`.")
    def task(size: int) -> None:
        """Do ``the task`` with `care`::

            and an example

        :param size: how much.
        :raises ValueError: never,
            really.
        """

    output = CliRunner().invoke(group, ["task", "--help"], terminal_width=200).output
    assert "Do the task with care:" in output
    assert "and an example" in output
    assert "Bytes (0: none), see Outbox." in output
    assert "how much" not in output
    assert "never" not in output and "really" not in output
