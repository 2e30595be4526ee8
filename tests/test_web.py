"""The board without a browser: its data, its HTML, the static file and the server's routes.

The brain comes from tests/board_helpers.py (real ledger, real engine, real gates); routes
are exercised through starlette's TestClient against the real application. The browser
tests (tests/test_board_browser.py) load the same pages in chromium.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from gptme_factory.cli import main
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake
from gptme_factory.views import statuscache
from gptme_factory.views.factcache import metrics
from gptme_factory.web import data, render
from gptme_factory.web.redact import Redactor
from gptme_factory.web.server import create_app, is_loopback
from tests.board_helpers import XSS_IMG, XSS_TITLE, make_brain
from tests.ledger_helpers import abandon, new_artifact, reads

CHART_SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("bhome")
    for var, value in (("HOME", str(home)), ("GIT_CONFIG_GLOBAL", str(home / ".gitconfig")),
                       ("GIT_CONFIG_NOSYSTEM", "1"), ("GPTME_FACTORY_ACTOR", "tester"),
                       ("GIT_AUTHOR_NAME", "T"), ("GIT_AUTHOR_EMAIL", "t@x.invalid"),
                       ("GIT_COMMITTER_NAME", "T"), ("GIT_COMMITTER_EMAIL", "t@x.invalid")):
        mp.setenv(var, value)
    yield make_brain(tmp_path_factory.mktemp("board") / "brain")
    mp.undo()


def fresh(made: dict[str, Any]) -> Ledger:
    return Ledger.open(made["root"])


def cards(board: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """artifact -> (lane, column, card)."""
    return {c["artifact"]: (lane["line"], col["key"], c) for lane in board["lanes"]
            for col in lane["columns"] for c in col["cards"]}


def test_cards_sit_in_their_lane_and_column(made: dict[str, Any]) -> None:
    ids = made["ids"]
    got = cards(data.board_data(fresh(made)))
    where = {name: got[aid][:2] for name, aid in ids.items()}
    assert where == {
        "closed": ("default", data.FINAL), "retry": ("default", "build"),
        "blocked": ("default", "scout"), "approval": ("ops", "scout"),
        "abandoned": ("default", data.FINAL), "xss": ("default", "scout"),
        "running": ("default", "scout"),
    }
    blocked = got[ids["blocked"]][2]
    assert blocked["status"] == "blocked"
    assert blocked["blocked_reason"].startswith(f"contract violation by {ids['blocked']}.scout.")
    assert "gptme-factory start" in blocked["needs_person"]
    assert (blocked["attempt"], blocked["max_attempts"]) == (1, 3)
    approval = got[ids["approval"]][2]
    assert approval["status"] == "awaiting_approval"
    assert f"gptme-factory review {ids['approval']}" in approval["needs_person"]
    retry = got[ids["retry"]][2]
    assert retry["retry_note"] and retry["cost_usd"] == pytest.approx(0.2)
    assert (retry["attempt"], retry["max_attempts"]) == (1, 3)
    closed = got[ids["closed"]][2]
    assert closed["cost_usd"] == pytest.approx(0.4) and closed["needs_person"] is None
    assert closed["demand"] == "gh:acme/app#1" and closed["consumers"] == ["erik"]
    assert closed["target"] is None
    # in the scout column what needs a person comes first, then the running one
    scout = next(c for c in next(x for x in data.board_data(fresh(made))["lanes"]
                                 if x["line"] == "default")["columns"] if c["key"] == "scout")
    assert [c["artifact"] for c in scout["cards"]][:2] == [ids["blocked"], ids["running"]]
    assert scout["counts"] == {"blocked": 1, "running": 1, "pending": 1}


def test_time_in_stage_counts_from_arrival(made: dict[str, Any]) -> None:
    from datetime import timedelta

    from tests.test_metrics import T0

    got = cards(data.board_data(fresh(made), now=T0 + timedelta(hours=100)))
    ids = made["ids"]
    # retry: back at build since the failed verify gate sent it there (rework) at hour 29
    assert got[ids["retry"]][2]["in_stage_s"] == pytest.approx(71 * 3600)
    # blocked: still at its first stage, taken in at hour 48
    assert got[ids["blocked"]][2]["in_stage_s"] == pytest.approx(52 * 3600)
    # closed: since it was closed at hour 13
    assert got[ids["closed"]][2]["in_stage_s"] == pytest.approx(87 * 3600)


def test_limit_counts_the_hidden_cards(made: dict[str, Any]) -> None:
    board = data.board_data(fresh(made), limit=1)
    default = next(x for x in board["lanes"] if x["line"] == "default")
    scout = next(c for c in default["columns"] if c["key"] == "scout")
    assert (len(scout["cards"]), scout["count"], scout["hidden"]) == (1, 3, 2)
    html = render.board_fragment(board, "t")
    assert "+2 more" in html and 'href="/?limit=0"' in html


def test_metrics_are_the_numbers_of_metrics_json(made: dict[str, Any]) -> None:
    board = data.board_data(fresh(made))
    report = json.loads(CliRunner().invoke(
        main, ["metrics", "--json", "--repo", str(made["root"])]).output)
    assert board["metrics"] == report
    assert report["first_pass_yield"] == {"rate": 1.0, "first_pass": 1, "verified": 1}


def test_totals(made: dict[str, Any]) -> None:
    t = data.board_data(fresh(made))["totals"]
    assert (t["artifacts"], t["open"], t["needs_person"], t["blocked"]) == (7, 5, 2, 1)


def test_artifact_page_links_every_event_to_its_commit(made: dict[str, Any]) -> None:
    ledger = fresh(made)
    aid = made["ids"]["closed"]
    page = data.artifact_data(ledger, aid)
    log = {seq: e.commit for e in ledger.history([aid])
           for seq in e.trailers["Factory-Seq"]}
    assert [str(e["seq"]) for e in page["timeline"]] == sorted(log, key=int)
    assert all(e["commit"]["id"] == log[str(e["seq"])] for e in page["timeline"])
    assert page["timeline"][-1]["what"] == "closed: done"
    kinds = [g["gate"] for g in page["evidence"]]
    assert kinds == ["plan", "patch", "evidence", "package", "outcome"]
    evidence = page["evidence"][2]
    assert evidence["passed"] and evidence["checks"][0]["exit_code"] == 0
    assert evidence["commit"] and evidence["tree"]
    assert {c["stage"]: c["cost_usd"] for c in page["cells"]}["build"] == pytest.approx(0.3)
    html = render.artifact_page(page, "t")
    for e in page["timeline"]:
        assert f'href="/commit/{e["commit"]["id"]}"' in html
    assert "grep -q fixed app.txt" in html and "Gate evidence" in html


def test_failed_gate_evidence_is_shown(made: dict[str, Any]) -> None:
    page = data.artifact_data(fresh(made), made["ids"]["retry"])
    failed = [g for g in page["evidence"] if not g["passed"]]
    assert len(failed) == 1 and failed[0]["gate"] == "evidence"
    html = render.artifact_fragment(page, "t")
    assert 'class="gate failed"' in html and page["retry_note"] in html


def test_commit_page_shows_the_ledger_diff(made: dict[str, Any]) -> None:
    ledger = fresh(made)
    aid = made["ids"]["abandoned"]
    last = ledger.history([aid])[-1]
    c = data.commit_data(ledger, last.commit[:12])
    assert c["commit"] == last.commit and "Factory-Event: abandoned" in c["message"]
    assert "+reason: nobody needs it" in c["diff"]
    with pytest.raises(Exception, match="not a commit id"):
        data.commit_data(ledger, "--output=/tmp/x")


def test_every_ledger_string_is_escaped(made: dict[str, Any]) -> None:
    ledger = fresh(made)
    html = render.board_page(data.board_data(ledger), "t")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS_TITLE not in html and XSS_IMG not in html and "onerror=" not in html.replace(
        "onerror=&#34;", "")
    page = render.artifact_page(data.artifact_data(ledger, made["ids"]["xss"]), "t")
    assert XSS_TITLE not in page and "&lt;script&gt;alert(1)" in page


def assert_no_machine_paths(text: str, root: Path) -> None:
    for path in {str(root), str(root.parent), str(Path.home()), str(root.resolve())}:
        assert path not in text, f"{path} leaked into the page"


def test_static_file_is_self_contained(made: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "board.html"
    result = CliRunner().invoke(main, ["board", "--html", str(out), "--repo", str(made["root"])])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert_no_machine_paths(html, made["root"])
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)  # nothing remote
    assert '<link rel="stylesheet"' not in html and "<script src" not in html
    # every inline script and style is allowed by the file's CSP, by hash, and nothing else
    csp = html_lib.unescape(re.search(
        r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert "connect-src" not in csp and "default-src 'none'" in csp
    blocks = re.findall(r"<script>(.*?)</script>", html, re.S) + re.findall(
        r"<style>(.*?)</style>", html, re.S)
    assert len(blocks) == 3
    for block in blocks:
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    chart = (render.STATIC / render.CHART_JS).read_bytes()
    assert hashlib.sha256(chart).hexdigest() == CHART_SHA256  # the vendored release, unchanged
    assert chart.decode() in html
    # the artifacts with a card have their page inside the file
    for aid in made["ids"].values():
        assert f'id="artifact-{aid}"' in html and f'href="#artifact-{aid}"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and XSS_TITLE not in html


def test_static_to_stdout(made: dict[str, Any]) -> None:
    result = CliRunner().invoke(main, ["board", "--html", "-", "--repo", str(made["root"])])
    assert result.exit_code == 0 and result.output.startswith("<!doctype html>")


# -- the server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(made: dict[str, Any]) -> TestClient:
    return TestClient(create_app(made["root"]), base_url="http://127.0.0.1:8000")


ROUTES = ["/", "/fragment/board", "/api/board", "/api/metrics", "/events", "/static/board.js"]


def test_pages_and_apis(client: TestClient, made: dict[str, Any]) -> None:
    ids = made["ids"]
    r = client.get("/")
    assert r.status_code == 200 and "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    for aid in ids.values():
        assert f'data-artifact="{aid}"' in r.text
    assert client.get("/api/metrics").json() == metrics(fresh(made))
    assert client.get("/api/board").json()["totals"]["artifacts"] == 7
    page = client.get(f"/artifact/{ids['closed']}")
    assert page.status_code == 200 and 'data-kind="gate_passed"' in page.text
    frag = client.get(f"/fragment/artifact/{ids['closed']}")
    assert frag.text.lstrip().startswith("<article") and "<html" not in frag.text
    assert client.get(f"/api/artifact/{ids['blocked']}").json()["status"] == "blocked"
    assert client.get("/fragment/board?limit=1").text.count("+2 more") == 1
    js = client.get("/static/chart.umd.min.js")
    assert js.status_code == 200 and hashlib.sha256(js.content).hexdigest() == CHART_SHA256


def test_errors_are_pages_not_tracebacks(client: TestClient) -> None:
    r = client.get("/artifact/no-such-thing")
    assert r.status_code == 404 and "no artifact matches" in r.text
    bad = client.get("/commit/zzzz")
    assert bad.status_code == 400 and "not a commit id" in bad.text
    assert "no commit abcdef1234" in client.get("/commit/abcdef1234").text
    assert client.get("/?limit=many").status_code == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_no_endpoint_changes_anything(client: TestClient, made: dict[str, Any],
                                      method: str) -> None:
    head = fresh(made).repo.head()
    aid = made["ids"]["running"]
    for path in [*ROUTES, f"/artifact/{aid}", f"/api/artifact/{aid}"]:
        assert client.request(method, path).status_code == 405, path
    assert fresh(made).repo.head() == head


def test_only_the_hosts_it_serves_are_answered(client: TestClient) -> None:
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:1234"}).status_code == 200
    assert is_loopback("127.0.0.5") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_non_loopback_host_warns(made: dict[str, Any]) -> None:
    with socket.socket() as taken:  # the port is in use: the server warns, then cannot bind
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["board", "--host", "0.0.0.0", "--port", str(port),
                                           "--repo", str(made["root"])])
    assert "warning: serving on 0.0.0.0" in result.output
    assert result.exit_code == 2 and f"cannot listen on 0.0.0.0:{port}" in result.output


# -- the change signal and the caches --------------------------------------------------------


def test_change_token_moves_with_the_ledger(ledger: Ledger,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statuscache, "RACY_NS", 0)
    aid = new_artifact(ledger, "One")
    first = data.change_token(ledger)
    data.board_data(ledger)  # writing the caches is not a change
    assert data.change_token(ledger) == first
    abandon(ledger, aid, "gone")
    assert data.change_token(ledger) != first


def test_a_warm_board_reads_nothing(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statuscache, "RACY_NS", 0)
    a, b = new_artifact(ledger, "One"), new_artifact(ledger, "Two")
    data.board_data(Ledger.open(ledger.repo.root))
    seen = reads(monkeypatch)
    data.board_data(Ledger.open(ledger.repo.root))
    assert seen == []
    abandon(ledger, b, "gone")
    seen.clear()
    board = data.board_data(Ledger.open(ledger.repo.root))
    assert seen == [b]
    assert cards(board)[b][1] == data.FINAL and cards(board)[a][1] == "scout"


# -- redaction ------------------------------------------------------------------------------


def test_redactor_keeps_machine_paths_and_secrets_out(tmp_path: Path) -> None:
    root = tmp_path / "brain"
    r = Redactor(root, [(root / ".git" / "factory-worktrees", "<worktrees>")])
    assert r.text(f"{root}/factory/briefs/a.md") == "factory/briefs/a.md"
    assert r.text(f"cd {root} && ls") == "cd . && ls"
    assert r.text(f"rootdir: {root}/.git/factory-worktrees/c1") == "rootdir: <worktrees>/c1"
    assert r.text(f"{root}2/x") == "\u2026/x"  # a sibling, not the repo
    assert r.text(f"{Path.home()}/.local/share/gptme/logs/x") == "~/.local/share/gptme/logs/x"
    assert r.text("/usr/lib/python3/x.py failed") == "\u2026/x.py failed"
    for kept in ["gh:acme/app#42", "see https://github.com/acme/app/pull/3", "a/b and /x",
                 "max_tokens: 123456", "pytest -q tests/test_x.py && ruff check src"]:
        assert r.text(kept) == kept
    assert r.text("OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwx") == "OPENAI_API_KEY=[redacted]"
    assert r.text("push https://bot:ghp_abcdefghijklmnopqrstuvwxyz12@github.com/a/b") == \
        "push https://***@github.com/a/b"
    assert r.text("Authorization: Bearer abcdefghijklmnop1234") == "Authorization: [redacted]"
    assert r.tree({"k": [f"{root}/x", 3, None]}) == {"k": ["x", 3, None]}


def test_pages_of_a_brain_with_paths_in_its_ledger(ledger: Ledger) -> None:
    root = ledger.repo.root
    aid = intake(ledger, title=f"Fix {root}/src/app.py", demand="me", consumers=["me"],
                        acceptance=[f"{Path.home()}/x works"],
                        problem="token: hunter2hunter2").artifact
    page = render.artifact_page(data.artifact_data(ledger, aid), "t")
    board = render.board_page(data.board_data(ledger), "t")
    for html in (page, board):
        assert_no_machine_paths(html, root)
    assert "Fix src/app.py" in board and "hunter2" not in page


def test_a_vendored_copy_of_the_chart_library_and_its_licence() -> None:
    assert (render.STATIC / "chart.js-LICENSE.md").read_text().startswith("The MIT License")
    assert "chart.js@4.6.1" in (render.STATIC / "VENDORED.md").read_text()


def test_a_broken_artifact_page_says_why(ledger: Ledger) -> None:
    aid = new_artifact(ledger, "Soon broken")
    (ledger.artifact_dir(aid) / "intake.yaml").write_text("kind: [\n")
    client = TestClient(create_app(ledger.repo.root), base_url="http://localhost")
    r = client.get(f"/artifact/{aid}")
    assert r.status_code == 422 and "malformed YAML" in r.text
    board = client.get("/").text
    assert 'data-lane="?"' in board and "run `gptme-factory verify`" in board


def test_a_kept_page_is_rendered_again_once_the_ledger_moves(ledger: Ledger) -> None:
    client = TestClient(create_app(ledger.repo.root), base_url="http://localhost")
    first = new_artifact(ledger, "First")
    page = client.get("/fragment/board").text
    assert f'data-artifact="{first}"' in page
    assert client.get("/fragment/board").text == page  # nothing moved: the same bytes
    second = new_artifact(ledger, "Second")
    again = client.get("/fragment/board").text
    assert f'data-artifact="{second}"' in again and again != page
    abandon(ledger, first, "gone")
    art = client.get(f"/artifact/{first}").text
    assert 'data-kind="abandoned"' in art
