"""The documentation keeps up with the code (issue #20).

* ``docs/commands.md`` has a section per command (``## NAME``) whose tables document
  every flag of that command's parser (``ddim_keras.cli.NAME.build_parser()``) and no
  flag the parser lacks: a new flag without documentation fails, and so does the
  documentation of a removed one.
* Every module of the package has its place in the API reference (``::: ddim_keras.X``
  on a page of ``docs/api/``), so a new module does not go undocumented.
* ``README.md`` stays a landing page (at most :data:`README_MAX_LINES` lines), and its
  relative links and pictures exist.

The site itself (its links, anchors and cross-references) is checked by ``mkdocs build
--strict``, which ``make test`` runs before the tests.
"""

import argparse
import importlib
import os
import re

import pytest

import ddim_keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.dirname(ddim_keras.__file__)
COMMANDS_PAGE = os.path.join(ROOT, "docs", "commands.md")
API_DIR = os.path.join(ROOT, "docs", "api")
README = os.path.join(ROOT, "README.md")
README_MAX_LINES = 250
#: Modules of cli/ that are shared by the commands, not commands.
CLI_SHARED = ("__init__", "args", "gan_args", "runner", "quiet", "progress")
#: A table row that documents a flag: its first cell starts with `--flag`.
FLAG_ROW = re.compile(r"^\|\s*`(--[A-Za-z0-9][A-Za-z0-9-]*)")
#: A Markdown link or image: [text](target) or ![alt](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _commands():
    folder = os.path.join(PACKAGE_DIR, "cli")
    return sorted(
        name[:-3]
        for name in os.listdir(folder)
        if name.endswith(".py") and name[:-3] not in CLI_SHARED
    )


def _parser_flags(command):
    parser = importlib.import_module(f"ddim_keras.cli.{command}").build_parser()
    return {
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
    }


def _sections(text):
    """{heading: text} of the ``## `` sections of a Markdown page."""
    sections, name = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            name = line[3:].strip().strip("`")
            sections[name] = []
        elif name is not None:
            sections[name].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _documented_flags(section):
    return {m.group(1) for line in section.splitlines() if (m := FLAG_ROW.match(line))}


def test_the_commands_are_found():
    assert {"train", "generate", "evaluate", "sweep", "report", "benchmark"} <= set(_commands())
    assert {"sampler_error", "shapes_classifier"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_commands_page_documents_every_flag(command):
    sections = _sections(_read(COMMANDS_PAGE))
    assert command in sections, f"docs/commands.md has no section '## {command}'"
    parser_flags = _parser_flags(command)
    documented = _documented_flags(sections[command])
    missing = sorted(parser_flags - documented)
    assert not missing, (
        f"flags of `python -m ddim_keras.{command}` missing from its section of "
        f"docs/commands.md (a table row starting with `--flag`): {missing}"
    )
    stale = sorted(documented - parser_flags)
    assert not stale, f"docs/commands.md documents flags `{command}` does not have: {stale}"


def test_flag_rows_are_recognised():
    section = "| `--cache-dir DIR` | x | y |\n| `--cache memory\\|disk` | x | y |\n--seed in prose"
    assert _documented_flags(section) == {"--cache-dir", "--cache"}


def _modules():
    found = set()
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        for name in files:
            if name.endswith(".py"):
                relative = os.path.relpath(os.path.join(folder, name), PACKAGE_DIR)[:-3]
                dotted = "ddim_keras." + relative.replace(os.sep, ".")
                found.add(dotted.removesuffix(".__init__"))
    return found


def test_every_module_is_in_the_api_reference():
    documented = set()
    for name in os.listdir(API_DIR):
        if name.endswith(".md"):
            documented |= set(
                re.findall(r"^::: (ddim_keras[\w.]*)", _read(os.path.join(API_DIR, name)), re.M)
            )
    entry_points = {f"ddim_keras.{name}" for name in _commands()}
    missing = sorted(_modules() - documented - entry_points - {"ddim_keras"})
    assert not missing, (
        "modules without a '::: MODULE' line on a page of docs/api/ (the page of their "
        f"part): {missing}"
    )


def test_readme_is_a_landing_page():
    lines = _read(README).count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; it is the landing page (at most {README_MAX_LINES}): "
        "put the details into a page of docs/ and link to it"
    )


def _relative_links(text):
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


def test_readme_links_and_pictures_exist():
    links = _relative_links(_read(README))
    assert "docs/demo_grid.png" in links and "docs/commands.md" in links
    missing = [
        target for target in links if not os.path.exists(os.path.join(ROOT, target.split("#")[0]))
    ]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_relative_links_are_recognised():
    text = '[a](docs/x.md#y) ![b](docs/p.png) [c](https://keras.io) [d](#top) [e](x.md "t")'
    assert _relative_links(text) == ["docs/x.md#y", "docs/p.png", "x.md"]
