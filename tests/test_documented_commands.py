"""Every ``nas`` command the README and the docs show parses as written: an option renamed or removed in the code
fails here, not for the reader who copies the line. (What they print is tested command by command elsewhere; the
README's own two commands run in CI.)"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from nas.cli import build_parser
from nas.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every ``nas ...`` in a fenced shell block of the docs (inline mentions such as
    `nas lut show` name a command, they are not lines to copy)."""
    found = []
    for doc in DOCS:
        in_block, carried = False, ""
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith("```"):
                in_block = line.strip() in ("```bash", "```sh", "```console", "```shell")
                continue
            if in_block and line.rstrip().endswith("\\"):       # a command continued on the next line
                carried += line.rstrip()[:-1] + " "
                continue
            line, carried = carried + line, ""
            for piece in [line] if in_block else []:
                for part in re.split(r"&&|\|\||;|\|", piece.split(" #")[0]):
                    part = part.strip().removeprefix("$ ")
                    if part.startswith("nas ") and "..." not in part and not re.search(r"[A-Z]{2,}\|", part):
                        found.append((f"{doc.name}:{n}", part))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_documented_command_parses(where, command):
    # shell around the command (a redirection, a background &) is not the command's; a synopsis's [optional]
    # parts are parsed as given
    command = re.split(r"\s[12]?>\s?", command)[0].rstrip("& ").replace("[", "").replace("]", "")
    argv = shlex.split(command)[1:]
    if "--help" in argv or "-h" in argv or argv == ["--version"]:
        return
    try:
        build_parser().parse_args(argv)
    except (UsageError, SystemExit) as exc:
        pytest.fail(f"{where}: `{command}` does not parse: {exc}")
