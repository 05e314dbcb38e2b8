"""`hashfed` loads `hashfed pull` (the feed client) only for command lines that may need it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "needs"),
    [
        ([], True),
        (["--help"], True),
        (["pull", "--help"], True),
        (["no-such-command"], True),
        (["list", "ls"], False),
        (["serve", "--data", "d"], False),
        (["peer", "add", "--help"], False),
    ],
)
def test_which_command_lines_load_pull(args: list[str], needs: bool) -> None:
    from api import cli

    assert cli._may_need_pull(args) is needs


def test_pull_is_listed_where_it_always_was() -> None:
    # In a fresh process: the help lists pull before overlaps, after hash.
    code = (
        "import json, typer\n"
        "from api import cli\n"
        "cli._add_pull()\n"
        "print(json.dumps(list(typer.main.get_command(cli.app).commands)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    names = json.loads(out)
    assert names.index("pull") == names.index("hash") + 1 == names.index("overlaps") - 1


def test_other_commands_do_not_load_the_feed_client() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['hashfed', 'list', 'ls', '--help']\n"
        "from api import cli\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('federation.feed_pull' in sys.modules, 'httpx' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_pull_imported_before_is_not_registered_again() -> None:
    import federation.feed_pull.cli  # noqa: F401  (registers `hashfed pull`)
    from api import cli

    count = len(cli.app.registered_commands)
    assert cli._may_need_pull(["pull", "--help"])
    cli._add_pull()
    assert len(cli.app.registered_commands) == count
