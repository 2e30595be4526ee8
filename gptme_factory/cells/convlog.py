"""A cell's own gptme conversation log: finding it, and reading its cost from it.

gptodo does not record which gptme conversation a cell produced, so the factory finds it:
gptme writes `<logs dir>/<name>/config.toml` with the `workspace` it ran in, and every cell
runs in its own worktree, so the conversation whose workspace is the cell's workdir (and
that was created after the cell was launched) is the cell's. When several match, the one
whose first user message names the cell id wins.

Cost is read from what gptme logged, never from what the cell says: per assistant message
`metadata.usage` (input, cache read/creation, output tokens) and `metadata.cost` (USD).
Models that report no usage (such as the offline `mock/echo`) get an estimate from the log
itself: each assistant step is charged the characters of everything before it as input and
its own characters as output, at 4 characters per token. `Usage.measured` tells which.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

CHARS_PER_TOKEN = 4
_WORKSPACE_RE = re.compile(r'^workspace\s*=\s*"((?:[^"\\]|\\.)*)"\s*$', re.M)
_FENCE_RE = re.compile(r"^\s*```")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\r")


@dataclass(frozen=True)
class Usage:
    """Tokens and money a conversation used, and its latest words."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    measured: bool = False
    steps: int = 0
    last_line: str = ""

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.tokens_in + self.tokens_out


def logs_dirs() -> list[Path]:
    """Where gptme keeps conversation logs, in the order gptme itself looks."""
    out: list[Path] = []
    if os.environ.get("GPTME_LOGS_HOME"):
        out.append(Path(os.environ["GPTME_LOGS_HOME"]))
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    out.append(Path(data) / "gptme" / "logs")
    out.append(Path.home() / ".local" / "share" / "gptme" / "logs")
    return list(dict.fromkeys(out))


# config.toml path -> (its mtime_ns and size, the workspace it names, resolved): one process
# that looks for several cells' conversations (a `status` with cells running) parses each file
# and resolves each workspace once.
_WORKSPACES: dict[str, tuple[tuple[int, int], str | None]] = {}


def _workspace_of(logdir: str) -> str | None:
    """The real path of the workspace the conversation in `logdir` ran in, or None."""
    path = os.path.join(logdir, "config.toml")
    try:
        st = os.stat(path)
    except OSError:
        return None
    mark = (st.st_mtime_ns, st.st_size)
    known = _WORKSPACES.get(path)
    if known is not None and known[0] == mark:
        return known[1]
    ws = _read_workspace(path)
    real = os.path.realpath(ws) if ws is not None else None
    _WORKSPACES[path] = (mark, real)
    return real


def _read_workspace(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, ValueError):
        return None
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10: a plain path needs no unescaping
        m = _WORKSPACE_RE.search(text)
        return m.group(1) if m else None
    try:
        chat = tomllib.loads(text).get("chat", {})
    except ValueError:
        return None
    ws = chat.get("workspace") if isinstance(chat, dict) else None
    return ws if isinstance(ws, str) else None


def _first_user_text(conv: Path, limit: int = 200) -> str:
    try:
        with open(conv, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i > limit:
                    break
                if '"role": "user"' in line or '"role":"user"' in line:
                    return str(json.loads(line).get("content", ""))
    except (OSError, ValueError):
        pass
    return ""


class LogDirs:
    """The conversation folders in gptme's logs dirs, each with its mtime, listed once.

    An agent's logs dirs grow by a folder per conversation for as long as it runs; a `status`
    that looks for the conversation of each of its running cells lists them once, not once
    per cell.
    """

    def __init__(self, dirs: list[Path] | None = None) -> None:
        self.dirs = dirs or logs_dirs()
        self._entries: list[tuple[float, str]] | None = None

    def entries(self) -> list[tuple[float, str]]:
        """(mtime, path) of every folder in the logs dirs, in the order gptme looks."""
        if self._entries is None:
            out: list[tuple[float, str]] = []
            for base in self.dirs:
                try:
                    listed = list(os.scandir(base))
                except OSError:
                    continue
                for entry in listed:
                    try:
                        if entry.is_dir():
                            out.append((entry.stat().st_mtime, entry.path))
                    except OSError:
                        continue
            self._entries = out
        return self._entries


def find_conversation(workdir: str | Path, since: float, cell: str = "",
                      dirs: list[Path] | None = None, *,
                      logs: LogDirs | None = None) -> Path | None:
    """The conversation log dir of the gptme run in `workdir` started after `since` (epoch s).

    `logs` is the listing to look in (made from `dirs`, else gptme's logs dirs, if not given).
    """
    want = os.path.realpath(workdir)
    matches = [(mtime, Path(path)) for mtime, path in (logs or LogDirs(dirs)).entries()
               if mtime >= since - 5 and _workspace_of(path) == want]
    if not matches:
        return None
    if len(matches) > 1 and cell:
        named = [m for m in matches if cell in _first_user_text(m[1] / "conversation.jsonl")]
        matches = named or matches
    return sorted(matches)[0][1]


def _meaningful(text: str) -> str:
    """The last line of `text` worth showing: not blank, not a code fence."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and not _FENCE_RE.match(line):
            return line[:200]
    return ""


def read_usage(logdir: Path, in_flight: bool = False) -> Usage:
    """Sum the usage gptme logged in `logdir/conversation.jsonl` (estimate if none).

    gptme logs an assistant message only after its tool calls ran. With `in_flight` (the
    cell is running, or was stopped mid-step) the estimate also charges the context logged
    since the last assistant message: the request that produced the step still unlogged.
    """
    tokens_in = tokens_out = steps = 0
    pending = False
    cost: float | None = None
    measured = False
    context_chars = est_in = est_out = 0
    last = ""
    try:
        fh = open(logdir / "conversation.jsonl", encoding="utf-8")
    except OSError:
        return Usage()
    with fh:
        for line in fh:
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            content = str(msg.get("content", ""))
            if msg.get("role") == "assistant":
                steps += 1
                meta = msg.get("metadata") or {}
                usage = meta.get("usage") or {}
                if usage:
                    measured = True
                    tokens_in += sum(int(usage.get(k) or 0) for k in
                                     ("input_tokens", "cache_read_tokens", "cache_creation_tokens"))
                    tokens_out += int(usage.get("output_tokens") or 0)
                if meta.get("cost") is not None:
                    cost = (cost or 0.0) + float(meta["cost"])
                est_in += context_chars // CHARS_PER_TOKEN
                est_out += len(content) // CHARS_PER_TOKEN
                last = _meaningful(content) or last
            pending = msg.get("role") != "assistant"
            context_chars += len(content)
    if not measured:
        if in_flight and pending:
            est_in += context_chars // CHARS_PER_TOKEN
        tokens_in, tokens_out = est_in, est_out
    return Usage(tokens_in, tokens_out, cost, measured, steps, last)


def strip_ansi(text: str) -> str:
    """Terminal output without colour codes and carriage returns."""
    return _ANSI_RE.sub("", text)


_NOISE_RE = re.compile(r"tiktoken|tokenizer", re.I)


def clean_output(text: str) -> str:
    """Terminal output fit for a ledger record: readable block text, no terminal noise.

    Colour codes and carriage-return redraws go (the last redraw of a line stays), trailing
    padding is trimmed from every line (so YAML keeps it as a `|` block, not a quoted
    string), runs of blank lines collapse, and tokenizer warnings are dropped.
    """
    out: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = _ANSI_RE.sub("", raw.rstrip("\r").rsplit("\r", 1)[-1]).rstrip()
        if _NOISE_RE.search(line) and "warn" in line.lower():
            continue
        if not line and out and not out[-1]:
            continue
        out.append(line.replace("\t", "    "))
    return "\n".join(out).strip("\n")


def last_output_line(text: str) -> str:
    """The last meaningful line of a cell's terminal output."""
    noise = ("Thinking...", "EXIT_CODE=", "Goodbye!", "·")
    lines = strip_ansi(text).splitlines()
    # A crash ends in a traceback; the line that says what went wrong is gptme's last ERROR.
    for line in reversed(lines[-80:]):
        _, sep, msg = line.partition("ERROR")
        msg = msg.strip()
        if sep and len(msg) > 20 and not msg.startswith(("Fatal error occurred", "at ")):
            return f"error: {msg}"[:200]
    for line in reversed(lines):
        line = line.strip()
        if line and not _FENCE_RE.match(line) and not line.startswith(noise):
            return line[:200]
    return ""
