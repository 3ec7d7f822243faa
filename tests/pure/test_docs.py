"""The commands the README and docs/ show exist: every `make` target in the Makefile, every
`montrg` verb in the CLI (its options too), every `python -m` module in the checkout, and every
docs/ page a link names."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from flows.ops.cli import parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def commands(inline: bool = True) -> list[tuple[str, list[str]]]:
    """(page, words) of every command line in the pages' bash code blocks, and (with `inline`) in
    their inline `code` (where a command may be named without its arguments)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
        lines = [line for block in blocks for line in block.splitlines()]
        if inline:
            lines += re.findall(r"`((?:\.venv/bin/)?(?:make|montrg|python) [^`]+)`", text)
        for line in lines:
            line = line.split(" #")[0].strip()
            for part in re.split(r"&&|\|", line):
                try:
                    words = shlex.split(part)
                except ValueError:
                    continue
                if words:
                    found.append((page.name, words))
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_every_make_target_the_docs_name_exists():
    named = {(page, w[1]) for page, w in commands() if w[0] == "make" and len(w) > 1 and "=" not in w[1]}
    assert named, "no make command found: the parsing is off"
    missing = {(page, target) for page, target in named if target not in make_targets()}
    assert not missing


def test_every_montrg_verb_the_docs_name_exists():
    cli = parser()
    for page, words in commands():
        if words[0].endswith("montrg"):
            verbs = [w for w in words[1:3] if re.fullmatch(r"[a-z]+", w)]
            with pytest.raises(SystemExit) as shown:
                cli.parse_args([*verbs, "--help"])
            assert shown.value.code == 0, f"{page}: montrg {' '.join(verbs)} is no command"


def test_every_montrg_command_in_the_code_blocks_parses():
    used = [(page, w[1:]) for page, w in commands(inline=False) if w[0].endswith("montrg")]
    assert len(used) > 10
    cli = parser()
    for page, args in used:
        if "..." in args:  # "montrg --debug ...": any command
            continue
        args = [a if not re.fullmatch(r"[A-Z][A-Z_-]*|\.\.\.", a) else "X" for a in args]  # placeholders
        try:
            cli.parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"{page}: montrg {' '.join(args)} does not parse ({exc})")


def test_every_python_module_the_docs_run_exists():
    modules = {w[w.index("-m") + 1] for _, w in commands() if "-m" in w and w[0].endswith("python")}
    assert modules
    for module in modules - {"pytest"}:
        path = ROOT / module.replace(".", "/")
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), module


def test_every_docs_page_a_link_names_exists():
    for page in PAGES:
        for target in re.findall(r"\]\(((?:docs/)?[a-z-]+\.md)\)", page.read_text()):
            base = ROOT if page.parent == ROOT else page.parent
            assert (base / target).exists() or (ROOT / target).exists(), f"{page.name} links {target}"
