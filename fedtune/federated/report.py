"""The session report for people: a rich console view, a PNG plot and one self-contained HTML page.

Everything shown comes from a ``SessionReport``. Owner names and reasons come from remote
parties, so every string is shown as text, never as markup: control characters are replaced,
long strings are cut, rich gets ``Text`` objects and HTML gets escaped text under a
Content-Security-Policy that allows no script at all.

"Overall" is the example-weighted mean over owners (for a classifier's loss and accuracy
that is the value on the pooled held-out sets; for macro-F1 it is a weighted mean of the
owners' scores, not the pooled macro-F1). A causal LM's loss is per token, so when every
owner reports ``num_tokens`` its overall loss is token-weighted and its overall perplexity
is exp(overall loss), the pooled perplexity. The delta column compares owners that were
evaluated both before and after; the overall row uses only those owners.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from crypto.atomicfile import atomic_write_bytes
from fedtune.federated.errors import ReportError
from fedtune.federated.report_model import OwnerMetrics, SessionReport

if TYPE_CHECKING:
    from fedtune.audit.verify import VerifyReport

__all__ = [
    "AuditSummary",
    "MetricRow",
    "compare_metrics",
    "load_report",
    "overall_metrics",
    "plot_png",
    "plot_png_bytes",
    "render_console",
    "render_html",
    "show_report",
    "write_html",
]

AuditSummary = Mapping[str, object]
"""Free-form audit facts to show (label -> value), when no ``VerifyReport`` is at hand."""

OVERALL = "overall"
_COUNT_KEYS = frozenset({"num_examples", "num_tokens"})
_HIGHER_IS_BETTER = frozenset({"accuracy", "macro_f1", "f1", "precision", "recall", "auc"})
_LOWER_IS_BETTER = frozenset({"loss", "perplexity", "error", "error_rate"})
_METRIC_ORDER = ("accuracy", "macro_f1", "loss", "perplexity")
_FRACTIONS = frozenset({"accuracy", "macro_f1", "f1", "precision", "recall", "auc", "error_rate"})
_MAX_TEXT = 80
_STATUS_STYLE = {"finished": "bold green", "failed": "bold red", "cancelled": "bold yellow"}


# -- data shaping --------------------------------------------------------------------------


def _clean(value: object, *, limit: int = _MAX_TEXT) -> str:
    """A remote-supplied string made safe to show: no control characters, bounded length."""
    text = "".join(
        "\N{REPLACEMENT CHARACTER}" if unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch
        for ch in str(value)
    )
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _short_id(owner: str) -> str:
    hex_part = owner.split(":", 1)[-1]
    return _clean(hex_part[:12], limit=12)


def _owner_label(metrics: OwnerMetrics | None, owner: str) -> str:
    if metrics is not None and metrics.name:
        return _clean(metrics.name, limit=40)
    return _short_id(owner)


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One line of the before/after comparison: an owner (or ``overall``) and its numbers."""

    owner: str  # fingerprint, or "overall"
    label: str  # what to show for it (cleaned)
    num_examples: int | None
    before: Mapping[str, float]
    after: Mapping[str, float]

    def delta(self, metric: str) -> float | None:
        """after - before for ``metric``, when both are known and finite."""
        b, a = self.before.get(metric), self.after.get(metric)
        if b is None or a is None or not (math.isfinite(a) and math.isfinite(b)):
            return None
        return a - b


def overall_metrics(owners: Sequence[OwnerMetrics]) -> dict[str, float]:
    """Example-weighted mean of every metric (token-weighted loss and pooled perplexity for LMs)."""
    owners = [o for o in owners if o.num_examples > 0]
    if not owners:
        return {}
    names = {k for o in owners for k in o.metrics} - _COUNT_KEYS
    by_tokens = "perplexity" in names and all(o.metrics.get("num_tokens", 0) > 0 for o in owners)
    out: dict[str, float] = {}
    for name in sorted(names):
        pairs = [
            (o.metrics[name], float(o.metrics["num_tokens"] if by_tokens else o.num_examples))
            for o in owners
            if name in o.metrics and math.isfinite(o.metrics[name])
        ]
        if name in ("loss", "perplexity") and by_tokens:
            continue  # derived below from the pooled token loss
        total = sum(w for _, w in pairs)
        if pairs and total > 0:
            out[name] = sum(v * w for v, w in pairs) / total
    if by_tokens and all("loss" in o.metrics for o in owners):
        tokens = sum(o.metrics["num_tokens"] for o in owners)
        loss = sum(o.metrics["loss"] * o.metrics["num_tokens"] for o in owners) / tokens
        out["loss"] = loss
        out["perplexity"] = math.exp(min(loss, 700.0))
    return out


def compare_metrics(report: SessionReport) -> tuple[list[MetricRow], list[str]]:
    """Rows per owner plus ``overall`` (over owners evaluated both times), and metric names."""
    before = {m.owner: m for m in report.before}
    after = {m.owner: m for m in report.after}
    owners = list(dict.fromkeys([*before, *after]))
    rows = []
    for owner in owners:
        b, a = before.get(owner), after.get(owner)
        known = a if a is not None else b
        rows.append(
            MetricRow(
                owner=owner,
                label=_owner_label(known, owner),
                num_examples=known.num_examples if known is not None else None,
                before=dict(b.metrics) if b is not None else {},
                after=dict(a.metrics) if a is not None else {},
            )
        )
    paired = [o for o in owners if o in before and o in after]
    if paired:
        overall_before = overall_metrics([before[o] for o in paired])
        overall_after = overall_metrics([after[o] for o in paired])
        examples = sum(after[o].num_examples for o in paired)
    else:
        overall_before = overall_metrics(report.before)
        overall_after = overall_metrics(report.after)
        examples = sum(m.num_examples for m in (report.after or report.before))
    if len(owners) > 0:
        rows.append(MetricRow(OVERALL, OVERALL, examples, overall_before, overall_after))
    names = {k for r in rows for k in (*r.before, *r.after)} - _COUNT_KEYS
    ordered = [n for n in _METRIC_ORDER if n in names] + sorted(names - set(_METRIC_ORDER))
    return rows, ordered


def _unpaired(report: SessionReport) -> list[str]:
    before = {m.owner for m in report.before}
    after = {m.owner for m in report.after}
    return sorted(before ^ after)


def _direction(metric: str) -> int:
    """+1 when larger is better, -1 when smaller is better, 0 when unknown."""
    if metric in _HIGHER_IS_BETTER:
        return 1
    if metric in _LOWER_IS_BETTER:
        return -1
    return 0


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "\N{EM DASH}"
    if not math.isfinite(value):
        return str(value)
    if metric in _FRACTIONS:
        return f"{100 * value:.1f} %"
    if metric == "perplexity":
        return f"{value:,.2f}"
    return f"{value:.4f}"


def _fmt_delta(metric: str, delta: float | None) -> str:
    if delta is None:
        return ""
    if metric in _FRACTIONS:
        return f"{100 * delta:+.1f} pp"
    if metric == "perplexity":
        return f"{delta:+,.2f}"
    return f"{delta:+.4f}"


def _verdict(metric: str, delta: float | None) -> str:
    """Whether a change of ``metric`` by ``delta`` is "good", "bad" or neither ("")."""
    if delta is None or delta == 0 or _direction(metric) == 0:
        return ""
    return "good" if delta * _direction(metric) > 0 else "bad"


def _primary_metric(names: Sequence[str]) -> str | None:
    for name in ("accuracy", "perplexity", "macro_f1", "loss"):
        if name in names:
            return name
    return names[0] if names else None


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _time(when: datetime) -> str:
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if when.tzinfo is not None else "")


def _dp_line(report: SessionReport) -> str:
    if report.dp_epsilon is None:
        return "off"
    delta = f"{report.dp_delta:.1e}" if report.dp_delta is not None else "?"
    return f"client-level ({report.dp_epsilon:.3g}, {delta})-DP spent (RDP accountant)"


def _round_names(owners: Sequence[str], labels: Mapping[str, str]) -> str:
    return ", ".join(labels.get(o, _short_id(o)) for o in owners)


def _labels(report: SessionReport) -> dict[str, str]:
    labels = {}
    for m in (*report.before, *report.after):
        if m.name or m.owner not in labels:
            labels[m.owner] = _owner_label(m, m.owner)
    return labels


# -- console -------------------------------------------------------------------------------


def _header(report: SessionReport) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    status = Text(_clean(report.status), style=_STATUS_STYLE.get(report.status, "bold"))
    if report.reason:
        status.append(f"  ({_clean(report.reason, limit=200)})", style="")
    grid.add_row("session", Text(_clean(report.session_id)))
    grid.add_row("model", Text(_clean(report.model)))
    grid.add_row("task", Text(f"{_clean(report.task)}, aggregation {_clean(report.aggregation)}"))
    grid.add_row("status", status)
    elapsed = (report.finished_at - report.started_at).total_seconds()
    grid.add_row(
        "time",
        Text(
            f"{_time(report.started_at)} \N{RIGHTWARDS ARROW} {_time(report.finished_at)}"
            f" ({_duration(elapsed)}), {len(report.rounds)} round(s)"
        ),
    )
    grid.add_row("privacy", Text(_dp_line(report)))
    return grid


def _metrics_table(report: SessionReport) -> Table | Text:
    rows, names = compare_metrics(report)
    if not rows:
        return Text("No evaluation was reported.", style="dim")
    table = Table(
        title="Held-out evaluation: before round 1 and after the last round",
        header_style="bold",
        title_justify="left",
    )
    table.add_column("owner", overflow="fold")
    table.add_column("examples", justify="right")
    for name in names:
        table.add_column(f"{name}\nbefore", justify="right")
        table.add_column(f"{name}\nafter", justify="right")
        table.add_column("\N{GREEK CAPITAL LETTER DELTA}", justify="right")
    for row in rows:
        cells: list[RenderableType] = [
            Text(row.label, style="bold" if row.owner == OVERALL else ""),
            "" if row.num_examples is None else f"{row.num_examples:,}",
        ]
        for name in names:
            delta = row.delta(name)
            style = {"good": "green", "bad": "red", "": "dim"}[_verdict(name, delta)]
            cells += [
                _fmt(name, row.before.get(name)),
                _fmt(name, row.after.get(name)),
                Text(_fmt_delta(name, delta), style=style),
            ]
        table.add_row(*cells, end_section=row is rows[-2] if len(rows) > 1 else False)
    unpaired = _unpaired(report)
    if unpaired:
        labels = _labels(report)
        table.caption = "evaluated only once (not in overall): " + _round_names(unpaired, labels)
    return table


def _rounds_table(report: SessionReport) -> Table | Text:
    if not report.rounds:
        return Text("No round completed.", style="dim")
    labels = _labels(report)
    dp = any(r.epsilon is not None for r in report.rounds)
    table = Table(title="Rounds", header_style="bold", title_justify="left")
    table.add_column("round", justify="right")
    table.add_column("time", justify="right")
    table.add_column("participants", justify="right")
    table.add_column("dropped", overflow="fold")
    table.add_column("excluded", overflow="fold")
    table.add_column("examples", justify="right")
    table.add_column("train loss", justify="right")
    if dp:
        table.add_column("\N{GREEK SMALL LETTER EPSILON} (cumulative)", justify="right")
    for r in report.rounds:
        dropped = Text(str(len(r.dropped)), style="yellow" if r.dropped else "dim")
        if r.dropped:
            dropped.append(f" ({_round_names(r.dropped, labels)})")
        excluded = Text(str(len(r.excluded)), style="red" if r.excluded else "dim")
        if r.excluded:
            excluded.append(
                " ("
                + ", ".join(
                    f"{labels.get(e.owner, _short_id(e.owner))}: {_clean(e.reason, limit=60)}"
                    for e in r.excluded
                )
                + ")"
            )
        cells: list[RenderableType] = [
            str(r.round),
            _duration((r.finished_at - r.started_at).total_seconds()),
            str(len(r.participants)),
            dropped,
            excluded,
            f"{r.num_examples:,}",
            _fmt("loss", r.train_loss),
        ]
        if dp:
            cells.append("\N{EM DASH}" if r.epsilon is None else f"{r.epsilon:.3f}")
        table.add_row(*cells)
    return table


def render_console(report: SessionReport) -> RenderableType:
    """The report as a rich renderable: header, before/after table, per-round table."""
    if not isinstance(report, SessionReport):
        raise TypeError(f"report must be a SessionReport, got {type(report).__name__}")
    title = Text(f"Session {_clean(report.session_id)}", style="bold underline")
    return Group(
        title, _header(report), Text(""), _metrics_table(report), Text(""), _rounds_table(report)
    )


# -- plot ----------------------------------------------------------------------------------


def plot_png_bytes(report: SessionReport, *, dpi: int = 110) -> bytes:
    """The report's plot as PNG bytes: per-round training loss, and before/after per owner."""
    if not isinstance(report, SessionReport):
        raise TypeError(f"report must be a SessionReport, got {type(report).__name__}")
    if not isinstance(dpi, int) or isinstance(dpi, bool):
        raise TypeError("dpi must be an int")
    if not 50 <= dpi <= 300:
        raise ValueError(f"dpi must be in [50, 300], got {dpi}")
    # The object-oriented API with an Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, names = compare_metrics(report)
    primary = _primary_metric(names)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, metric_ax = fig.subplots(1, 2, width_ratios=(1.25, 1))
    _plot_rounds(loss_ax, report, rows)
    _plot_before_after(metric_ax, rows, primary)
    fig.suptitle(
        _plain(
            f"Session {_clean(report.session_id, limit=60)} \N{EM DASH} "
            f"{_clean(report.model, limit=50)} ({_clean(report.status)})"
        ),
        fontsize=12,
    )
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    return out.getvalue()


def _plain(text: str) -> str:
    """``text`` for matplotlib: a ``$`` would otherwise start mathtext (or fail to parse)."""
    return text.replace("$", r"\$")


def _plot_rounds(ax: object, report: SessionReport, rows: Sequence[MetricRow]) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    ax.set_title("Loss per round", fontsize=11)
    ax.set_xlabel("round")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    rounds = [r for r in report.rounds if r.train_loss is not None]
    last = max((r.round for r in report.rounds), default=0)
    if rounds:
        ax.plot(
            [r.round for r in rounds],
            [r.train_loss for r in rounds],
            marker="o",
            color="#0969da",
            label="training loss (example-weighted)",
        )
    overall = next((r for r in rows if r.owner == OVERALL), None)
    if overall is not None:
        if "loss" in overall.before:
            ax.scatter(
                [0],
                [overall.before["loss"]],
                marker="s",
                s=60,
                color="#6e7781",
                zorder=3,
                label="held-out loss before",
            )
        if "loss" in overall.after:
            ax.scatter(
                [last],
                [overall.after["loss"]],
                marker="D",
                s=60,
                color="#1a7f37",
                zorder=3,
                label="held-out loss after",
            )
    if not rounds and (overall is None or not (overall.before or overall.after)):
        ax.text(
            0.5,
            0.5,
            "no round completed",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="#6e7781",
        )
    ax.set_xlim(-0.5, max(last, 1) + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    eps = [r for r in report.rounds if r.epsilon is not None]
    if eps:
        eps_ax = ax.twinx()
        eps_ax.plot(
            [r.round for r in eps],
            [r.epsilon for r in eps],
            linestyle="--",
            marker=".",
            color="#8250df",
            label="\N{GREEK SMALL LETTER EPSILON} spent",
        )
        eps_ax.set_ylabel("\N{GREEK SMALL LETTER EPSILON} (cumulative)", color="#8250df")
        eps_ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    if eps:
        more, more_labels = eps_ax.get_legend_handles_labels()
        handles, labels = handles + more, labels + more_labels
    if handles:
        # Below the axes, so it never hides a point.
        ax.legend(
            handles,
            labels,
            fontsize=8,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=2,
            frameon=False,
        )


def _plot_before_after(ax: object, rows: Sequence[MetricRow], metric: str | None) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    shown = [r for r in rows if metric is not None and (metric in r.before or metric in r.after)]
    if metric is None or not shown:
        ax.set_title("Held-out evaluation", fontsize=11)
        ax.text(
            0.5,
            0.5,
            "no evaluation reported",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="#6e7781",
        )
        ax.set_axis_off()
        return
    scale = 100.0 if metric in _FRACTIONS else 1.0
    unit = " (%)" if metric in _FRACTIONS else ""
    ax.set_title(f"Held-out {metric}: before \N{RIGHTWARDS ARROW} after", fontsize=11)
    ax.set_xlabel(metric + unit)
    ys = list(range(len(shown)))[::-1]
    for y, row in zip(ys, shown, strict=True):
        b, a = row.before.get(metric), row.after.get(metric)
        verdict = _verdict(metric, row.delta(metric))
        colour = {"good": "#1a7f37", "bad": "#cf222e", "": "#0969da"}[verdict]
        if b is not None and a is not None:
            ax.annotate(
                "",
                xy=(a * scale, y),
                xytext=(b * scale, y),
                arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.5},
            )
        if b is not None:
            ax.scatter(
                [b * scale],
                [y],
                color="#6e7781",
                s=40,
                zorder=3,
                label="before" if y == ys[0] else None,
            )
        if a is not None:
            ax.scatter(
                [a * scale],
                [y],
                color=colour,
                s=55,
                zorder=3,
                marker="D",
                label="after" if y == ys[0] else None,
            )
            ax.annotate(
                _fmt(metric, a),
                (a * scale, y),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=8,
            )
    ax.set_yticks(ys, [_plain(r.label) for r in shown], fontsize=9)
    for tick, row in zip(ax.get_yticklabels(), shown, strict=True):
        if row.owner == OVERALL:
            tick.set_fontweight("bold")
    ax.set_ylim(-0.7, len(shown) - 0.3)
    if metric == "perplexity":
        ax.set_xscale("log")  # perplexity falls by orders of magnitude when a model learns
    ax.margins(x=0.15)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def plot_png(report: SessionReport, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write the report's plot as a PNG file (atomically); returns the path."""
    data = plot_png_bytes(report, dpi=dpi)
    target = Path(path)
    atomic_write_bytes(target, data)
    return target


# -- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1f2328}
h1{font-size:1.4rem;margin:0 0 .6rem}h2{font-size:1.1rem;margin:1.8rem 0 .5rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:0 0 1rem}
dt{font-weight:600}dd{margin:0}.mono{font-family:ui-monospace,monospace;word-break:break-all}
table{border-collapse:collapse;margin:.4rem 0}
th,td{border-bottom:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.overall td{font-weight:700;border-top:2px solid #8c959f}
.good{color:#1a7f37}.bad{color:#cf222e}.dim{color:#6e7781}
.status-finished{color:#1a7f37;font-weight:700}.status-failed{color:#cf222e;font-weight:700}
.status-cancelled{color:#9a6700;font-weight:700}
.banner{padding:.6rem .9rem;border-radius:6px;background:#ffebe9;border:1px solid #ff818266}
img{max-width:100%;height:auto;border:1px solid #d0d7de;border-radius:6px}
p.note{color:#6e7781;font-size:.9em}
"""
# No scripts, styles only inline, images only data: URIs; stops anything that slipped past
# escaping from running or fetching.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _esc(value: object, *, limit: int = _MAX_TEXT) -> str:
    return html.escape(_clean(value, limit=limit), quote=True)


def _html_metrics(report: SessionReport) -> str:
    rows, names = compare_metrics(report)
    if not rows:
        return '<p class="dim">No evaluation was reported.</p>'
    head = ['<th>owner</th><th class="num">examples</th>']
    for name in names:
        n = _esc(name)
        head.append(
            f'<th class="num">{n} before</th><th class="num">{n} after</th>'
            '<th class="num">&Delta;</th>'
        )
    body = []
    for row in rows:
        cls = ' class="overall"' if row.owner == OVERALL else ""
        title = "" if row.owner == OVERALL else f' title="{_esc(row.owner, limit=200)}"'
        cells = [
            f"<td{title}>{html.escape(row.label)}</td>",
            f'<td class="num">{"" if row.num_examples is None else f"{row.num_examples:,}"}</td>',
        ]
        for name in names:
            delta = row.delta(name)
            verdict = _verdict(name, delta) or "dim"
            cells.append(
                f'<td class="num">{html.escape(_fmt(name, row.before.get(name)))}</td>'
                f'<td class="num">{html.escape(_fmt(name, row.after.get(name)))}</td>'
                f'<td class="num {verdict}">{html.escape(_fmt_delta(name, delta))}</td>'
            )
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    note = ""
    unpaired = _unpaired(report)
    if unpaired:
        note = (
            '<p class="note">Evaluated only once, so left out of the overall row: '
            f"{html.escape(_round_names(unpaired, _labels(report)))}</p>"
        )
    return (
        f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody>"
        f'</table>{note}<p class="note">Overall: example-weighted mean over owners '
        "evaluated both before and after (token-weighted loss and pooled perplexity for "
        "language models).</p>"
    )


def _html_rounds(report: SessionReport) -> str:
    if not report.rounds:
        return '<p class="dim">No round completed.</p>'
    labels = _labels(report)
    dp = any(r.epsilon is not None for r in report.rounds)
    head = (
        '<th class="num">round</th><th>started</th><th class="num">time</th>'
        '<th class="num">participants</th><th>dropped</th><th>excluded</th>'
        '<th class="num">examples</th><th class="num">train loss</th>'
        + ('<th class="num">&epsilon; (cumulative)</th>' if dp else "")
        + "<th>aggregate SHA-256</th>"
    )
    body = []
    for r in report.rounds:
        dropped = html.escape(_round_names(r.dropped, labels)) if r.dropped else ""
        excluded = "<br>".join(
            f"{html.escape(labels.get(e.owner, _short_id(e.owner)))} at {_esc(e.stage)}: "
            f"{_esc(e.reason, limit=200)}"
            for e in r.excluded
        )
        eps = ""
        if dp:
            eps = f'<td class="num">{"&mdash;" if r.epsilon is None else f"{r.epsilon:.3f}"}</td>'
        digest = _esc(r.aggregate_digest[:16], limit=16) if r.aggregate_digest else ""
        digest_title = _esc(r.aggregate_digest, limit=128) if r.aggregate_digest else ""
        body.append(
            f'<tr><td class="num">{r.round}</td><td>{html.escape(_time(r.started_at))}</td>'
            f'<td class="num">{_duration((r.finished_at - r.started_at).total_seconds())}</td>'
            f'<td class="num">{len(r.participants)}</td>'
            f'<td class="{"bad" if r.dropped else "dim"}">{len(r.dropped)} {dropped}</td>'
            f'<td class="{"bad" if r.excluded else "dim"}">{len(r.excluded)} {excluded}</td>'
            f'<td class="num">{r.num_examples:,}</td>'
            f'<td class="num">{html.escape(_fmt("loss", r.train_loss))}</td>{eps}'
            f'<td class="mono" title="{digest_title}">{digest}</td></tr>'
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_privacy(report: SessionReport) -> str:
    if report.dp_epsilon is None:
        return (
            "<p>Differential privacy was <b>off</b> for this session: the aggregate is "
            "protected by secure aggregation only, with no bound on what it reveals.</p>"
        )
    delta = f"{report.dp_delta:.1e}" if report.dp_delta is not None else "unknown"
    return (
        f"<p>Client-level differential privacy: <b>&epsilon; = {report.dp_epsilon:.3f}</b> "
        f"spent at &delta; = {html.escape(delta)} over {len(report.rounds)} round(s), by "
        "Opacus' RDP accountant. Each sandbox clipped its update and added its share of "
        "Gaussian noise drawn from a cryptographic RNG; no party saw the un-noised sum. "
        "The bound covers everything any one owner contributed.</p>"
    )


def _html_audit(report: SessionReport, audit: VerifyReport | AuditSummary) -> str:
    from fedtune.audit.events import Outcome
    from fedtune.audit.verify import VerifyReport

    if isinstance(audit, VerifyReport):
        events = [e for _, e in audit.events if e.session == report.session_id]
        refused = sum(1 for e in events if e.outcome is Outcome.REFUSED)
        failed = sum(1 for e in events if e.outcome is Outcome.FAILED)
        items: list[tuple[str, object]] = [
            ("log", audit.origin),
            ("verified tree size", audit.size),
            ("root hash", audit.root_hash.hex()),
            ("entries checked", audit.entries_checked),
            (
                "consistent with saved checkpoint",
                "none saved before"
                if audit.previous_size is None
                else f"size {audit.previous_size}",
            ),
            ("events of this session", f"{len(events)} ({refused} refused, {failed} failed)"),
        ]
    elif isinstance(audit, Mapping):
        items = list(audit.items())
    else:
        raise TypeError("audit_summary must be a VerifyReport or a mapping of label to value")
    rows = "".join(
        f'<dt>{_esc(k)}</dt><dd class="mono">{_esc(v, limit=200)}</dd>' for k, v in items
    )
    return f"<dl>{rows}</dl>"


def render_html(
    report: SessionReport,
    *,
    audit_summary: VerifyReport | AuditSummary | None = None,
    png: bytes | None = None,
) -> str:
    """The report as one self-contained HTML page (inline CSS, plot as a data: URI, no script)."""
    if not isinstance(report, SessionReport):
        raise TypeError(f"report must be a SessionReport, got {type(report).__name__}")
    if png is None:
        png = plot_png_bytes(report)
    elif not isinstance(png, bytes) or not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("png must be the bytes of a PNG image")
    status = report.status if report.status in _STATUS_STYLE else "other"
    elapsed = (report.finished_at - report.started_at).total_seconds()
    banner = ""
    if report.status != "finished":
        banner = (
            f'<p class="banner">This session did not finish: <b>{_esc(report.status)}</b>'
            + (f" \N{EM DASH} {_esc(report.reason, limit=500)}" if report.reason else "")
            + "</p>"
        )
    audit = ""
    if audit_summary is not None:
        audit = "<h2>Audit log</h2>" + _html_audit(report, audit_summary)
    image = base64.b64encode(png).decode("ascii")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>fedtune session {_esc(report.session_id)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Session {_esc(report.session_id)}</h1>{banner}"
        "<dl>"
        f"<dt>model</dt><dd>{_esc(report.model)}</dd>"
        f"<dt>task</dt><dd>{_esc(report.task)}</dd>"
        f"<dt>aggregation</dt><dd>{_esc(report.aggregation)}</dd>"
        f'<dt>status</dt><dd class="status-{status}">{_esc(report.status)}</dd>'
        f"<dt>started</dt><dd>{html.escape(_time(report.started_at))}</dd>"
        f"<dt>finished</dt><dd>{html.escape(_time(report.finished_at))} "
        f"({html.escape(_duration(elapsed))})</dd>"
        f"<dt>rounds</dt><dd>{len(report.rounds)}</dd>"
        f"<dt>privacy</dt><dd>{html.escape(_dp_line(report))}</dd>"
        "</dl>"
        "<h2>Held-out evaluation: before round 1 and after the last round</h2>"
        + _html_metrics(report)
        + f'<h2>Curves</h2><img alt="per-round loss and before/after metrics" '
        f'src="data:image/png;base64,{image}">'
        "<h2>Rounds</h2>"
        + _html_rounds(report)
        + "<h2>Privacy</h2>"
        + _html_privacy(report)
        + audit
        + f'<p class="note">Generated {generated} by fedtune. Only metrics left the sandboxes.'
        "</p></body></html>\n"
    )


def write_html(
    report: SessionReport,
    path: str | os.PathLike[str],
    *,
    audit_summary: VerifyReport | AuditSummary | None = None,
    png: bytes | None = None,
) -> Path:
    """Write the self-contained HTML report atomically; returns the path."""
    page = render_html(report, audit_summary=audit_summary, png=png)
    target = Path(path)
    atomic_write_bytes(target, page.encode("utf-8"))
    return target


# -- the CLI hook --------------------------------------------------------------------------


def load_report(path: str | os.PathLike[str]) -> SessionReport:
    """Read a saved ``SessionReport``; ReportError says what is wrong with the file."""
    from pydantic import ValidationError

    target = Path(path)
    try:
        return SessionReport.load(target)
    except FileNotFoundError:
        raise ReportError(
            target,
            "no such file (the session runner writes report.json "
            "into the session's directory when a session ends)",
        ) from None
    except OSError as exc:
        raise ReportError(target, f"cannot read it: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "the document"
        raise ReportError(
            target,
            f"not a session report ({exc.error_count()} problem(s); first at {where}: "
            f"{first.get('msg', 'invalid')})",
        ) from None


def show_report(
    path_or_report: SessionReport | str | os.PathLike[str],
    *,
    html: str | os.PathLike[str] | None = None,
    png: str | os.PathLike[str] | None = None,
    console: Console | None = None,
) -> SessionReport:
    """Print the report to the console and optionally write the HTML page and/or the PNG."""
    if isinstance(path_or_report, SessionReport):
        report = path_or_report
    elif isinstance(path_or_report, str | os.PathLike):
        report = load_report(path_or_report)
    else:
        raise TypeError("path_or_report must be a SessionReport or a path to a saved one")
    console = console if console is not None else Console()
    console.print(render_console(report))
    if html is not None or png is not None:
        image = plot_png_bytes(report)
        if png is not None:
            atomic_write_bytes(Path(png), image)
            console.print(Text(f"plot written to {png}", style="dim"))
        if html is not None:
            write_html(report, html, png=image)
            console.print(Text(f"HTML report written to {html}", style="dim"))
    return report
