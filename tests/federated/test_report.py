"""The session report: console tables, the PNG plot and the self-contained HTML page."""

from __future__ import annotations

import base64
import io
import math
import re
import struct
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from fedtune.audit.events import Action, AuditEvent, Outcome, Role
from fedtune.audit.verify import VerifyReport
from fedtune.federated.errors import ReportError
from fedtune.federated.report import (
    compare_metrics,
    overall_metrics,
    plot_png,
    plot_png_bytes,
    render_console,
    render_html,
    show_report,
    write_html,
)
from fedtune.federated.report_model import (
    Exclusion,
    OwnerMetrics,
    RoundRecord,
    SessionReport,
)

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
A = "ed25519:" + "a1" * 32
B = "ed25519:" + "b2" * 32
C = "ed25519:" + "c3" * 32
HOSTILE = '<script>alert("x")</script>'


def owner(fp: str, name: str, n: int, **metrics: float) -> OwnerMetrics:
    return OwnerMetrics(owner=fp, name=name, num_examples=n, metrics=dict(metrics))


def realistic(**changes: object) -> SessionReport:
    """Three owners (one with a hostile name), five rounds, a dropout, an exclusion, DP on."""
    before = [
        owner(A, "hospital-north", 100, loss=1.8, accuracy=0.20, macro_f1=0.10),
        owner(B, HOSTILE, 300, loss=1.7, accuracy=0.30, macro_f1=0.15),
        owner(C, "", 200, loss=1.9, accuracy=0.25, macro_f1=0.12),
    ]
    after = [
        owner(A, "hospital-north", 100, loss=0.6, accuracy=0.50, macro_f1=0.45),
        owner(B, HOSTILE, 300, loss=0.5, accuracy=0.90, macro_f1=0.88),
        # C regressed on accuracy: its delta must read as bad.
        owner(C, "", 200, loss=1.95, accuracy=0.20, macro_f1=0.11),
    ]
    rounds = []
    for r in range(1, 6):
        start = T0 + timedelta(seconds=40 * r)
        rounds.append(
            RoundRecord(
                round=r,
                started_at=start,
                finished_at=start + timedelta(seconds=31.5),
                participants=[A, B] if r == 3 else [A, B, C],
                dropped=[C] if r == 3 else [],
                excluded=[
                    Exclusion(
                        owner=B,
                        stage="collect_masked_vectors",
                        reason="[bold red]vector length[/] 12 != 10",
                    )
                ]
                if r == 4
                else [],
                num_examples=400 if r == 3 else 600,
                train_loss=1.5 / r,
                aggregate_digest="ab" * 32,
                epsilon=1.25 * r,
            )
        )
    fields: dict[str, object] = {
        "session_id": "sess-7f3a",
        "model": "acme/minilm@1",
        "aggregation": "secagg",
        "task": "classification",
        "status": "finished",
        "started_at": T0,
        "finished_at": T0 + timedelta(minutes=4, seconds=5),
        "before": before,
        "after": after,
        "rounds": rounds,
        "dp_delta": 1e-5,
        "dp_epsilon": 6.25,
    }
    fields.update(changes)
    return SessionReport(**fields)


def console_text(report: SessionReport, *, styles: bool = False) -> str:
    console = Console(record=True, width=220, force_terminal=True, color_system="standard")
    console.print(render_console(report))
    return console.export_text(styles=styles)


# -- numbers -------------------------------------------------------------------------------


def test_overall_is_example_weighted():
    # 100 examples at 0.5 and 300 at 0.9: 0.8 weighted (0.7 would be the plain mean).
    overall = overall_metrics(
        [owner(A, "a", 100, accuracy=0.5, loss=2.0), owner(B, "b", 300, accuracy=0.9, loss=1.0)]
    )
    assert overall["accuracy"] == pytest.approx(0.8)
    assert overall["loss"] == pytest.approx(1.25)


def test_language_model_overall_is_token_weighted_and_pooled_perplexity():
    overall = overall_metrics(
        [
            owner(A, "a", 10, loss=2.0, perplexity=math.exp(2.0), num_tokens=100),
            owner(B, "b", 90, loss=4.0, perplexity=math.exp(4.0), num_tokens=300),
        ]
    )
    assert overall["loss"] == pytest.approx(3.5)
    assert overall["perplexity"] == pytest.approx(math.exp(3.5))
    assert "num_tokens" not in overall


def test_compare_rows_and_overall_use_paired_owners_only():
    report = realistic(after=realistic().after[:2])  # C was never evaluated after
    rows, names = compare_metrics(report)
    assert names == ["accuracy", "macro_f1", "loss"]
    overall = rows[-1]
    assert overall.owner == "overall" and overall.num_examples == 400
    assert overall.before["accuracy"] == pytest.approx((0.2 * 100 + 0.3 * 300) / 400)
    assert overall.after["accuracy"] == pytest.approx((0.5 * 100 + 0.9 * 300) / 400)
    c_row = next(r for r in rows if r.owner == C)
    assert c_row.after == {} and c_row.delta("accuracy") is None


# -- console -------------------------------------------------------------------------------


def test_console_shows_before_after_per_owner_and_overall():
    text = console_text(realistic())
    for expected in (
        "hospital-north",
        "c3c3c3c3c3c3",
        "overall",
        "20.0 %",
        "50.0 %",
        "+30.0 pp",
        "+60.0 pp",
        "-5.0 pp",
        "sess-7f3a",
        "acme/minilm@1",
    ):
        assert expected in text, expected
    # overall, example-weighted: before (20 + 90 + 50) / 600, after (50 + 270 + 40) / 600.
    assert "26.7 %" in text and "60.0 %" in text and "+33.3 pp" in text


def test_console_rounds_show_participants_dropouts_exclusions_and_epsilon():
    text = console_text(realistic())
    assert "ε (cumulative)" in text
    assert "6.250" in text and "1.250" in text
    assert "1 (c3c3c3c3c3c3)" in text  # round 3 dropout
    # Remote text is shown literally, never parsed as rich markup.
    assert "[bold red]vector length[/] 12 != 10" in text


def test_console_prints_hostile_names_as_text_without_control_characters():
    report = realistic(
        before=[owner(A, "evil\x1b[31m[bold]x[/bold]\u202e", 10, accuracy=0.1)],
        after=[owner(A, "evil\x1b[31m[bold]x[/bold]\u202e", 10, accuracy=0.2)],
    )
    text = console_text(report)
    assert "evil\N{REPLACEMENT CHARACTER}[31m[bold]x[/bold]\N{REPLACEMENT CHARACTER}" in text
    assert "\x1b[31m[bold]" not in console_text(report, styles=True)
    assert HOSTILE in console_text(realistic())


def test_console_colours_improvements_green_and_regressions_red():
    styled = console_text(realistic(), styles=True)
    green, red = "\x1b[32m", "\x1b[31m"
    assert re.search(re.escape(green) + r"\s*\+30\.0 pp", styled)  # accuracy up: good
    assert re.search(re.escape(green) + r"\s*-1\.2000", styled)  # loss down: good
    assert re.search(re.escape(red) + r"\s*-5\.0 pp", styled)  # accuracy down: bad
    assert re.search(re.escape(red) + r"\s*\+0\.0500", styled)  # loss up: bad


def test_console_handles_a_failed_session_without_rounds_or_evaluation():
    report = realistic(
        status="failed",
        reason="fewer than 3 owners joined",
        before=[],
        after=[],
        rounds=[],
        dp_epsilon=None,
        dp_delta=None,
    )
    text = console_text(report)
    assert "failed" in text and "fewer than 3 owners joined" in text
    assert "No evaluation was reported." in text and "No round completed." in text
    assert "privacy  off" in text


def test_render_console_rejects_other_types():
    with pytest.raises(TypeError):
        render_console(realistic().model_dump())  # type: ignore[arg-type]


# -- PNG -----------------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every chunk of a PNG, checking the signature and each CRC (ISO/IEC 15948, 5.3)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    return chunks


def test_png_is_a_valid_image_of_sane_size(tmp_path):
    path = plot_png(realistic(), tmp_path / "plots" / "session.png")
    data = path.read_bytes()
    width, height = struct.unpack(">II", png_chunks(data)[0][1][:8])
    assert 900 <= width <= 2400 and 350 <= height <= 1200
    assert 10_000 < len(data) < 1_000_000
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (height, width)
    assert pixels[..., :3].std() > 0.05  # something was drawn


@pytest.mark.parametrize(
    "changes",
    [
        {"rounds": [], "before": [], "after": [], "status": "failed", "dp_epsilon": None},
        {
            "before": [owner(A, "price $5 $x^2$", 10, loss=2.0, accuracy=0.1)],
            "after": [owner(A, "price $5 $x^2$", 10, loss=1.0, accuracy=0.4)],
        },
        {"after": [], "rounds": [], "status": "cancelled"},
    ],
)
def test_png_copes_with_sparse_or_odd_reports(changes):
    png_chunks(plot_png_bytes(realistic(**changes)))


def test_png_validates_dpi():
    with pytest.raises(ValueError):
        plot_png_bytes(realistic(), dpi=10)
    with pytest.raises(TypeError):
        plot_png_bytes(realistic(), dpi=100.0)  # type: ignore[arg-type]


# -- HTML ----------------------------------------------------------------------------------


def test_html_is_self_contained_and_embeds_the_plot(tmp_path):
    path = write_html(realistic(), tmp_path / "report.html")
    page = path.read_text("utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1
    png_chunks(base64.b64decode(images[0]))
    assert len(re.findall(r"\ssrc=", page)) == 1


def test_html_escapes_hostile_strings():
    report = realistic(
        session_id='s"><img src=x onerror=alert(1)>',
        reason="<b>boom</b>",
        status="failed",
    )
    page = render_html(report)
    assert HOSTILE not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>boom</b>" not in page and "&lt;b&gt;boom&lt;/b&gt;" in page
    # Only the one <img> we put there, and no event handler attribute outside text.
    assert page.count("<img ") == 1
    assert not re.search(r"<[^>]*\sonerror=", page)


def test_html_shows_before_after_numbers_and_verdicts():
    page = render_html(realistic())
    assert "26.7 %" in page and "60.0 %" in page
    assert '<td class="num good">+33.3 pp</td>' in page
    assert '<td class="num bad">-5.0 pp</td>' in page
    assert '<td class="num good">-1.2000</td>' in page
    assert "&epsilon; = 6.250" in page and "1.0e-05" in page
    assert "hospital-north" in page and "c3c3c3c3c3c3" in page


def test_html_shows_audit_summary_from_a_verification():
    events = (
        (0, AuditEvent(actor=A, role=Role.DATA_OWNER, action=Action.JOIN, session="sess-7f3a")),
        (
            1,
            AuditEvent(
                actor=B,
                role=Role.DATA_OWNER,
                action=Action.JOIN,
                session="sess-7f3a",
                outcome=Outcome.REFUSED,
                reason="stale evidence",
            ),
        ),
        (2, AuditEvent(actor=C, role=Role.DATA_OWNER, action=Action.JOIN, session="other")),
    )
    verified = VerifyReport(
        origin="fedtune.example/log",
        size=3,
        root_hash=bytes(range(32)),
        previous_size=2,
        previous_root=b"\x00" * 32,
        entries_checked=3,
        saved_to=None,
        events=events,
    )
    page = render_html(realistic(), audit_summary=verified)
    assert "fedtune.example/log" in page and bytes(range(32)).hex() in page
    assert "2 (1 refused, 0 failed)" in page and "size 2" in page
    free_form = render_html(realistic(), audit_summary={"<entries>": 12})
    assert "&lt;entries&gt;" in free_form and ">12<" in free_form
    with pytest.raises(TypeError):
        render_html(realistic(), audit_summary=["not", "a", "mapping"])  # type: ignore[arg-type]


def test_write_html_refuses_a_non_png_and_leaves_no_file(tmp_path):
    target = tmp_path / "report.html"
    with pytest.raises(ValueError):
        write_html(realistic(), target, png=b"GIF89a")
    assert not target.exists()


# -- CLI hook ------------------------------------------------------------------------------


def test_show_report_from_a_saved_file_writes_html_and_png(tmp_path):
    saved = tmp_path / "report.json"
    realistic().save(saved)
    console = Console(record=True, width=200)
    report = show_report(saved, html=tmp_path / "r.html", png=tmp_path / "r.png", console=console)
    assert report == realistic()
    printed = console.export_text()
    assert "hospital-north" in printed and "HTML report written to" in printed
    png = (tmp_path / "r.png").read_bytes()
    png_chunks(png)
    page = (tmp_path / "r.html").read_text("utf-8")
    assert base64.b64encode(png).decode() in page  # the same plot in both


def test_show_report_explains_a_missing_or_invalid_file(tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        show_report(tmp_path / "absent.json", console=Console(file=io.StringIO()))
    bad = tmp_path / "bad.json"
    bad.write_text('{"session_id": 3}')
    with pytest.raises(ReportError, match="not a session report") as info:
        show_report(bad, console=Console(file=io.StringIO()))
    assert info.value.path == bad
    with pytest.raises(TypeError):
        show_report(42)  # type: ignore[arg-type]
