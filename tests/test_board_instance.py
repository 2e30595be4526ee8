"""A board running in the background: `/factory board` in gptme, `board --detach/--stop`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptme_factory.cells import proctree
from gptme_factory.cli import main
from gptme_factory.ledger.store import Ledger
from gptme_factory.line.intake import intake
from gptme_factory.plugin.tools._command import run_factory_command
from gptme_factory.web import instance

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback only
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_factory_board_command_starts_once_and_stop_ends_it(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    aid = intake(ledger, title="Shown in the browser", demand="me", consumers=["erik"],
                        acceptance=["ok"]).artifact
    monkeypatch.chdir(ledger.repo.root)
    said = run_factory_command(["board"])
    assert "started in the background" in said
    rec = instance.current(ledger)
    assert rec is not None and rec["url"] in said and rec["url"].startswith("http://127.0.0.1:")
    status, page = get(rec["url"])
    assert status == 200 and f'data-artifact="{aid}"' in page
    status, metrics = get(rec["url"] + "api/metrics")
    assert status == 200 and json.loads(metrics)["artifacts"] == 1
    again = run_factory_command(["board"])
    assert "already running" in again and rec["url"] in again
    assert "/factory board" in run_factory_command(["help"])
    result = CliRunner().invoke(main, ["board", "--stop", "--repo", str(ledger.repo.root)])
    assert result.exit_code == 0 and f"stopped the board at {rec['url']}" in result.output
    assert not proctree.alive(rec["pid"], rec["pid_start"])
    assert instance.current(ledger) is None
    assert not (ledger.runtime_dir / instance.RECORD).exists()  # the server removed it


def test_detach_prints_the_url_and_a_stale_record_is_ignored(ledger: Ledger) -> None:
    root = str(ledger.repo.root)
    record = ledger.runtime_dir / instance.RECORD
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"url": "http://127.0.0.1:1/", "pid": 999_999_999}))
    assert instance.current(ledger) is None  # that process does not exist
    result = CliRunner().invoke(main, ["board", "--detach", "--repo", root])
    assert result.exit_code == 0, result.output
    url = result.output.split()[1]
    try:
        assert url != "http://127.0.0.1:1/" and get(url)[0] == 200
        assert get(url + "artifact/nope")[0] == 404
    finally:
        CliRunner().invoke(main, ["board", "--stop", "--repo", root])
    assert CliRunner().invoke(main, ["board", "--stop", "--repo", root]).output == \
        "no board was running\n"
    assert Path(root).is_dir()
