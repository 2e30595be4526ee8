"""The README's CLI reference, generated from the commands themselves.

`python -m gptme_factory.cli.reference` prints the Markdown block; `--write README.md` replaces
the block between the `cli-reference` markers. tests/test_readme.py fails when the README's
block differs from what `--help` says, so the reference cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

START = "<!-- cli-reference:start (generated: python -m gptme_factory.cli.reference --write README.md) -->"
END = "<!-- cli-reference:end -->"


def _command_markdown(name: str, cmd: click.Command, ctx: click.Context) -> list[str]:
    sub = click.Context(cmd, info_name=name, parent=ctx)
    usage = " ".join(cmd.collect_usage_pieces(sub))
    lines = [f"### `gptme-factory {name}`", "", f"`gptme-factory {name} {usage}`".rstrip(), ""]
    help_text = (cmd.help or "").strip()
    if help_text:
        lines += [help_text.split("\n\n")[0].replace("\n", " "), ""]
    rows = []
    for param in cmd.get_params(sub):
        if not isinstance(param, click.Option):
            continue  # arguments are in the usage line (click >= 8.5 gives them help records)
        record = param.get_help_record(sub)
        if record is None:
            continue
        opts, desc = record
        if opts.startswith(("--repo", "--help", "-h, --help")):
            continue  # common to every command: described once above the reference
        rows.append(f"| `{opts}` | {desc.replace('|', '/')} |")
    if rows:
        lines += ["| option | meaning |", "|---|---|", *rows, ""]
    return lines


def render() -> str:
    """The whole generated block, markers included."""
    from . import main

    ctx = click.Context(main, info_name="gptme-factory")
    out = [START, "", "Every command also takes `--repo PATH` (the brain repo; default: the current "
           "directory or `$GPTME_FACTORY_REPO`) and `-h/--help`.", ""]
    for name in main.list_commands(ctx):
        cmd = main.get_command(ctx, name)
        if cmd is not None and not cmd.hidden:
            out += _command_markdown(name, cmd, ctx)
        if isinstance(cmd, click.Group):  # `target add`, `target list`, ...
            sub_ctx = click.Context(cmd, info_name=name, parent=ctx)
            for sub in cmd.list_commands(sub_ctx):
                subcmd = cmd.get_command(sub_ctx, sub)
                if subcmd is not None and not subcmd.hidden:
                    out += _command_markdown(f"{name} {sub}", subcmd, sub_ctx)
    out.append(END)
    return "\n".join(out)


def replace_block(text: str, block: str) -> str:
    """`text` with its generated block replaced by `block`."""
    head, sep, rest = text.partition(START.split(" (")[0])
    if not sep:
        raise SystemExit(f"no {START!r} marker in the file")
    _, sep2, tail = rest.partition(END)
    if not sep2:
        raise SystemExit(f"no {END!r} marker in the file")
    return head + block + tail


def main_entry(argv: list[str]) -> None:
    """Print, or with `--write FILE` update, the reference block."""
    block = render()
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_block(path.read_text(), block))
    else:
        print(block)


if __name__ == "__main__":
    main_entry(sys.argv[1:])
