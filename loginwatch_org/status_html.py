"""``status --html``: one self-contained page of coverage, accounts by Region, for a person to read.

Each account is a row; the watch's Region, then each forwarder Region, are the columns; a cell's colour is its
unit's state there. Accounts that need attention come first (unwatched, then failing, then out of sync), each
with what to do: the line to paste under ``accounts:`` for an unwatched one, the status reason otherwise. No
script, no external asset: the page is one file that opens anywhere and prints. Pure: rows in, text out.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from loginwatch_org.config import WATCH_REGION
from loginwatch_org.plan import config_line
from loginwatch_org.state import SUSPENDED_ACCOUNT_STATE
from loginwatch_org.workflow import UNWATCHED, AccountStatus

# A cell's state, its colour and the word shown for it (also its tooltip and the legend).
_STATES: Final = {
    "ok": ("#2e7d32", "watched, as the config says"),
    "drift": ("#f9a825", "deployed, but not as the config says (recipients, policy or drift)"),
    "failed": ("#c62828", "failed or missing: alerts from here are not sent"),
    "unwatched": ("#6a1b9a", "in the organisation, not watched"),
    "suspended": ("#9e9e9e", "suspended: nobody can sign in"),
    "none": ("#eceff1", "no unit here"),
}
_ORDER: Final = {"unwatched": 0, "failed": 1, "drift": 2, "suspended": 3, "ok": 4, "none": 5}


@dataclass(frozen=True)
class _Account:
    account_id: str
    name: str
    cells: tuple[str, ...]
    fix: str

    @property
    def worst(self) -> str:
        return min(self.cells, key=lambda state: _ORDER[state])


def _state(row: AccountStatus) -> str:
    if row.account_state == SUSPENDED_ACCOUNT_STATE:
        return "suspended"
    if row.status == UNWATCHED:
        return "unwatched"
    if row.status not in ("CURRENT", "OUTDATED") or "FAILED" in row.detailed_status:
        return "failed"
    return "ok" if not row.needs_attention else "drift"


def render_status_html(
    rows: Sequence[tuple[str, AccountStatus]], forward_regions: Sequence[str], *, title: str, generated_at: str
) -> str:
    """The page for ``status`` rows (``(unit, row)``: "watch", "forwarders", "management", "mail")."""
    regions = (WATCH_REGION, *forward_regions)
    by_account: dict[str, dict[int, str]] = {}
    names: dict[str, str] = {}
    fixes: dict[str, list[str]] = {}
    for unit, row in rows:
        names.setdefault(row.account_id, row.name)
        cells = by_account.setdefault(row.account_id, {})
        state = _state(row)
        if unit == "forwarders":
            # One row per account for every forwarder Region; a problem naming Regions marks only those.
            named = [index for index, region in enumerate(regions) if index and region in row.reason]
            for index in named or range(1, len(regions)):
                cells[index] = state if row.status != "CURRENT" else "ok"
        else:
            cells[0] = state if unit == "watch" else min(cells.get(0, state), state, key=lambda s: _ORDER[s])
        if state == "unwatched":
            fixes.setdefault(row.account_id, []).append(f"add under accounts: {config_line(row.account_id, row.name)}")
        elif state in ("failed", "drift") and row.reason:
            fixes.setdefault(row.account_id, []).append(f"{unit}: {row.reason}")
    accounts = [
        _Account(
            account_id,
            names.get(account_id, ""),
            tuple(cells.get(index, "none") for index in range(len(regions))),
            "; ".join(dict.fromkeys(fixes.get(account_id, []))),
        )
        for account_id, cells in by_account.items()
    ]
    accounts.sort(key=lambda a: (_ORDER[a.worst], a.account_id))
    counts = {state: sum(1 for a in accounts if a.worst == state) for state in _STATES}
    return _page(title, generated_at, regions, accounts, counts)


def _page(
    title: str, generated_at: str, regions: Sequence[str], accounts: Sequence[_Account], counts: dict[str, int]
) -> str:
    esc = html.escape
    style = "".join(f".{state}{{background:{colour}}}" for state, (colour, _) in _STATES.items())
    summary = " · ".join(
        f"{counts[state]} {state}" for state in sorted(_STATES, key=_ORDER.__getitem__) if counts[state]
    )
    legend = "".join(
        f'<li><span class="key {state}"></span>{esc(state)}: {esc(words)}</li>' for state, (_, words) in _STATES.items()
    )
    head = "".join(f'<th class="region" title="{esc(r)}"><span>{esc(r)}</span></th>' for r in regions)
    body = []
    for account in accounts:
        cells = "".join(f'<td class="{state}" title="{esc(region)}: {state}"></td>'
                        for region, state in zip(regions, account.cells, strict=True))  # fmt: skip
        body.append(
            f'<tr data-state="{account.worst}"><th scope="row">{esc(account.account_id)}</th>'
            f"<td class=name>{esc(account.name)}</td>{cells}<td class=fix>{esc(account.fix)}</td></tr>"
        )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        "<style>body{font:13px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #fff;padding:2px 4px}td.fix{font-family:monospace;white-space:pre-wrap;"
        "max-width:60em}th.region{height:8em;vertical-align:bottom}th.region span{writing-mode:vertical-rl;"
        "white-space:nowrap;"
        "transform:rotate(180deg)}td:not(.name):not(.fix){width:14px}.key{display:inline-block;width:1em;"
        f"height:1em;margin-right:.4em;vertical-align:middle}}ul{{list-style:none;padding:0}}{style}</style></head>"
        f"<body><h1>{esc(title)}</h1><p id=summary>{len(accounts)} account(s): {esc(summary)}. Read at "
        f"{esc(generated_at)}.</p><ul id=legend>{legend}</ul>"
        f"<table id=coverage><thead><tr><th>account</th><th>name</th>{head}<th>what to do</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></body></html>\n"
    )
