"""The README's "Command line" block and the ``lee`` parser describe the same commands, and the
tests run every one of them.

* Every command in the block exists in the parser (``app.cli.main.build_parser()``) with every
  ``--option`` the block shows, and every parser command (a leaf subcommand such as
  ``world import-obd``) is in the block. The block is read as written: each ``lee ...`` on a line
  is one command, indented lines continue the previous one, ``a|b`` names alternative
  subcommands that share the options shown, `` | show ...`` starts a sibling subcommand, and
  ``# ...`` is a comment.
* Every parser command is run at least once through ``main([...])`` in tests/. Method: a static
  scan (``ast``) of every ``tests/*.py``. A call counts when it calls ``main`` (or a name imported
  as ``app.cli.main.main``) or a helper function of that module that itself calls ``main``, and
  its arguments, read left to right with list literals, ``*[...]`` and calls to module helpers
  that return a list literal expanded, hold the command's words as consecutive string literals
  (e.g. ``main(["world", "show", d])`` or ``run(capsys, "world", "show", d)``). A command built
  at run time (``main(argv)``) is not seen; write such tests with a literal command.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
OPTION = re.compile(r"--[A-Za-z0-9][\w-]*")
COMMAND_START = re.compile(r"(?:^|(?<=\s))lee\s+")

Words = tuple[str, ...]  # a command as its words, e.g. ("world", "show")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def parser_commands(parser: argparse.ArgumentParser,
                    prefix: Words = ()) -> Iterator[tuple[Words, argparse.ArgumentParser]]:
    """Every leaf command of the parser with its own parser, e.g. (("world", "show"), <parser>)."""
    sub = _subcommands(parser)
    if not sub:
        yield prefix, parser
        return
    for name, child in sub.items():
        yield from parser_commands(child, (*prefix, name))


def readme_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Command line\s*\n+```[a-z]*\n(.*?)^```", text, re.S | re.M)
    assert m, "README.md has a '## Command line' section with a fenced block"
    return m.group(1)


@dataclass
class Documented:
    """One command of the README block, the options shown with it and the parsers they may belong to."""

    path: Words
    options: set[str] = field(default_factory=set)
    parsers: list[argparse.ArgumentParser] = field(default_factory=list)


def read_block(block: str, parser: argparse.ArgumentParser) -> tuple[list[Documented], list[str]]:
    """The commands of the block, and a message for every ``lee ...`` that is not a parser command."""
    found: list[Documented] = []
    errors: list[str] = []
    last: list[Documented] = []
    for raw in block.splitlines():
        line = re.split(r"\s#\s", f"{raw} ", maxsplit=1)[0]
        starts = [m.end() for m in COMMAND_START.finditer(line)]
        if not starts:  # a continuation line: its options belong to the command above
            for doc in last:
                doc.options.update(OPTION.findall(line))
            continue
        for k, start in enumerate(starts):
            segment = line[start:starts[k + 1] if k + 1 < len(starts) else len(line)]
            last = _read_command(segment, parser, errors)
            found.extend(last)
    return found, errors


def _read_command(segment: str, parser: argparse.ArgumentParser, errors: list[str]) -> list[Documented]:
    groups = re.split(r"\s\|\s", f" {segment} ")
    words = groups[0].split()
    node, path, parent, parent_path, i = parser, (), None, (), 0
    docs: list[Documented] = []
    while (sub := _subcommands(node)) is not None:
        if i >= len(words):
            errors.append(f"`lee {' '.join(path)}` needs a subcommand: {segment.strip()!r}")
            return []
        names = words[i].split("|")
        unknown = [n for n in names if n not in sub]
        if unknown:
            errors.append(f"`lee {' '.join((*path, words[i]))}` is not a command of the parser "
                          f"(README line: {segment.strip()!r})")
            return []
        parent, parent_path, i = sub, path, i + 1
        if len(names) > 1:  # `ls|compare --db ...`: the options shown belong to either
            shared = [sub[n] for n in names]
            docs = [Documented((*path, n), parsers=shared) for n in names]
            break
        node, path = sub[names[0]], (*path, names[0])
    else:
        docs = [Documented(path, parsers=[node])]
    for doc in docs:
        doc.options.update(OPTION.findall(" ".join(words[i:])))
    for group in groups[1:]:  # `ls ROOT | show SNAPSHOT`: a sibling subcommand
        name = (group.split() or [""])[0]
        if parent is None or name not in parent:
            errors.append(f"`lee {' '.join(parent_path)} ... | {group.strip()}`: {name!r} is not a command there")
            continue
        docs.append(Documented((*parent_path, name), set(OPTION.findall(group)), [parent[name]]))
    return docs


# --------------------------------------------------------------------------------------------
# the static scan of tests/ for main([...]) calls
# --------------------------------------------------------------------------------------------


def _main_names(tree: ast.Module) -> set[str]:
    """Names under which a module calls ``app.cli.main.main``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "app.cli.main":
            names.update(a.asname or a.name for a in node.names if a.name == "main")
    return names


def _calls(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names
               for n in ast.walk(node))


def _literal_words(args: list[ast.expr], list_helpers: dict[str, ast.List]) -> list[str | None]:
    """Arguments flattened left to right; a string literal is itself, anything else is None."""
    out: list[str | None] = []
    for arg in args:
        if isinstance(arg, ast.Starred):
            arg = arg.value
        if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id in list_helpers:
            arg = list_helpers[arg.func.id]
        if isinstance(arg, (ast.List, ast.Tuple)):
            out.extend(_literal_words(list(arg.elts), list_helpers))
        elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            out.append(arg.value)
        else:
            out.append(None)
    return out


def commands_run_through_main(test_files: list[Path]) -> set[Words]:
    """Every run of string literals that a ``main([...])`` call (or a helper around it) passes."""
    seen: set[Words] = set()
    for path in test_files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        runners = _main_names(tree)
        if not runners:
            continue
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        list_helpers = {name: ret.value for name, fn in functions.items() for ret in ast.walk(fn)
                        if isinstance(ret, ast.Return) and isinstance(ret.value, ast.List)}
        changed = True
        while changed:  # helpers that call main, or call a helper that does
            changed = False
            for name, fn in functions.items():
                if name not in runners and _calls(fn, runners):
                    runners.add(name)
                    changed = True
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in runners:
                words = _literal_words(node.args, list_helpers)
                while words and words[0] is None:  # leading non-literal arguments (capsys, ...)
                    words.pop(0)
                run: list[str] = []
                for w in words:
                    if w is None:
                        break
                    run.append(w)
                seen.update(tuple(run[:n]) for n in range(1, len(run) + 1))
    return seen


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.fixture(scope="module")
def documented(parser) -> list[Documented]:
    found, errors = read_block(readme_block(), parser)
    assert not errors, "README command line block:\n" + "\n".join(errors)
    return found


def test_every_documented_command_exists_with_its_options(documented):
    assert documented, "the README block documents no command"
    problems = []
    for doc in documented:
        known = set().union(*(p._option_string_actions for p in doc.parsers))
        missing = sorted(doc.options - known)
        if missing:
            problems.append(f"lee {' '.join(doc.path)}: the README shows {', '.join(missing)}, the parser has no such "
                            "option")
    assert not problems, "\n".join(problems)


def test_every_parser_command_is_documented(parser, documented):
    shown = {doc.path for doc in documented}
    missing = [" ".join(path) for path, _ in parser_commands(parser) if path not in shown]
    assert not missing, f"parser commands missing from the README's Command line block: {missing}"


def test_every_parser_command_is_run_through_main_in_the_tests(parser):
    seen = commands_run_through_main(sorted(TESTS.glob("*.py")))
    missing = [" ".join(path) for path, _ in parser_commands(parser) if path not in seen]
    assert not missing, f"parser commands that no test runs through main([...]): {missing}"


# --------------------------------------------------------------------------------------------
# the readers themselves, on small hand-made inputs
# --------------------------------------------------------------------------------------------


def _toy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lee")
    sub = p.add_subparsers()
    results = sub.add_parser("results").add_subparsers()
    results.add_parser("ls").add_argument("--db")
    results.add_parser("compare").add_argument("--usage")
    results.add_parser("show").add_argument("--db")
    sub.add_parser("demo").add_argument("--out")
    return p


def test_block_reader_understands_alternatives_siblings_comments_and_continuations():
    block = ("lee results ls|compare --db X [--usage CR] | show RUN --db X   lee demo  # lee fake --x\n"
             "                  [--out DIR]\n")
    found, errors = read_block(block, _toy_parser())
    assert errors == []
    got = {doc.path: doc.options for doc in found}
    assert got == {("results", "ls"): {"--db", "--usage"}, ("results", "compare"): {"--db", "--usage"},
                   ("results", "show"): {"--db"}, ("demo",): {"--out"}}
    _, errors = read_block("lee results nope --db X\nlee results\n", _toy_parser())
    assert len(errors) == 2 and "`lee results nope` is not a command" in errors[0]


def test_scan_finds_literal_commands_through_helpers(tmp_path):
    source = '''
from app.cli.main import main as cli
def run(capsys, *args):
    return cli([str(a) for a in args])
def run_json(capsys, *args):
    return run(capsys, *args, "--json")
def import_args(root):
    return ["snapshots", "import", "--root", root]
def test_a(capsys, d):
    cli(["world", "show", d])
    run_json(capsys, "results", "ls", "--db", d)
    run(capsys, *import_args(d))
    cli(argv_built_at_run_time)
'''
    (tmp_path / "test_x.py").write_text(source)
    seen = commands_run_through_main([tmp_path / "test_x.py"])
    assert {("world", "show"), ("results", "ls"), ("snapshots", "import")} <= seen
