"""The documentation stays true: links, length, commands, paths and error codes.

The README is what HACS renders inside Home Assistant, and the manual in
``docs/`` names commands, options, files and modules that other changes move
or rename. These tests read the Markdown as it is committed:

* every link into the repository reaches an existing file, and a heading when
  it names one (the README links to GitHub, as HACS resolves relative links
  against Home Assistant's own address);
* the README stays a front door (under 250 lines);
* every ``p2p-grid`` command, sub-command, choice and option named in a code
  block or code span exists in the real ``p2p-grid … --help``, run through
  the installed entry point once per (sub-)command;
* every repository path and dotted Python name in code exists;
* the error codes page is exactly what ``scripts/error_codes.py`` renders from
  ``p2p_energy_client.protocol.ERRORS``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from p2p_energy_client.protocol import ERRORS, ErrorCode

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "SECURITY.md", *(ROOT / "docs").rglob("*.md")],
    key=lambda p: p.relative_to(ROOT).as_posix(),
)
README_MAX_LINES = 250
REPO = "https://github.com/p2p-energy/p2p_energy"
# Absolute addresses of this repository's files, as the README must use them.
REPO_PREFIXES = (
    f"{REPO}/blob/main/",
    f"{REPO}/tree/main/",
    "https://raw.githubusercontent.com/p2p-energy/p2p_energy/main/",
)
TOP_LEVEL = ("custom_components", "grid_server", "tests", "examples", "deploy", "blueprints")
TOP_LEVEL += ("scripts", "docs")
SHELL_BLOCKS = frozenset({"", "sh", "bash", "shell", "console"})
# Code that starts with one of these is another program: options after it are not p2p-grid's.
OTHER_PROGRAMS = ("./scripts/test", ".venv/bin/", "pytest", "ruff", "mypy", "podman", "sqlite3")
OTHER_PROGRAMS += ("pg_dump", "pip", "python")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- reading Markdown --------------------------------------------------------------


@dataclass
class Document:
    """A Markdown file split into what the checks need, in document order."""

    path: Path
    headings: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    # ("block", language, text) for fenced blocks, ("span", "", text) for code spans.
    code: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def anchors(self) -> set[str]:
        seen: dict[str, int] = {}
        anchors = set()
        for heading in self.headings:
            slug = github_slug(heading)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
        return anchors


_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`|\*|_(?=\W|$)|(?<=\W)_", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def read_document(path: Path) -> Document:
    doc = Document(path)
    prose: list[str] = []
    fence: str | None = None
    language = ""
    block: list[str] = []

    def flush_prose() -> None:
        text = _COMMENT.sub("", "\n".join(prose))
        prose.clear()
        for match in _SPAN.finditer(text):
            doc.code.append(("span", "", " ".join(match.group(2).split())))
        without_code = _SPAN.sub("code", text)
        doc.links.extend(m.group(1) for m in _LINK.finditer(without_code))
        for line in without_code.splitlines():
            heading = _HEADING.match(line)
            if heading:
                doc.headings.append(heading.group(2))

    for line in path.read_text(encoding="utf-8").splitlines():
        opening = _FENCE.match(line)
        if fence is None and opening:
            flush_prose()
            fence, language, block = opening.group(1), opening.group(2), []
        elif fence is not None and line.strip().startswith(fence):
            doc.code.append(("block", language, "\n".join(block)))
            fence = None
        elif fence is not None:
            block.append(line)
        else:
            prose.append(line)
    flush_prose()
    return doc


@pytest.fixture(scope="module")
def documents() -> dict[str, Document]:
    return {rel(path): read_document(path) for path in DOCUMENTS}


def repository_target(link: str) -> str | None:
    """The repository path an absolute link to this repository names, else None."""
    for prefix in REPO_PREFIXES:
        if link.startswith(prefix):
            return link[len(prefix) :]
    return None


def link_problems(doc: Document, documents: dict[str, Document]) -> Iterator[str]:
    for link in doc.links:
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):
            target = repository_target(link)
            if target is None:
                continue  # elsewhere on the web: not checked offline
            base = ROOT
        else:
            target, base = link, doc.path.parent
        path_part, _, anchor = target.partition("#")
        if not path_part:
            if anchor not in doc.anchors:
                yield f"{link}: no heading #{anchor} here"
            continue
        resolved = (base / path_part).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            yield f"{link}: no such file"
            continue
        if anchor and resolved.suffix == ".md":
            linked = documents.get(rel(resolved)) or read_document(resolved)
            if anchor not in linked.anchors:
                yield f"{link}: {rel(resolved)} has no heading #{anchor}"


# --- links and length -----------------------------------------------------------


@pytest.mark.parametrize("name", [rel(p) for p in DOCUMENTS])
def test_links_reach_files_and_headings(name: str, documents: dict[str, Document]) -> None:
    assert list(link_problems(documents[name], documents)) == []


def test_readme_links_work_inside_home_assistant(documents: dict[str, Document]) -> None:
    """HACS renders the README in Home Assistant, where relative links resolve wrongly."""
    relative = [
        link
        for link in documents["README.md"].links
        if not re.match(r"^[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")
    ]
    assert relative == []


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES


def test_link_check_finds_a_broken_file_and_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## The grid's key\n\n[ok](#the-grids-key) [bad](#nowhere)\n"
        "[gone](missing.md) `[not a link](missing.md)`\n\n```sh\n[nor](this.md)\n```\n",
        encoding="utf-8",
    )
    doc = read_document(page)
    doc.path = ROOT / "docs" / "page.md"  # links resolve from inside the repository
    problems = list(link_problems(doc, {"docs/page.md": doc}))
    assert problems == ["#nowhere: no heading #nowhere here", "missing.md: no such file"]


# --- the manifest points at the households' guide ---------------------------------------


def test_manifest_documentation_is_the_households_guide() -> None:
    manifest = json.loads(
        (ROOT / "custom_components/p2p_energy/manifest.json").read_text(encoding="utf-8")
    )
    assert repository_target(manifest["documentation"]) == "docs/households/home-assistant.md"
    assert (ROOT / "docs/households/home-assistant.md").is_file()
    hacs = json.loads((ROOT / "hacs.json").read_text(encoding="utf-8"))
    assert hacs["render_readme"] is True  # the README is what HACS shows


# --- commands against the real CLI ------------------------------------------------------


@dataclass(frozen=True)
class Help:
    """What ``p2p-grid … --help`` says a (sub-)command accepts."""

    options: dict[str, bool]  # option -> takes a value
    choices: tuple[str, ...]  # of the first positional argument
    commands: tuple[str, ...]  # nested sub-commands


def parse_help(text: str) -> Help:
    usage, _, rest = text.partition("\n\n")
    usage = " ".join(usage.split())
    options = {
        m.group(1): bool(m.group(2))
        for m in re.finditer(r"(?<![\w-])(--?[A-Za-z][\w-]*)(?: ([A-Z][A-Z_]*|\{[^}]*\}))?", usage)
    }
    for m in re.finditer(r"^ +(?:-\w, )?(--[\w-]+)", rest, re.MULTILINE):
        options.setdefault(m.group(1), False)
    choices: tuple[str, ...] = ()
    for m in re.finditer(r"\{([\w,-]+)\}", usage):
        if not usage[: m.start()].split()[-1].startswith("-"):  # not an option's choices
            choices = tuple(m.group(1).split(","))
            break
    commands: tuple[str, ...] = ()
    if re.search(r" [A-Z]+ \.\.\.$", usage):
        commands = tuple(re.findall(r"^ {4}([\w-]+)", rest, re.MULTILINE))
    return Help(options, choices, commands)


def p2p_grid() -> str:
    beside = Path(sys.executable).with_name("p2p-grid")
    found = str(beside) if beside.exists() else shutil.which("p2p-grid")
    assert found, "p2p-grid is not installed in this environment"
    return found


class CliHelp:
    """``p2p-grid … --help`` through the installed entry point, once per (sub-)command."""

    def __init__(self) -> None:
        self.texts: dict[tuple[str, ...], str] = {}

    def load(self, commands: set[tuple[str, ...]]) -> None:
        wanted = sorted(c for c in commands if c not in self.texts)
        running = {
            c: subprocess.Popen(
                [p2p_grid(), *c, "--help"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "COLUMNS": "200"},
            )
            for c in wanted
        }
        for command, process in running.items():
            out, _ = process.communicate(timeout=300)
            self.texts[command] = out if process.returncode == 0 else ""

    def get(self, command: tuple[str, ...]) -> Help | None:
        text = self.texts.get(command, "")
        return parse_help(text) if text else None


@dataclass(frozen=True)
class Mention:
    """A p2p-grid command line as a document names it, or a lone option after one.

    ``words`` follow the sub-command; a lone option span (`--checkpoint FILE`
    in prose) is checked against the last command the document named before
    it, and carries its own words in ``lone``.
    """

    sub: str
    words: tuple[str, ...]
    text: str
    lone: tuple[str, ...] = ()


def _words(text: str) -> list[str]:
    """The words of a command line, without brackets of optional parts or `…` placeholders."""
    words = (w.strip("[](),;") for w in text.split())
    return [w for w in words if w and w not in ("…", "...")]


def command_lines(doc: Document) -> Iterator[tuple[str, str]]:
    """("cmd", line) per p2p-grid command, ("opt", span) per lone option, ("other", line)."""
    for kind, language, text in doc.code:
        if kind == "block" and language not in SHELL_BLOCKS:
            continue
        for raw in text.splitlines() if kind == "block" else [text]:
            line = re.sub(r"(^|\s)#.*$", "", raw.strip().removeprefix("$ ")).strip()
            if line.startswith("./scripts/demo"):
                yield "cmd", "p2p-grid demo" + line.removeprefix("./scripts/demo")
            elif line.startswith("p2p-grid "):
                yield "cmd", line
            elif kind == "span" and line.startswith("--"):
                yield "opt", line
            elif line.startswith(OTHER_PROGRAMS):
                yield "other", line


def mentions(doc: Document) -> Iterator[Mention]:
    last: Mention | None = None
    for kind, line in command_lines(doc):
        if kind == "other":
            last = None
        elif kind == "cmd":
            segments = line.split(" | ")
            first = _words(segments[0])[1:]
            if not first or not re.fullmatch(r"[a-z][\w-]*", first[0]):
                continue  # `p2p-grid` alone, or a placeholder such as `p2p-grid <command>`
            last = Mention(first[0], tuple(first[1:]), line)
            yield last
            for alternative in segments[1:]:  # `participants list | suspend 0x…`
                yield Mention(first[0], tuple(_words(alternative)), line)
        elif last is not None:
            yield Mention(last.sub, last.words, f"{line} (after {last.text})", tuple(_words(line)))


def cli_help_for(documents: list[Document]) -> CliHelp:
    """The help of p2p-grid, of every sub-command the documents name, and of their nested ones."""
    helps = CliHelp()
    helps.load({()})
    top = helps.get(())
    assert top is not None and "serve" in top.commands
    named = [m for doc in documents for m in mentions(doc)]
    helps.load({(m.sub,) for m in named if m.sub in top.commands})
    nested = set()
    for m in named:
        sub_help = helps.get((m.sub,))
        if sub_help and sub_help.commands and m.words and m.words[0] in sub_help.commands:
            nested.add((m.sub, m.words[0]))
    helps.load(nested)
    return helps


def command_problems(doc: Document, helps: CliHelp) -> Iterator[str]:
    top = helps.get(())
    assert top is not None
    for mention in mentions(doc):
        if mention.sub not in top.commands:
            yield f"{mention.text}: p2p-grid has no command {mention.sub!r}"
            continue
        command, accepted = (mention.sub,), helps.get((mention.sub,))
        assert accepted is not None, command
        args = list(mention.words)
        if accepted.commands:
            if not args:
                continue  # the command group itself, e.g. `p2p-grid audit …`
            if args[0] not in accepted.commands:
                names = ", ".join(accepted.commands)
                yield f"{mention.text}: p2p-grid {mention.sub} needs one of {names}"
                continue
            command = (mention.sub, args.pop(0))
            accepted = helps.get(command)
            assert accepted is not None, command
        if mention.lone:
            yield from argument_problems(mention.text, command, accepted, list(mention.lone), True)
        else:
            yield from argument_problems(mention.text, command, accepted, args, False)


def argument_problems(
    text: str, command: tuple[str, ...], accepted: Help, args: list[str], lone: bool
) -> Iterator[str]:
    """Options must exist; the first positional word must be one of the choices, if any."""
    positional_seen = lone
    skip_value = False
    for word in args:
        if skip_value:
            skip_value = False
            continue
        if word.startswith("-") and len(word) > 1:
            option = word.split("=", 1)[0]
            if option not in accepted.options:
                yield f"{text}: p2p-grid {' '.join(command)} has no option {option}"
            skip_value = accepted.options.get(option, False) and "=" not in word
        elif not positional_seen:
            positional_seen = True
            if accepted.choices and word not in accepted.choices:
                yield f"{text}: {word!r} is not one of {', '.join(accepted.choices)}"


# Mistakes planted for the check to find, so that it is known to be able to fail.
_PLANTED = """\
```sh
p2p-grid serve --config examples/grid.toml   # fine
p2p-grid serve --no-such-option
p2p-grid nonsense
p2p-grid participants list | evict 0x…
p2p-grid audit --since 2026-01-01T00:00:00Z
p2p-grid audit verify --since 2026-01-01T00:00:00Z --fast
```

Then `--workers 2` and `--turbo`. `./scripts/demo --households 5 --colour`
"""


def test_commands_exist_in_the_cli(documents: dict[str, Document], tmp_path: Path) -> None:
    """One test, not one per document: its ~20 `--help` runs then happen once under xdist."""
    planted = tmp_path / "planted.md"
    planted.write_text(_PLANTED, encoding="utf-8")
    probe = read_document(planted)
    helps = cli_help_for([*documents.values(), probe])

    found = [p.rsplit(": ", 1)[1] for p in command_problems(probe, helps)]
    assert found == [
        "p2p-grid serve has no option --no-such-option",
        "p2p-grid has no command 'nonsense'",
        "'evict' is not one of list, suspend, reinstate, remove",
        "p2p-grid audit needs one of verify, roots, receipt",
        "p2p-grid audit verify has no option --fast",
        "p2p-grid audit verify has no option --turbo",
        "p2p-grid demo has no option --colour",
    ]
    named = {m.sub for doc in documents.values() for m in mentions(doc)}
    assert {"serve", "invite", "participants", "ledger", "demo", "clear", "bench", "audit"} <= named

    problems = {name: list(command_problems(doc, helps)) for name, doc in documents.items()}
    assert {name: found for name, found in problems.items() if found} == {}


# --- files and Python names ---------------------------------------------------------------

_PATH = re.compile(rf"^(?:\./)?((?:{'|'.join(TOP_LEVEL)})/[\w./@-]*)$")
_DOTTED = re.compile(r"^((?:p2p_energy_client|grid_server)(?:\.\w+)+)(?:\(.*\))?$")


def named_paths(doc: Document) -> Iterator[str]:
    for kind, language, text in doc.code:
        if kind == "block" and language not in SHELL_BLOCKS:
            continue
        for word in text.split():
            match = _PATH.match(word.strip("`'\",;:()[]"))
            if match:
                yield match.group(1).rstrip(".")


def named_objects(doc: Document) -> Iterator[str]:
    for kind, _, text in doc.code:
        match = _DOTTED.match(text) if kind == "span" else None
        if match:
            yield match.group(1)


def resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and look the rest up on it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            found: object = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not name.startswith(exc.name):
                raise  # the module exists but an import inside it failed
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("name", [rel(p) for p in DOCUMENTS])
def test_named_files_and_python_names_exist(name: str, documents: dict[str, Document]) -> None:
    doc = documents[name]
    missing = [p for p in named_paths(doc) if not (ROOT / p).exists()]
    unknown = []
    for dotted in named_objects(doc):
        try:
            resolve(dotted)
        except (ModuleNotFoundError, AttributeError) as exc:
            unknown.append(f"{dotted}: {exc}")
    assert (missing, unknown) == ([], [])


# --- error codes ------------------------------------------------------------------------------


def error_codes_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("error_codes", ROOT / "scripts/error_codes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_error_code_has_a_status_and_a_meaning() -> None:
    assert set(ERRORS) == set(ErrorCode)
    for code, (status, meaning) in ERRORS.items():
        assert 400 <= status < 600, code
        assert meaning.strip() and meaning.endswith("."), code


def test_error_codes_page_is_generated_from_the_code() -> None:
    """Fails when a code or its meaning changed: run `.venv/bin/python scripts/error_codes.py`."""
    script = error_codes_script()
    committed = (ROOT / "docs/developers/error-codes.md").read_text(encoding="utf-8")
    assert committed == script.render()
    for code, (status, meaning) in ERRORS.items():
        assert f"| `{code}` | {status} | {meaning} |" in committed
