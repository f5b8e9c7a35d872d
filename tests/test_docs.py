"""The docs cannot drift from the code: every command they show parses, every model and data module is in them.

Each `python -m lightning_app...` command in README.md and docs/*.md (in code blocks, continued
lines joined, and in inline code) is parsed as written, from the repository root: the CLI's verbs
with `--print_config` (or their own `--help`), `generate` likewise, `compare` and `sweep` by their
argument parsers. Placeholders (`<run id>`, `$k`, `${SLURM_JOB_ID}`) stand for any value.
"""

import re
import shlex
from pathlib import Path

import pytest
from jsonargparse import CLI

from lightning_app import compare, generate
from lightning_app.cli import main
from tests.fakes import exported_datamodules, exported_models

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNS = re.compile(r"(?:python\S*|torchrun)\s.*?-m\s+(lightning_app(?:\.\w+)?)(?=\s|$)(.*)")


def snippets(text: str) -> list[str]:
    """The lines of every code block (backslash continuations joined) and every inline code span."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def tokens(arguments: str) -> list[str]:
    arguments = re.sub(r"<[^<>]+>", "placeholder", arguments)  # runs/lightning_app/<run id>/...
    arguments = re.sub(r"\$\{?\w+\}?", "1", arguments)  # shell variables
    return shlex.split(arguments, comments=True)


def commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in PAGES:
        for snippet in snippets(page.read_text()):
            match = RUNS.search(snippet)
            if match:
                found.append((page.relative_to(ROOT).as_posix(), match.group(1), tokens(match.group(2))))
    return found


COMMANDS = commands()
STAND_IN = "configs/digits_mlp.yaml"


def test_the_docs_show_commands():
    assert len(COMMANDS) > 40 and {module for _, module, _ in COMMANDS} >= {
        "lightning_app", "lightning_app.generate", "lightning_app.compare", "lightning_app.sweep"
    }  # fmt: skip


@pytest.mark.parametrize(("page", "module", "arguments"), COMMANDS, ids=[f"{p}:{' '.join(a)[:60]}" for p, _, a in COMMANDS])
def test_each_command_parses(page, module, arguments, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # commands name configs/... from the repository root
    assert "..." not in arguments, f"{page}: write the whole command, not `...`: {arguments}"
    if module == "lightning_app.compare":
        compare.parser().parse_args(arguments)
        return
    if module == "lightning_app.sweep":
        from lightning_app.sweep.driver import parse_args
        from lightning_app.sweep.file import read_sweep_or_config

        args = parse_args(arguments)
        read_sweep_or_config(args.sweep, args.metric, args.goal)
        return
    # A config a run writes (a sweep's best.yaml): the shipped config it comes from stands in for it.
    arguments = [STAND_IN if a.startswith("runs/") and a.endswith(".yaml") else a for a in arguments]
    asks_help = any(a == "--help" or a.endswith(".help") for a in arguments)
    with pytest.raises(SystemExit) as exit:
        if module == "lightning_app.generate":
            CLI(generate.generate, as_positional=False, args=[*arguments, "--print_config"])
        else:
            assert module == "lightning_app", f"{page}: no parser check for python -m {module}"
            main(arguments if asks_help else [*arguments, "--print_config"])
    assert exit.value.code in (0, None), f"{page}: `{module} {' '.join(arguments)}` does not parse:\n{capsys.readouterr().err}"


@pytest.mark.parametrize(
    ("package", "exported", "page"),
    [("modules", exported_models, "docs/models.md"), ("datamodules", exported_datamodules, "docs/data.md")],
)
def test_every_exported_class_is_in_the_readme_and_its_page(package, exported, page):
    readme, text = (ROOT / "README.md").read_text(), (ROOT / page).read_text()
    names = [cls.__name__ for cls in exported()]
    missing = [name for name in names if f"`{package}.{name}`" not in text or f"`{name}`" not in readme]
    assert names and not missing, f"{', '.join(missing)}: add them to {page} and to the README's table"
