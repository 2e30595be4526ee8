"""HTML for the board, with jinja2: the served pages, their live fragments and the static file.

The templates say ages, durations, times, money, tokens and how a check ended in the words of
views/present.py (the filters `ago`, `duration`, `when`, `usd`, `tokens`, `pct`, `exit_text`),
so the board reads like `status`, `show` and the gptme tool.

Autoescaping is on for every template, so a ledger string is always text (a title
`<script>alert(1)</script>` shows as itself); data for the charts is embedded with jinja2's
`tojson`, which escapes `<`, `>`, `&` and `'` so it cannot end its `<script>` element. The
static file inlines the stylesheet, the script and the vendored chart library, and carries a
Content-Security-Policy that allows exactly those inline blocks (by hash) and no network.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ..views import present

HERE = Path(__file__).parent
STATIC = HERE / "static"
CHART_JS = "chart.umd.min.js"
# What the served pages may load: their own origin only (scripts and styles from /static).
SERVED_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def handoff_body(handoff: dict[str, Any]) -> dict[str, Any]:
    """A handoff without the fields its heading already says (kind, schema, artifact)."""
    return {k: v for k, v in handoff.items() if k not in ("kind", "schema_version", "artifact")}


def exit_text(check: dict[str, Any]) -> str:
    """How a check (a `CheckResult` as JSON) ended: its exit code, or `timeout`."""
    return present.exit_text(check.get("exit_code"), bool(check.get("timed_out")))


def humanize(key: str) -> str:
    """A field name as words: `verification_plan` -> `verification plan`."""
    return str(key).replace("_", " ")


@cache
def environment() -> Environment:
    """The jinja2 environment: autoescape on, undefined names are errors."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    # the words are the factory's own (views/present.py), the same as the CLI's and the tool's
    env.filters.update(ago=present.ago, duration=present.duration, usd=present.usd,
                       pct=present.pct, tokens=present.tokens, when=present.when,
                       exit_text=exit_text, humanize=humanize, handoff_body=handoff_body)
    # `tojson` escapes <, >, & and ' for HTML; keep the data's own key order (stage order)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    return env


class Links:
    """Where a page's links go: the server's routes, or anchors inside the static file."""

    def __init__(self, static: bool, github: str | None, embedded: set[str] | None = None,
                 limit: int = 50) -> None:
        self.static, self.github, self.limit = static, github, limit
        self.embedded = embedded or set()

    def home(self) -> str:
        """The board."""
        return "#board-view" if self.static else "/"

    def artifact(self, aid: str) -> str | None:
        """An artifact's page (None: not in this static file)."""
        if self.static:
            return f"#artifact-{aid}" if aid in self.embedded else None
        return f"/artifact/{aid}"

    def commit(self, commit: str) -> str | None:
        """A commit's ledger diff: the server's page, else GitHub's, else none."""
        if not self.static:
            return f"/commit/{commit}"
        return f"{self.github}/commit/{commit}" if self.github else None

    def github_commit(self, commit: str) -> str | None:
        """The commit on GitHub, when the brain's origin is there."""
        return f"{self.github}/commit/{commit}" if self.github else None

    def show_all(self) -> str | None:
        """The board with every card (served only)."""
        return None if self.static else "/?limit=0"


def render(template: str, **context: Any) -> str:
    """Render one template."""
    return environment().get_template(template).render(**context)


def board_page(data: dict[str, Any], token: str) -> str:
    """The served board page."""
    links = Links(False, data["meta"]["github"], limit=data["meta"]["limit"])
    return render("board.html", data=data, links=links, token=token, static=False, assets={},
                  artifacts=[], fragment_url=f"/fragment/board?limit={data['meta']['limit']}")


def board_fragment(data: dict[str, Any], token: str) -> str:
    """The part of the board page that live updates replace."""
    links = Links(False, data["meta"]["github"], limit=data["meta"]["limit"])
    return render("_board.html", data=data, links=links, token=token, static=False)


def artifact_page(data: dict[str, Any], token: str) -> str:
    """The served page of one artifact."""
    links = Links(False, data["meta"]["github"])
    return render("artifact.html", a=data, links=links, token=token, static=False, assets={},
                  fragment_url=f"/fragment/artifact/{data['artifact']}")


def artifact_fragment(data: dict[str, Any], token: str) -> str:
    """The part of an artifact's page that live updates replace."""
    return render("_artifact.html", a=data, links=Links(False, data["meta"]["github"]),
                  token=token, static=False)


def commit_page(data: dict[str, Any]) -> str:
    """One commit's ledger diff."""
    return render("commit.html", c=data, links=Links(False, data["meta"]["github"]),
                  static=False, assets={}, token="", fragment_url="")


def _asset(name: str) -> str:
    text = (STATIC / name).read_text("utf-8")
    if re.search(r"</(script|style)", text, re.I):  # would end its inline element early
        raise ValueError(f"{name} cannot be inlined: it contains a closing script/style tag")
    return text


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def static_page(data: dict[str, Any], artifacts: list[dict[str, Any]]) -> str:
    """The board as one self-contained HTML file: styles, scripts, chart library and data.

    `artifacts` are the pages embedded behind the cards (`#artifact-ID`); the file needs no
    server and no network (its Content-Security-Policy forbids both).
    """
    assets = {"css": _asset("board.css"), "chart": _asset(CHART_JS), "js": _asset("board.js")}
    csp = ("default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'; "
           f"style-src {_sha256(assets['css'])}; "
           f"script-src {_sha256(assets['chart'])} {_sha256(assets['js'])}")
    links = Links(True, data["meta"]["github"], {a["artifact"] for a in artifacts},
                  limit=data["meta"]["limit"])
    return render("board.html", data=data, links=links, token="static", static=True,
                  assets=assets, csp=csp, artifacts=artifacts, fragment_url="")
