"""The `command` backend: any harness, from a command template.

The template is a shell command with placeholders, each already shell-quoted: `{prompt}`,
`{prompt_file}`, `{brief}`, `{workdir}`, `{cell}`, `{model}` and `{model_opt}` (`--model M`
or nothing). Examples: `claude -p {prompt}`, `gptme -n --no-stream {model_opt} {prompt}`.
It runs in the cell's workdir in a new session (`setsid`), detached from the factory, so it
outlives a foreman that is interrupted; output goes to a runtime file that ends with
`EXIT_CODE=N`, like gptodo's.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from ...errors import CellError, UsageError
from .. import proctree
from ..state import CellRecord
from . import LaunchSpec, output_exit_code

DEFAULT_TEMPLATE = "gptme -n {model_opt} {prompt}"
ENV_TEMPLATE = "GPTME_FACTORY_CELL_COMMAND"


def render_command(template: str, spec: LaunchSpec) -> str:
    """Fill a command template (every value shell-quoted)."""
    q = shlex.quote
    values = {
        "prompt": q(spec.prompt), "prompt_file": q(str(spec.prompt_file)),
        "brief": q(str(spec.brief_file)), "workdir": q(str(spec.workdir)), "cell": q(spec.cell),
        "model": q(spec.model or ""), "model_opt": f"--model {q(spec.model)}" if spec.model else "",
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"bad command template {template!r}: {exc}; placeholders are "
            + ", ".join("{" + k + "}" for k in values)
        ) from None


class CommandBackend:
    """Cells as detached shell commands."""

    name = "command"

    def launch(self, spec: LaunchSpec, rec: CellRecord) -> None:
        """Start the command detached, in its own session."""
        template = spec.command or os.environ.get(ENV_TEMPLATE) or DEFAULT_TEMPLATE
        command = render_command(template, spec)
        out = spec.runtime_dir / "output" / f"{spec.cell}.output"
        out.parent.mkdir(parents=True, exist_ok=True)
        q = shlex.quote
        wrapped = f"( {command} ) > {q(str(out))} 2>&1 < /dev/null; echo EXIT_CODE=$? >> {q(str(out))}"
        proc = subprocess.run(
            ["bash", "-c", f"setsid bash -c {q(wrapped)} > /dev/null 2>&1 < /dev/null & echo $!"],
            cwd=spec.workdir, capture_output=True, text=True, check=False)
        pid_text = proc.stdout.strip()
        if proc.returncode != 0 or not pid_text.isdigit():
            raise CellError(f"could not start `{command[:200]}`: {proc.stderr.strip()}")
        pid = int(pid_text)
        rec.session = f"pid:{pid}"
        rec.pid, rec.pid_start = pid, proctree.start_ticks(pid)
        rec.output_file = str(out)
        rec.extra["command"] = template

    def alive(self, rec: CellRecord) -> bool:
        """The command's process runs."""
        return proctree.alive(rec.pid, rec.pid_start)

    def stop(self, rec: CellRecord) -> None:
        """Kill the command and everything it started."""
        proctree.kill_tree(rec.pid, rec.pid_start)

    def finalize(self, rec: CellRecord, outcome: str) -> None:
        """Nothing to refresh."""

    def exit_code(self, rec: CellRecord) -> int | None:
        """From the `EXIT_CODE=N` line the launch wrapper appended."""
        return output_exit_code(rec)


BACKEND = CommandBackend()
