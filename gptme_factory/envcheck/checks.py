"""Telling a verification command that could not run at all from one that ran and failed.

`classify_check(command, exit_code, output)` returns an `EnvironmentFailure` only when the
output carries the exact line of a shell, wrapper or interpreter that failed to *start* a
program, and the exit status agrees. Lines as captured from `bash -c` (bash 5.2, coreutils
9, CPython 3.11 on this machine):

    bash: line 1: pytest: command not found                       (127)
    sh: 1: pytest: not found                                      (127, dash)
    ./run.sh: line 2: pytest: command not found                   (127, inside a script)
    bash: line 1: /opt/x/bin/tool: No such file or directory      (127)
    bash: line 1: /usr/local/bin/tool: Permission denied          (126)
    bash: line 1: ./x.py: cannot execute: required file not found (127, #! interpreter gone)
    bash: line 1: ./x.py: /usr/bin/python9: bad interpreter: No such file or directory (126)
    /usr/bin/env: 'python': No such file or directory             (127, quotes vary by locale)
    timeout: failed to run command 'pytest': No such file or directory (127)
    make: pytest: No such file or directory  + make: *** [Makefile:2: test] Error 127 (2)
    /usr/bin/python3: No module named pytest                      (1, `python3 -m pytest`)
    /usr/bin/python3: Error while finding module specification for 'a.b'
        (ModuleNotFoundError: No module named 'a')                (1, `python3 -m a.b`)

What is deliberately *not* an environment failure (the tree or the work is at fault, and
rework is the right answer):

- `bash: line 1: cd: sample: No such file or directory` (exit 1): the tree lacks the folder.
- A relative program that is missing, not executable or a folder (`./run_tests.sh: No such
  file or directory`, `Permission denied`): the tree lacks it or lacks its mode bit.
- Any ImportError/ModuleNotFoundError inside a run of a working test runner (pytest prints
  `E   ModuleNotFoundError: No module named 'app'`; `python -c "import app"` prints a
  traceback): the code under test failed, not the machine.
- `<python>: No module named pkg.sub` (the parent package was found, only the submodule is
  missing: the project's own layout), and a `No module named X` line whose X is not the
  module the command runs with `-m`.
- A line that matches but disagrees with the exit status (pytest exits 1 even when a test's
  captured output shows `bash: line 1: tool: command not found`), a timeout (exit None) and
  success (exit 0).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import NamedTuple

from .failure import EnvironmentFailure, FailureKind, failure, plain_lines

# `WHO: [line] N: [exec: ]PROG: MESSAGE` -- bash (`line N`), dash (`N`), a script run by bash.
_SHELL = re.compile(
    r"^(?P<who>\S+): (?:line )?\d+: (?:exec: )?(?P<prog>[^:]+): (?P<msg>command not found|not found"
    r"|No such file or directory|Permission denied|Is a directory"
    r"|cannot execute: required file not found|cannot execute binary file(?:: Exec format error)?)$"
)
_SHELL_NOLINE = re.compile(
    r"^(?P<who>(?:/usr)?(?:/bin/)?(?:bash|sh|dash)): (?P<prog>[^:]+): "
    r"(?P<msg>command not found|No such file or directory|Permission denied)$"
)
_ZSH = re.compile(r"^zsh:\d*:? ?(?P<msg>command not found|no such file or directory): (?P<prog>.+)$")
_BAD_INTERPRETER = re.compile(
    r"^\S+: (?:line )?\d+: (?P<prog>[^:]+): (?P<interp>[^:]+): bad interpreter: .+$"
)
_WRAPPER = re.compile(
    r"^(?P<who>(?:/usr)?(?:/bin/)?(?:env|timeout|nice|nohup|xargs|stdbuf)): "
    r"(?:failed to run command )?[‘'\"]?(?P<prog>[^’'\"]+?)[’'\"]?: "
    r"(?P<msg>No such file or directory|Permission denied)$"
)
_MAKE = re.compile(r"^make(?:\[\d+\])?: (?P<prog>[^:*][^:]*): (?P<msg>No such file or directory|Permission denied)$")
_MAKE_CANNOT_RUN = re.compile(r"^make(?:\[\d+\])?: \*\*\* .*\bError 12[67]$")
_NO_MODULE = re.compile(r"^(?P<py>.*?): No module named (?P<mod>[A-Za-z_][\w.]*)$")
_NO_MODULE_SPEC = re.compile(
    r"^(?P<py>.*?): Error while finding module specification for '(?P<req>[\w.]+)' "
    r"\((?:ModuleNotFoundError|ImportError): No module named '(?P<mod>[\w.]+)'\)$"
)
_PYTHON = re.compile(r"^(?:python|pypy)[\d.]*$")
_INTERPRETER = re.compile(r"^(?:python|pypy|node|nodejs|ruby|perl|php|lua|Rscript|deno|bun|java)[\d.]*$")
_PIP_TOOLS = frozenset({
    "pytest", "mypy", "ruff", "black", "flake8", "isort", "pylint", "pyright", "coverage",
    "tox", "nox", "hatch", "poetry", "pdm", "uv", "pre-commit", "bandit", "sphinx-build",
})
_NOT_FOUND = ("command not found", "not found", "No such file or directory")


class ShellComplaint(NamedTuple):
    """One line in which a shell or wrapper says it could not start `program`."""

    line: str
    program: str
    message: str
    by_env: bool = False  # said by `env`: a `#!/usr/bin/env X` line, unless the command ran env


def shell_complaints(lines: Iterable[str]) -> list[ShellComplaint]:
    """Every line in which a shell, `env`-like wrapper or make could not start a program."""
    found: list[ShellComplaint] = []
    for raw in lines:
        line = raw.strip()
        if m := _BAD_INTERPRETER.match(line):
            found.append(ShellComplaint(line, m["interp"].strip(), "bad interpreter"))
        elif m := _WRAPPER.match(line):
            found.append(ShellComplaint(line, m["prog"].strip(), m["msg"],
                                        os.path.basename(m["who"]) == "env"))
        elif m := _SHELL.match(line) or _SHELL_NOLINE.match(line) or _MAKE.match(line):
            found.append(ShellComplaint(line, m["prog"].strip(), m["msg"]))
        elif m := _ZSH.match(line):
            found.append(ShellComplaint(line, m["prog"].strip(), "command not found"))
    return found


def is_interpreter(program: str) -> bool:
    """True for python, python3.11, node, ruby, ... (by the program's base name)."""
    return bool(_INTERPRETER.match(os.path.basename(program)))


def missing_kind(program: str) -> FailureKind:
    """The kind of failure a missing `program` is: an interpreter or any other command."""
    return "missing_interpreter" if is_interpreter(program) else "command_not_found"


def install_hint(program: str) -> str:
    """One sentence saying how to get `program` onto the checks' PATH."""
    name = os.path.basename(program)
    if name in _PIP_TOOLS:
        return (f"install {name} in the target's environment (pip install {name}) so it is on "
                "the checks' PATH, or change the command")
    if _PYTHON.match(name):
        return (f"install {name} on this machine (e.g. apt-get install python3), or change the "
                "command to an interpreter that exists (python3)")
    if is_interpreter(name):
        return f"install {name} on this machine, or change the command to an interpreter that exists"
    return f"install {program} on this machine so the checks can run it, or change the command"


def complaint_failure(c: ShellComplaint, command: str = "") -> EnvironmentFailure | None:
    """The environment failure a complaint means, or None when the tree is at fault."""
    prog = c.program
    if c.by_env and not re.search(r"(?:^|[\s;&|(/])env\s", command):
        return failure("missing_interpreter", c.line,
                       f"install {prog} (named by a script's #!/usr/bin/env line), or fix that "
                       "line to name an interpreter that exists")
    relative = "/" in prog and not prog.startswith("/")
    if c.message == "bad interpreter":
        return failure("missing_interpreter", c.line,
                       f"install {prog} (the #! interpreter of the script), or fix the script's "
                       "first line to name one that exists")
    if c.message == "cannot execute: required file not found":
        return failure("missing_interpreter", c.line,
                       f"install the interpreter named on the first line (#!) of {prog}, or fix "
                       "that line to name one that exists")
    if relative or c.message == "Is a directory":
        return None  # the tree lacks the file, its mode bit, or names a folder: real failure
    if c.message in _NOT_FOUND:
        return failure(missing_kind(prog), c.line, install_hint(prog))
    return failure("not_executable", c.line,
                   f"make {prog} executable (chmod +x) or reinstall it so the checks can run it")


def _runs_module(command: str, module: str) -> bool:
    """Whether `command` runs `module` with `-m` (as `-m mod` or `-mmod`)."""
    pattern = rf"(?:^|[\s;&|(])-m\s*{re.escape(module)}(?=$|[\s;&|)])"
    return re.search(pattern, command) is not None


def _missing_module(command: str, lines: list[str]) -> EnvironmentFailure | None:
    for raw in lines:
        line = raw.strip()
        spec = _NO_MODULE_SPEC.match(line)
        plain = None if spec else _NO_MODULE.match(line)
        m = spec or plain
        if m is None:
            continue
        py = m["py"].strip()
        if py and not _PYTHON.match(os.path.basename(py)):
            continue
        requested = spec["req"] if spec else m["mod"]
        missing = m["mod"]
        if plain and "." in missing:
            continue  # the package was found, only its submodule is missing: the tree's layout
        if not _runs_module(command, requested):
            continue
        python = py or "python"
        top = missing.split(".")[0]
        return failure("missing_module", line,
                       f"install {top} in the target's environment ({python} -m pip install "
                       f"{top}), or change the command")
    return None


def classify_check(command: str, exit_code: int | None, output: str) -> EnvironmentFailure | None:
    """An environment failure when `command` could not run at all; None for a real failure."""
    if exit_code is None or exit_code == 0:
        return None  # a timeout is the work's problem; success is nobody's
    lines = plain_lines(output)
    cannot_run = exit_code in (126, 127) or any(_MAKE_CANNOT_RUN.match(ln.strip()) for ln in lines)
    if cannot_run:
        for complaint in shell_complaints(lines):
            found = complaint_failure(complaint, command)
            if found is not None:
                return found
        return None
    if exit_code == 1:
        return _missing_module(command, lines)
    return None
