"""Pre-flight for a plan's verification commands: is every program they start there.

`unresolved_commands(commands, cwd, env)` reads each shell command (never runs it), finds
the programs it would start and checks them: `cd DIR` moves the folder later parts run in
(subshells restore it), `A && B`, `A || B`, `A; B`, `A | B` and newlines split commands,
`VAR=x cmd` and `env [-i] [-u N] X=1 cmd` are looked through (a `PATH=` there changes the
lookup), as are `command`, `exec`, `time`, `nohup`, `nice`, `timeout` and `bash -c '...'`.
Shell builtins and keywords are fine. A bare name is looked up on env's PATH; an absolute
path must exist and be executable; a script's `#!` interpreter must exist. For
`<python> -m <module>` that interpreter is asked, in `cwd` with `env`, whether it can find the
module's top-level package (`importlib.util.find_spec`, which imports nothing for a
top-level name, so no project code runs).

Conservative by design: it reports only what is certain to fail.
- A relative program (`./run_tests.sh`, `.venv/bin/pytest`) that is missing or not
  executable is the tree's business (the build may still create it), so it is not reported;
  one that exists is still checked for its interpreter and `-m` module.
- A `cd` into a folder that does not exist (yet) ends the reading of that command.
- Command substitution, process substitution, here-documents, backquotes, functions, `for`,
  `case`, `select`, `eval`, `source`, `alias`, programs named by a variable or a glob, and
  anything shlex cannot split: that command (or the rest of it) is not judged.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .checks import install_hint, missing_kind
from .failure import EnvironmentFailure, failure

_PROBE = "import importlib.util,sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)"
_PROBE_TIMEOUT_S = 20.0
_UNSURE_TEXT = ("$(", "`", "<(", ">(", "<<", "((", "[[")  # `[[ a && b ]]` is one test
_FUNCTION = re.compile(r"(?:^|[\s;&|])(?:function\s+\w|[\w.-]+\s*\(\s*\))")
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = ("&&", "||", ";;", "|&", "&>>", "&>", ">>", ">&", "<&", ">|", "<>", ";", "&", "|",
              "(", ")", "<", ">", "\n")
_SEPARATORS = frozenset({"&&", "||", ";;", "|&", ";", "&", "|", "\n"})
_REDIRECTS = frozenset({"&>>", "&>", ">>", ">&", "<&", ">|", "<>", "<", ">"})
_PUNCT = "();<>|&\n"
_BUILTINS = frozenset(
    "alias bg bind break builtin caller cd command compgen complete compopt continue declare "
    "dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs "
    "kill let local logout mapfile popd printf pushd pwd read readarray readonly return set "
    "shift shopt source suspend test times trap true type typeset ulimit umask unalias unset "
    "wait . : [ [[ ]] ".split()
)
_PREFIX_KEYWORDS = frozenset({"!", "{", "}", "if", "then", "else", "elif", "do", "while",
                              "until", "fi", "done"})
_GIVE_UP_KEYWORDS = frozenset({"for", "case", "select", "function", "coproc", "esac", "in"})
_STOPPERS = frozenset({"eval", "source", ".", "alias", "unalias", "unset", "hash", "pushd",
                       "popd", "enable", "builtin"})
_SHELLS = frozenset({"bash", "sh", "dash", "zsh"})
_PYTHON = re.compile(r"^(?:python|pypy)[\d.]*$")


class _Unsure(Exception):
    """The rest of this command cannot be judged with certainty: report nothing more."""


@dataclass(frozen=True)
class _Scope:
    cwd: Path
    env: Mapping[str, str]


def _split_punct(token: str) -> list[str]:
    out: list[str] = []
    while token:
        op = next((o for o in _OPERATORS if token.startswith(o)), None)
        if op is None:
            raise _Unsure(token)
        out.append(op)
        token = token[len(op):]
    return out


def _tokens(command: str) -> list[tuple[str, bool]]:
    """(token, is_operator) with quotes kept on words (so a quoted `;` stays a word)."""
    lexer = shlex.shlex(command, posix=False, punctuation_chars=_PUNCT)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    lexer.commenters = ""  # a `#` comment ends at the newline, which must stay a separator
    try:
        raw = list(lexer)
    except ValueError as e:
        raise _Unsure(str(e)) from e
    out: list[tuple[str, bool]] = []
    in_comment = False  # a `#` word starts a comment, which the next newline ends
    for tok in raw:
        if tok and tok[0] in _PUNCT and all(c in _PUNCT for c in tok):
            ops = _split_punct(tok)
            if in_comment:
                if "\n" not in ops:
                    continue
                ops = ops[ops.index("\n"):]
                in_comment = False
            out.extend((op, True) for op in ops)
        elif in_comment:
            continue
        elif tok.startswith("#"):
            in_comment = True
        else:
            out.append((tok, False))
    return out


def _unquote(word: str) -> str:
    try:
        parts = shlex.split(word)
    except ValueError as e:
        raise _Unsure(word) from e
    if len(parts) != 1:
        raise _Unsure(word)
    return parts[0]


def _plain(word: str, scope: _Scope) -> str:
    """A word that names a program or folder, with `~/` expanded; unsure about `$`, globs."""
    value = _unquote(word)
    if "$" in value or any(c in value for c in "*?[") or value == "":
        raise _Unsure(value)
    if value == "~" or value.startswith("~/"):
        home = scope.env.get("HOME")
        if not home:
            raise _Unsure(value)
        value = home + value[1:]
    elif value.startswith("~"):
        raise _Unsure(value)
    return value


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _which(program: str, scope: _Scope) -> Path | None:
    path = scope.env.get("PATH")
    if path is None:
        raise _Unsure("no PATH")
    for entry in path.split(os.pathsep):
        folder = Path(entry or ".")
        candidate = (folder if folder.is_absolute() else scope.cwd / folder) / program
        if _is_executable(candidate):
            return candidate
    return None


def _shebang(path: Path) -> list[str]:
    try:
        with path.open("rb") as f:
            head = f.read(256)
    except OSError:
        return []
    if not head.startswith(b"#!"):
        return []
    return head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()


class _Reader:
    """Walks one command's segments, collecting the failures it is certain about."""

    def __init__(self, command: str, cwd: Path, env: Mapping[str, str]) -> None:
        self.command = command
        self.found: dict[tuple[str, str], EnvironmentFailure] = {}  # (kind, program) -> failure
        self.scope = _Scope(cwd, env)

    def add(self, program: str, item: EnvironmentFailure) -> None:
        self.found.setdefault((item.kind, program), item)

    def run(self) -> dict[tuple[str, str], EnvironmentFailure]:
        text = self.command.replace("\\\n", " ")
        try:
            if any(s in text for s in _UNSURE_TEXT) or _FUNCTION.search(text):
                raise _Unsure("complex syntax")
            self._read(_tokens(text), depth=0)
        except _Unsure:
            pass
        return self.found

    def _read(self, tokens: list[tuple[str, bool]], depth: int) -> None:
        stack: list[_Scope] = []
        segment: list[str] = []
        skip_next = False
        for tok, is_op in [*tokens, (";", True)]:
            if skip_next:
                skip_next = False
                if not is_op:
                    continue
            if not is_op:
                segment.append(tok)
                continue
            if tok in _REDIRECTS:
                if segment and segment[-1].isdigit():
                    segment.pop()  # `2>&1`: the fd number is not a word of the command
                skip_next = True
                continue
            if segment:
                self._segment(segment, depth)
                segment = []
            if tok == "(":
                stack.append(self.scope)
            elif tok == ")":
                if not stack:
                    raise _Unsure("unbalanced )")
                self.scope = stack.pop()

    def _segment(self, words: list[str], depth: int) -> None:
        while words and words[0] in _PREFIX_KEYWORDS:
            words = words[1:]
        if not words:
            return
        if words[0] in _GIVE_UP_KEYWORDS:
            raise _Unsure(words[0])
        scope = self.scope
        i = 0
        while i < len(words) and _ASSIGN.match(words[i]):
            scope = self._assign(scope, words[i])
            i += 1
        if i == len(words):
            if scope.env.get("PATH") != self.scope.env.get("PATH"):
                self.scope = scope  # `PATH=...;` changes the lookup of what follows
            return
        self._program(words[i:], scope, depth)

    def _assign(self, scope: _Scope, word: str) -> _Scope:
        name, _, raw = _unquote(word).partition("=")
        if name != "PATH":
            return scope
        value = raw.replace("${PATH}", "$PATH").replace("$PATH", scope.env.get("PATH", ""))
        if "$" in value:
            raise _Unsure(word)
        entries = value.split(os.pathsep)
        if any(e == "~" or e.startswith("~") for e in entries):  # bash expands `~` after `=`, `:`
            home = scope.env.get("HOME")
            if not home or any(e.startswith("~") and e != "~" and not e.startswith("~/")
                               for e in entries):
                raise _Unsure(word)
            entries = [home + e[1:] if e.startswith("~") else e for e in entries]
        return replace(scope, env={**scope.env, "PATH": os.pathsep.join(entries)})

    def _program(self, words: list[str], scope: _Scope, depth: int) -> None:
        word = _unquote(words[0])
        program = word if word in _BUILTINS or word in _PREFIX_KEYWORDS else _plain(words[0], scope)
        args = words[1:]
        if program in _STOPPERS or program.startswith("-"):
            raise _Unsure(program)
        if program == "cd":
            self._cd(args, scope)
            return
        if program in ("export", "declare", "typeset", "local", "readonly"):
            for word in args:
                if _ASSIGN.match(word) and _unquote(word).startswith("PATH="):
                    self.scope = self._assign(self.scope, word)
            return
        if program in ("command", "exec", "time"):
            rest = list(args)
            while rest and rest[0].startswith("-"):
                flag = rest.pop(0)
                if program == "command" and flag in ("-v", "-V"):
                    return  # a query, not a run
                if program == "exec" and flag == "-a" and rest:
                    rest.pop(0)
            if rest:
                self._program(rest, scope, depth)
            return
        if program in _BUILTINS or program in _PREFIX_KEYWORDS:
            return
        path = self._resolve(program, scope)
        if path is None:
            return
        self._wrapped(os.path.basename(program), path, args, scope, depth)

    def _cd(self, args: list[str], scope: _Scope) -> None:
        targets = [a for a in args if a != "--"]
        if not targets:
            home = scope.env.get("HOME")
            if not home:
                raise _Unsure("cd")
            targets = [home]
        target = _plain(targets[0], scope)
        if target.startswith("-"):
            raise _Unsure("cd -")
        folder = Path(target) if Path(target).is_absolute() else scope.cwd / target
        if not folder.is_dir():
            raise _Unsure("cd into a folder that is not there")  # the tree's business
        self.scope = replace(self.scope, cwd=folder)

    def _resolve(self, program: str, scope: _Scope) -> Path | None:
        """The program's file, or None after recording why it cannot run (or when unsure)."""
        if "/" in program:
            path = Path(program) if program.startswith("/") else scope.cwd / program
            if program.startswith("/"):
                if not path.exists():
                    self._add_missing(program)
                    return None
                if not _is_executable(path):
                    if path.is_file():
                        self.add(program, failure(
                            "not_executable", f"{program} is not executable (needed by: "
                            f"{self.command})", f"make {program} executable (chmod +x) or "
                            "reinstall it"))
                    return None
            elif not _is_executable(path):
                return None  # the tree lacks it (or its mode bit): a real failure, not ours
        else:
            found = _which(program, scope)
            if found is None:
                self._add_missing(program)
                return None
            path = found
        if not self._interpreter_ok(program, path, scope):
            return None
        return path

    def _add_missing(self, program: str) -> None:
        kind = missing_kind(program)
        where = "does not exist" if "/" in program else "is not on PATH"
        self.add(program, failure(kind, f"{program} {where} (needed by: {self.command})",
                                  install_hint(program)))

    def _interpreter_ok(self, program: str, path: Path, scope: _Scope) -> bool:
        line = _shebang(path)
        if not line:
            return True
        interp = line[0]
        if os.path.basename(interp) == "env":
            names = [w for w in line[1:] if not w.startswith("-") and "=" not in w]
            if not names or _which(names[0], scope) is not None:
                return True
            missing = names[0]
        elif Path(interp).is_absolute() and not Path(interp).exists():
            missing = interp
        else:
            return True
        self.add(missing, failure(
            "missing_interpreter",
            f"{program} starts with #!{' '.join(line)} but {missing} is not there "
            f"(needed by: {self.command})",
            f"install {missing} (or fix the first line of {program})"))
        return False

    def _wrapped(self, name: str, path: Path, args: list[str], scope: _Scope, depth: int) -> None:
        if name == "env":
            self._env(args, scope, depth)
        elif name in ("nohup",) and args:
            self._program(args, scope, depth)
        elif name == "nice":
            rest = list(args)
            if rest and rest[0] == "-n" and len(rest) > 1:
                rest = rest[2:]
            elif rest and (rest[0].startswith("-") or rest[0].startswith("--adjustment")):
                rest = rest[1:]
            if rest:
                self._program(rest, scope, depth)
        elif name == "timeout":
            rest = list(args)
            while rest and rest[0].startswith("-"):
                flag = rest.pop(0)
                if flag in ("-s", "-k", "--signal", "--kill-after") and rest:
                    rest.pop(0)
            if len(rest) > 1:
                self._program(rest[1:], scope, depth)
        elif name in _SHELLS:
            self._shell(args, scope, depth)
        elif _PYTHON.match(name):
            self._python(path, args, scope)

    def _env(self, args: list[str], scope: _Scope, depth: int) -> None:
        rest = list(args)
        while rest and rest[0].startswith("-") and rest[0] != "-":
            flag = rest.pop(0)
            if flag in ("-i", "--ignore-environment"):
                scope = replace(scope, env={})
            elif flag in ("-u", "--unset"):
                if not rest:
                    return
                unset = rest.pop(0)
                scope = replace(scope, env={k: v for k, v in scope.env.items() if k != unset})
            elif flag == "--":
                break
            elif flag in ("-0", "--null", "-v", "--debug"):
                continue
            else:
                raise _Unsure(flag)  # -C DIR, -S STRING, ...: not worth guessing
        while rest and _ASSIGN.match(rest[0]):
            name, _, value = _unquote(rest.pop(0)).partition("=")
            if "$" in value:
                raise _Unsure(value)
            scope = replace(scope, env={**scope.env, name: value})
        if rest:
            self._program(rest, scope, depth)

    def _shell(self, args: list[str], scope: _Scope, depth: int) -> None:
        rest = list(args)
        while rest and rest[0].startswith("-") and rest[0] != "-c":
            flag = rest.pop(0)
            if flag in ("--login", "-i") or (not flag.startswith("--") and "l" in flag):
                return  # a login or interactive shell reads profiles that may change PATH
            if flag.endswith("o") and rest:
                rest.pop(0)  # `-o pipefail`, `-euo pipefail`
            if "c" in flag[1:]:
                rest.insert(0, "-c")
                break
        if len(rest) >= 2 and rest[0] == "-c" and depth < 2:
            inner = _unquote(rest[1])
            if any(s in inner for s in _UNSURE_TEXT) or _FUNCTION.search(inner):
                return
            saved = self.scope
            self.scope = scope
            try:
                self._read(_tokens(inner), depth + 1)
            finally:
                self.scope = saved

    def _python(self, python: Path, args: list[str], scope: _Scope) -> None:
        flags: list[str] = []
        module = None
        rest = [_unquote(a) for a in args]
        while rest:
            arg = rest.pop(0)
            if arg == "-m" and rest:
                module = rest.pop(0)
                break
            if arg.startswith("-m") and len(arg) > 2:
                module = arg[2:]
                break
            if arg in ("-X", "-W", "--check-hash-based-pycs"):
                if rest:
                    rest.pop(0)
                continue
            if arg.startswith("-") and arg not in ("-", "-c") and not arg.startswith("--"):
                flags.extend(f"-{c}" for c in arg[1:] if c in "IEsSP")
                continue
            return  # a script, `-c CODE` or stdin: nothing to look up
        if module is None or "$" in module or not re.match(r"^[A-Za-z_][\w.]*$", module):
            return
        top = module.split(".")[0]
        try:
            probe = subprocess.run(
                [str(python), *flags, "-c", _PROBE, top], cwd=scope.cwd, env=dict(scope.env),
                stdin=subprocess.DEVNULL, capture_output=True, timeout=_PROBE_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired):
            return
        if probe.returncode == 1 and not probe.stderr.strip():
            shown = python if "/" in str(python) else python.name
            self.add(f"{python} -m {top}", failure(
                "missing_module", f"{shown}: No module named {top} (needed by: {self.command})",
                f"install {top} in the target's environment ({shown} -m pip install {top}), or "
                "change the command"))


def unresolved_commands(commands: Sequence[str], cwd: Path,
                        env: Mapping[str, str]) -> list[EnvironmentFailure]:
    """Every program or `-m` module the commands would start that cannot be found (deduped)."""
    found: dict[tuple[str, str], EnvironmentFailure] = {}
    for command in commands:
        for key, item in _Reader(command, cwd, env).run().items():
            found.setdefault(key, item)
    return list(found.values())
