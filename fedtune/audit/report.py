"""The audit timeline for people: a rich table and a self-contained HTML file, refusals marked."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from crypto.atomicfile import atomic_write_bytes
from fedtune.audit.events import ANONYMOUS, AuditEvent, Outcome

__all__ = ["ReportHeader", "filter_events", "render_html", "timeline_table", "write_html"]

IndexedEvent = tuple[int, AuditEvent]

_OUTCOME_STYLE = {
    Outcome.OK: ("ok", "green", ""),
    Outcome.REFUSED: ("REFUSED", "bold red", "bold red"),
    Outcome.FAILED: ("FAILED", "bold yellow", "yellow"),
}


@dataclass(frozen=True)
class ReportHeader:
    """What the timeline was read from, and whether it was verified."""

    origin: str
    size: int
    root_hash: bytes
    verified: bool
    verified_with: str | None = None  # the log key, when verified
    source: str = ""


def _short_actor(actor: str) -> str:
    return actor if actor == ANONYMOUS else actor.split(":", 1)[-1][:12]


def filter_events(
    events: Iterable[IndexedEvent], *, session: str | None = None, actor: str | None = None
) -> list[IndexedEvent]:
    """Keep events of ``session`` and/or by ``actor`` (a fingerprint or a prefix of its hex)."""
    wanted = actor.strip().lower() if actor else None
    if wanted is not None and not wanted:
        raise ValueError("actor filter is empty")

    def by_actor(event: AuditEvent) -> bool:
        if wanted is None:
            return True
        if event.actor == wanted:
            return True
        hex_part = event.actor.split(":", 1)[-1]
        return event.actor.startswith(wanted) or hex_part.startswith(wanted)

    return [(i, e) for i, e in events if (session is None or e.session == session) and by_actor(e)]


def _objects(event: AuditEvent) -> str:
    parts = [f"session {event.session}"] if event.session else []
    o = event.objects
    if o.model:
        parts.append(f"model {o.model}")
    if o.round is not None:
        parts.append(f"round {o.round}")
    if o.party:
        parts.append(f"party {_short_actor(o.party)}")
    for name in ("policy", "key", "artifact"):
        value = getattr(o, name)
        if value:
            parts.append(f"{name} {value[:24]}")
    return ", ".join(parts)


def _detail(event: AuditEvent) -> str:
    parts = []
    if event.reason:
        parts.append(event.reason)
    if event.verdict:
        parts.append("verdict " + json.dumps(event.verdict, sort_keys=True, separators=(",", ":")))
    if event.details:
        parts.append(json.dumps(event.details, sort_keys=True, separators=(",", ":")))
    return "; ".join(parts)


def _time(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def timeline_table(events: Sequence[IndexedEvent], *, title: str | None = None) -> Table:
    """A rich table of events, oldest first; refused and failed rows stand out."""
    table = Table(title=title, show_lines=False, header_style="bold", expand=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("actor", no_wrap=True)
    table.add_column("role")
    table.add_column("action", no_wrap=True)
    table.add_column("objects")
    table.add_column("outcome", no_wrap=True)
    table.add_column("reason / details", overflow="fold")
    for index, event in events:
        label, style, row_style = _OUTCOME_STYLE[event.outcome]
        table.add_row(
            str(index),
            _time(event.time),
            _short_actor(event.actor),
            event.role.value,
            event.action.value,
            _objects(event),
            Text(label, style=style),
            _detail(event),
            style=row_style or None,
        )
    return table


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.4rem;margin:0 0 .5rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:0 0 1rem}
dt{font-weight:600}dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
.ok{color:#1a7f37}.bad{color:#cf222e;font-weight:700}.warn{color:#9a6700;font-weight:700}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}
td.num{text-align:right;color:#656d76}td.mono{font-family:ui-monospace,monospace}
tr.refused td{background:#ffebe9}tr.failed td{background:#fff8c5}
.counts span{margin-right:1.5rem}
"""


def render_html(events: Sequence[IndexedEvent], header: ReportHeader) -> str:
    """One self-contained HTML page (inline CSS, no scripts, no external assets)."""
    esc = html.escape
    refused = sum(1 for _, e in events if e.outcome is Outcome.REFUSED)
    failed = sum(1 for _, e in events if e.outcome is Outcome.FAILED)
    if header.verified:
        status = f'<span class="ok">verified</span> with log key {esc(header.verified_with or "")}'
    else:
        status = '<span class="bad">NOT verified</span> (no log key was given)'
    rows = []
    for index, event in events:
        css = {Outcome.OK: "", Outcome.REFUSED: "refused", Outcome.FAILED: "failed"}[event.outcome]
        label = {Outcome.OK: "ok", Outcome.REFUSED: "REFUSED", Outcome.FAILED: "FAILED"}[
            event.outcome
        ]
        outcome_class = {"": "ok", "refused": "bad", "failed": "warn"}[css]
        rows.append(
            f'<tr class="{css}"><td class="num">{index}</td>'
            f'<td class="mono">{esc(_time(event.time))}</td>'
            f'<td class="mono" title="{esc(event.actor)}">{esc(_short_actor(event.actor))}</td>'
            f"<td>{esc(event.role.value)}</td><td>{esc(event.action.value)}</td>"
            f"<td>{esc(_objects(event))}</td>"
            f'<td class="{outcome_class}">{label}</td>'
            f"<td>{esc(_detail(event))}</td>"
            f'<td class="mono">{esc(event.reference)}</td></tr>'
        )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Audit timeline: {esc(header.origin)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Audit timeline of {esc(header.origin)}</h1>"
        "<dl>"
        f"<dt>status</dt><dd>{status}</dd>"
        f"<dt>tree size</dt><dd>{header.size}</dd>"
        f"<dt>root hash</dt><dd>{esc(header.root_hash.hex())}</dd>"
        f"<dt>source</dt><dd>{esc(header.source)}</dd>"
        f"<dt>generated</dt><dd>{generated}</dd>"
        "</dl>"
        f'<p class="counts"><span>{len(events)} events shown</span>'
        f'<span class="bad">{refused} refused</span><span class="warn">{failed} failed</span></p>'
        "<table><thead><tr><th>#</th><th>time (UTC)</th><th>actor</th><th>role</th>"
        "<th>action</th><th>objects</th><th>outcome</th><th>reason / details</th>"
        "<th>reference</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>\n"
    )


def write_html(
    path: str | os.PathLike[str], events: Sequence[IndexedEvent], header: ReportHeader
) -> None:
    """Write the HTML report atomically."""
    atomic_write_bytes(path, render_html(events, header).encode("utf-8"), mode=0o644)
