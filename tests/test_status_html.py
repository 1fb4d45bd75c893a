"""``status --html``: the coverage page, rendered by a real browser (headless Chromium, which ``.ci/run``
installs), checked as a person would see it: accounts needing attention first, each with what to do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from loginwatch_org.status_html import render_status_html
from loginwatch_org.workflow import UNWATCHED, AccountStatus

REGIONS = ("eu-west-1", "us-east-2")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Chromium and sets this, so the browser test can never be skipped there.
BROWSER_REQUIRED = os.environ.get("LOGINWATCH_REQUIRE_BROWSER") == "1"


def _row(account: str, name: str, status: str = "CURRENT", reason: str = "", **changes: str) -> AccountStatus:
    fields = {
        "recipients_deployed": "a@example.com",
        "recipients_config": "a@example.com",
        "alert_on_deployed": "all",
        "alert_on_config": "all",
        **changes,
    }
    return AccountStatus(account, name, "us-east-1", status, "", reason, **fields, last_operation="", drift="")


ROWS = [
    ("watch", _row("111111111111", "fine")),
    ("forwarders", _row("111111111111", "fine", reason="current in 2 region(s)")),
    ("watch", _row("222222222222", "moved", recipients_config="b@example.com")),
    ("forwarders", _row("222222222222", "moved", "NOT_CURRENT", "instance in us-east-2 failed: FAILED")),
    ("watch", _row("333333333333", "new-team", UNWATCHED, "in the organisation, not in the config")),
    ("watch", _row("444444444444", "broken", "MISSING", "no stack instance")),
]


class _Cells(HTMLParser):
    """The coverage table as rows of (account, classes of its cells, what-to-do text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str], str]] = []
        self._in: str | None = None
        self._classes: list[str] = []
        self._text: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "data-state" in found:
            self._classes, self._text = [], {"account": "", "fix": ""}
            self._in = "row"
        elif self._in and tag == "th":
            self._in = "account"
        elif self._in and tag == "td":
            cls = found.get("class") or ""
            self._in = "fix" if cls == "fix" else "cell"
            if cls not in ("name", "fix"):
                self._classes.append(cls)

    def handle_data(self, data: str) -> None:
        if self._in in ("account", "fix"):
            self._text[self._in] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._in:
            self.rows.append((self._text["account"], self._classes, self._text["fix"]))
            self._in = None
        elif self._in in ("account", "fix", "cell"):
            self._in = "row"


def _page() -> str:
    return render_status_html(ROWS, REGIONS, title="loginwatch coverage: test", generated_at="2026-12-08T00:00:00Z")


def test_accounts_needing_attention_come_first_with_what_to_do() -> None:
    parser = _Cells()
    parser.feed(_page())
    accounts = [account for account, _, _ in parser.rows]
    # Unwatched, then failed (a failed forwarder Region counts), then the rest; by account id within each.
    assert accounts == ["333333333333", "222222222222", "444444444444", "111111111111"]
    cells = {account: classes for account, classes, _ in parser.rows}
    fixes = {account: fix for account, _, fix in parser.rows}
    assert cells["333333333333"][0] == "unwatched"
    assert 'add under accounts: - {id: "333333333333", name: "new-team"}' in fixes["333333333333"]
    assert cells["444444444444"][0] == "failed"
    # The recipients changed in the config: deployed, not as the config says; only us-east-2's forwarder failed.
    assert cells["222222222222"] == ["drift", "none", "failed"]
    assert cells["111111111111"] == ["ok", "ok", "ok"]
    assert fixes["111111111111"] == ""


def test_the_page_is_self_contained_and_escapes_what_it_shows() -> None:
    hostile = [("watch", _row("555555555555", "<script>alert(1)</script>", UNWATCHED))]
    page = render_status_html(hostile, REGIONS, title="t", generated_at="now")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no external asset


def test_headless_chromium_renders_the_page_as_the_table_says(tmp_path: Path) -> None:
    if CHROMIUM is None:
        if BROWSER_REQUIRED:
            pytest.fail("Chromium is required here (LOGINWATCH_REQUIRE_BROWSER=1) and is not installed")
        pytest.skip("no Chromium on this machine (.ci/run installs it)")
    page = tmp_path / "coverage.html"
    page.write_text(_page(), encoding="utf-8")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    parser = _Cells()
    parser.feed(dom)
    assert [account for account, _, _ in parser.rows] == [
        "333333333333",
        "222222222222",
        "444444444444",
        "111111111111",
    ]
    assert "4 account(s): 1 unwatched · 2 failed · 1 ok" in dom
    shot = tmp_path / "coverage.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=900,600", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
