"""``fedtune attest``: verify TEE evidence, make and inspect signed release policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from crypto.atomicfile import atomic_write_bytes
from crypto.errors import CryptoError
from crypto.identity import FINGERPRINT_PREFIX, Identity, PublicIdentity
from enclave.attest.amd_certs import load_certificates
from enclave.attest.evidence import REPORT_DATA_SIZE, Evidence, EvidenceKind
from enclave.attest.measurement import runtime_measurement
from enclave.attest.policy import (
    DEFAULT_MAX_EVIDENCE_AGE_S,
    AllowedMeasurement,
    ReleasePolicy,
    SignedReleasePolicy,
)
from enclave.attest.simulated import SIMULATED_WARNING, SimulatedTee
from enclave.attest.snp import load_report
from enclave.attest.verdict import CheckStatus, Verdict
from enclave.attest.verify import verify as verify_evidence
from enclave.errors import MalformedEvidence

app = typer.Typer(
    help="Verify TEE evidence (SEV-SNP, TDX, simulated) and manage signed release policies.",
    no_args_is_help=True,
)
policy_app = typer.Typer(help="Create and inspect signed release policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

_STATUS_STYLE = {
    CheckStatus.PASSED: ("passed", "green"),
    CheckStatus.FAILED: ("FAILED", "bold red"),
    CheckStatus.NOT_APPLICABLE: ("n/a", "dim"),
}


def _out() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _warn(message: str) -> None:
    _err().print(
        Panel(Text(message, style="bold yellow"), title="WARNING", border_style="yellow"),
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise typer.BadParameter(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {what} file {path}: {exc.strerror}") from None


def _parse_time(value: str, option: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 time (e.g. 2025-07-01T12:00:00Z)", param_hint=option
        ) from None
    if when.tzinfo is None:
        raise typer.BadParameter(
            f"{value!r} has no timezone; add one (e.g. Z for UTC)", param_hint=option
        )
    return when


def _hex(value: str, option: str, *, size: int | None = None) -> bytes:
    text = value.strip().removeprefix("0x")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not hex", param_hint=option) from None
    if size is not None and len(data) != size:
        raise typer.BadParameter(
            f"needs {size} bytes ({2 * size} hex digits), got {len(data)}", param_hint=option
        )
    return data


def _key_fingerprint(value: str, option: str) -> str:
    """A key given as a fingerprint (ed25519:...) or as the path of a PEM public key."""
    if value.startswith(FINGERPRINT_PREFIX):
        hexpart = value.removeprefix(FINGERPRINT_PREFIX)
        if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
            raise typer.BadParameter(f"{value!r} is not a key fingerprint", param_hint=option)
        return value
    try:
        return PublicIdentity.load(Path(value)).fingerprint
    except CryptoError as exc:
        raise typer.BadParameter(
            f"{value!r} is neither a fingerprint (ed25519:<64 hex>) nor a readable PEM public "
            f"key ({exc})",
            param_hint=option,
        ) from None


def _der_list(path: Path, what: str) -> list[bytes]:
    try:
        certs = load_certificates(_read(path, what), field=what)
    except MalformedEvidence as exc:
        raise typer.BadParameter(f"{path}: {exc.reason}", param_hint=f"--{what}") from None
    return [cert.public_bytes(Encoding.DER) for cert in certs]


def _load_evidence(path: Path, kind: EvidenceKind) -> Evidence:
    data = _read(path, "evidence")
    if data.lstrip().startswith(b"{"):
        # An Evidence document (e.g. saved from a provider) carries its own certificates.
        try:
            evidence = Evidence.model_validate_json(data)
        except ValidationError:
            evidence = None
        if evidence is not None:
            if evidence.kind is not kind:
                raise typer.BadParameter(
                    f"{path} holds {evidence.kind.value} evidence, not {kind.value}",
                    param_hint="--kind",
                )
            return evidence
    if kind is EvidenceKind.SEV_SNP:
        try:
            raw = load_report(data)
        except MalformedEvidence as exc:
            raise typer.BadParameter(f"{path}: {exc.reason}", param_hint="EVIDENCE") from None
    elif kind is EvidenceKind.TDX:
        raw = data
        stripped = b"".join(data.split())
        if stripped and all(c in b"0123456789abcdefABCDEF" for c in stripped):
            raw = bytes.fromhex(stripped.decode("ascii"))
    else:
        raw = data
    return Evidence(kind=kind, raw=raw)


def _reason(check_reason: str, expected: str | None, got: str | None) -> Text:
    text = Text(check_reason)
    if expected is not None:
        text.append(f"\nexpected: {expected}", style="dim")
    if got is not None:
        text.append(f"\ngot:      {got}", style="dim")
    return text


def _render(verdict: Verdict, *, with_policy: bool) -> None:
    out = _out()
    for warning in verdict.warnings:
        _warn(warning)
    table = Table(title=f"{verdict.kind} evidence", title_justify="left", expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("why")
    for check in verdict.checks:
        label, style = _STATUS_STYLE[check.status]
        table.add_row(
            Text(check.name, style=style if check.status is CheckStatus.FAILED else ""),
            Text(label, style=style),
            _reason(check.reason, check.expected, check.got),
        )
    out.print(table)
    counts = {status: 0 for status in CheckStatus}
    for check in verdict.checks:
        counts[check.status] += 1
    scope = "" if with_policy else " (authenticity only: no --policy given)"
    tally = (
        f"{counts[CheckStatus.PASSED]} passed, {counts[CheckStatus.FAILED]} failed, "
        f"{counts[CheckStatus.NOT_APPLICABLE]} not applicable"
    )
    if verdict.ok:
        out.print(f"[bold green]PASS[/] {verdict.kind} evidence verified{scope}: {tally}")
    else:
        failed = ", ".join(c.name for c in verdict.failures) or "no check passed"
        out.print(f"[bold red]FAIL[/] {verdict.kind} evidence rejected{scope}: {failed}")
    for warning in verdict.warnings:
        out.print(f"[bold yellow]WARNING:[/] {warning}")


@app.command("verify")
def verify_command(
    evidence: Annotated[
        Path, typer.Argument(help="Report/quote file: raw binary, hex text, or Evidence JSON.")
    ],
    kind: Annotated[EvidenceKind, typer.Option("--kind", help="Evidence kind.")],
    vcek: Annotated[
        Path | None, typer.Option(help="SEV-SNP: the VCEK/VLEK certificate (DER or PEM).")
    ] = None,
    chain: Annotated[
        Path | None,
        typer.Option(help="Certificates above the leaf (SNP: ASK/ARK; TDX: PCK chain), PEM."),
    ] = None,
    collateral: Annotated[
        Path | None, typer.Option(help="TDX: collateral JSON (TCB info, QE identity, CRLs).")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Verify as of this ISO-8601 time (default: now).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Signed release policy JSON to evaluate.")
    ] = None,
    policy_issuer: Annotated[
        list[str] | None,
        typer.Option(
            help="Trusted policy issuer: fingerprint (ed25519:...) or PEM public key. Repeatable."
        ),
    ] = None,
    report_data: Annotated[
        str | None, typer.Option(help="Expected report data, 64 bytes as hex.")
    ] = None,
    simulated_key: Annotated[
        list[str] | None,
        typer.Option(help="Pinned simulated platform key (fingerprint or PEM). Repeatable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Verify evidence and print every check; exit 0 only when it passes."""
    now = _parse_time(at, "--at") if at else datetime.now(UTC)
    expected = _hex(report_data, "--report-data", size=REPORT_DATA_SIZE) if report_data else None
    issuers = [_key_fingerprint(v, "--policy-issuer") for v in policy_issuer or []]
    sim_keys = [_key_fingerprint(v, "--simulated-key") for v in simulated_key or []]
    signed_policy = SignedReleasePolicy.load(policy) if policy else None
    if signed_policy is not None and not issuers:
        raise typer.BadParameter(
            "--policy needs --policy-issuer: the key (or fingerprint) you trust to sign release "
            f"policies; this one names issuer {signed_policy.policy.issuer}",
            param_hint="--policy-issuer",
        )

    loaded = _load_evidence(evidence, kind)
    certificates = list(loaded.certificates)
    if vcek is not None:
        certificates = _der_list(vcek, "vcek") + certificates
    if chain is not None:
        certificates += _der_list(chain, "chain")
    collateral_text = loaded.collateral
    if collateral is not None:
        collateral_text = _read(collateral, "collateral").decode("utf-8")
    final = Evidence(
        kind=loaded.kind, raw=loaded.raw, certificates=certificates, collateral=collateral_text
    )

    verdict = verify_evidence(
        final,
        signed_policy,
        expected,
        trusted_policy_issuers=issuers,
        now=now,
        simulated_platform_keys=sim_keys,
    )
    if as_json:
        for warning in verdict.warnings:
            _warn(warning)
        document = {"ok": verdict.ok, **verdict.model_dump(mode="json")}
        typer.echo(json.dumps(document, indent=2))
    else:
        _render(verdict, with_policy=signed_policy is not None)
    if not verdict.ok:
        raise typer.Exit(1)


def _tdx_entry(value: str, label: str) -> AllowedMeasurement:
    values: dict[str, bytes] = {}
    for part in value.split(","):
        name, sep, hexval = part.partition("=")
        if not sep:
            raise typer.BadParameter(
                f"{part!r} is not name=hex (e.g. mrtd=ab12...,rtmr0=...)",
                param_hint="--tdx-measurement",
            )
        values[name.strip()] = _hex(hexval, "--tdx-measurement", size=48)
    return _entry(EvidenceKind.TDX, values, label, "--tdx-measurement")


def _entry(
    kind: EvidenceKind, values: dict[str, bytes], label: str, option: str
) -> AllowedMeasurement:
    try:
        return AllowedMeasurement(kind=kind, values=values, label=label)
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"], param_hint=option) from None


def _min_tcb(values: list[str]) -> dict[EvidenceKind, dict[str, int]]:
    result: dict[EvidenceKind, dict[str, int]] = {}
    for value in values:
        kind_text, sep, rest = value.partition(":")
        name, sep2, number = rest.partition("=")
        try:
            kind = EvidenceKind(kind_text)
            level = int(number)
        except ValueError:
            kind = None
            level = -1
        if not sep or not sep2 or kind is None or level < 0 or not name:
            raise typer.BadParameter(
                f"{value!r} is not KIND:NAME=N (e.g. sev-snp:snp=8, tdx:tee_tcb_svn.0=3)",
                param_hint="--min-tcb",
            )
        result.setdefault(kind, {})[name] = level
    return result


@policy_app.command("create")
def policy_create(
    name: Annotated[str, typer.Option(help="What the policy guards, e.g. acme/base-v1.")],
    version: Annotated[int, typer.Option(min=1, help="Policy version; raise it on every change.")],
    key: Annotated[Path, typer.Option(help="The issuer's identity (PEM private key) to sign.")],
    out: Annotated[Path, typer.Option(help="Where to write the signed policy JSON.")],
    kind: Annotated[
        list[EvidenceKind] | None,
        typer.Option(help="Allowed evidence kind (default: the kinds measurements are given for)."),
    ] = None,
    snp_measurement: Annotated[
        list[str] | None, typer.Option(help="Allowed SEV-SNP MEASUREMENT (48-byte hex).")
    ] = None,
    tdx_measurement: Annotated[
        list[str] | None,
        typer.Option(help="Allowed TDX build: mrtd=HEX,rtmr0=HEX,rtmr1=HEX,rtmr2=HEX[,rtmr3=HEX]."),
    ] = None,
    simulated_measurement: Annotated[
        list[str] | None,
        typer.Option(help="Allowed simulated measurement (hex), or 'runtime' for this install's."),
    ] = None,
    label: Annotated[str, typer.Option(help="Label for the measurements given.")] = "",
    min_tcb: Annotated[
        list[str] | None, typer.Option(help="Minimum TCB as KIND:NAME=N, e.g. sev-snp:snp=8.")
    ] = None,
    allow_debug: Annotated[bool, typer.Option(help="Accept guests with debugging on.")] = False,
    max_age: Annotated[
        int, typer.Option(min=1, help="Max age of timestamped evidence, seconds.")
    ] = DEFAULT_MAX_EVIDENCE_AGE_S,
    allow_simulated: Annotated[
        bool, typer.Option(help="Accept the simulated TEE (development only!).")
    ] = False,
    simulated_key: Annotated[
        list[str] | None, typer.Option(help="Trusted simulated platform key (fingerprint or PEM).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Expiry time (ISO-8601), or a duration like 30d.")
    ] = None,
) -> None:
    """Create and sign a release policy from flags."""
    identity = Identity.load(key)
    now = datetime.now(UTC).replace(microsecond=0)
    entries: list[AllowedMeasurement] = []
    for value in snp_measurement or []:
        entries.append(
            _entry(
                EvidenceKind.SEV_SNP,
                {"measurement": _hex(value, "--snp-measurement", size=48)},
                label,
                "--snp-measurement",
            )
        )
    entries.extend(_tdx_entry(value, label) for value in tdx_measurement or [])
    for value in simulated_measurement or []:
        digest = (
            runtime_measurement()
            if value == "runtime"
            else _hex(value, "--simulated-measurement", size=48)
        )
        entries.append(
            _entry(
                EvidenceKind.SIMULATED,
                {"measurement": digest},
                label or ("this install's sandbox runtime" if value == "runtime" else ""),
                "--simulated-measurement",
            )
        )
    kinds = list(dict.fromkeys(kind or [e.kind for e in entries]))
    if EvidenceKind.SIMULATED in kinds and not allow_simulated:
        raise typer.BadParameter(
            "simulated evidence needs --allow-simulated (development only)",
            param_hint="--allow-simulated",
        )
    expires_at = None
    if expires:
        if expires.endswith("d") and expires[:-1].isdigit():
            expires_at = now + timedelta(days=int(expires[:-1]))
        else:
            expires_at = _parse_time(expires, "--expires")
    try:
        policy = ReleasePolicy(
            name=name,
            version=version,
            issuer=identity.fingerprint,
            issued_at=now,
            expires_at=expires_at,
            allowed_kinds=kinds,
            allowed_measurements=entries,
            min_tcb=_min_tcb(min_tcb or []),
            allow_debug=allow_debug,
            max_evidence_age_s=max_age,
            allow_simulated=allow_simulated,
            simulated_platform_keys=[
                _key_fingerprint(v, "--simulated-key") for v in simulated_key or []
            ],
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise typer.BadParameter(f"{where}: {first['msg']}" if where else first["msg"]) from None
    signed = policy.sign(identity)
    atomic_write_bytes(out, signed.model_dump_json(indent=2).encode("utf-8") + b"\n")
    if allow_simulated:
        _warn(SIMULATED_WARNING)
    if not entries:
        _warn("the policy allows no measurement: it will refuse all evidence")
    _out().print(
        f"wrote {out}: policy {name!r} v{version} signed by {identity.fingerprint}\n"
        f"digest {signed.digest}"
    )


@policy_app.command("show")
def policy_show(
    path: Annotated[Path, typer.Argument(help="Signed release policy JSON.")],
    policy_issuer: Annotated[
        list[str] | None,
        typer.Option(help="Trusted issuer (fingerprint or PEM public key) to check against."),
    ] = None,
) -> None:
    """Show a signed release policy and whether its signature (and issuer) check out."""
    signed = SignedReleasePolicy.load(path)
    policy = signed.policy
    problem = signed.signature_problem()
    issuers = [_key_fingerprint(v, "--policy-issuer") for v in policy_issuer or []]
    if policy.allow_simulated:
        _warn(SIMULATED_WARNING)
    table = Table(title=f"release policy {policy.name!r} v{policy.version}", title_justify="left")
    table.add_column("field", no_wrap=True)
    table.add_column("value")
    table.add_row("issuer", policy.issuer)
    table.add_row("issued at", policy.issued_at.isoformat())
    table.add_row("expires at", policy.expires_at.isoformat() if policy.expires_at else "never")
    table.add_row("allowed kinds", ", ".join(k.value for k in policy.allowed_kinds) or "(none)")
    for entry in policy.allowed_measurements:
        values = "\n".join(f"{n}={v.hex()}" for n, v in sorted(entry.values.items()))
        title = f"measurement ({entry.kind.value})"
        table.add_row(title, values + (f"\n[dim]{entry.label}[/]" if entry.label else ""))
    if not policy.allowed_measurements:
        table.add_row("measurements", "[bold red](none: refuses all evidence)[/]")
    for kind_key, levels in policy.min_tcb.items():
        text = ", ".join(f"{n}>={v}" for n, v in sorted(levels.items()))
        table.add_row(f"min TCB ({kind_key.value})", text)
    table.add_row("debug", "allowed" if policy.allow_debug else "forbidden")
    table.add_row("max evidence age", f"{policy.max_evidence_age_s} s")
    table.add_row(
        "simulated TEE",
        "[bold yellow]allowed[/]" if policy.allow_simulated else "refused (production)",
    )
    for fingerprint in policy.simulated_platform_keys:
        table.add_row("simulated platform key", fingerprint)
    table.add_row("report data binding", policy.report_data_binding)
    table.add_row("digest", signed.digest)
    out = _out()
    out.print(table)
    if problem:
        out.print(f"[bold red]signature INVALID:[/] {problem}")
        raise typer.Exit(1)
    out.print(f"[green]signature valid[/] (by {policy.issuer})")
    if issuers:
        if policy.issuer in issuers:
            out.print("[green]issuer trusted[/]")
        else:
            out.print("[bold red]issuer NOT trusted[/]")
            raise typer.Exit(1)


@app.command("simulate")
def simulate_command(
    report_data: Annotated[str, typer.Option(help="Report data to bind, 64 bytes as hex.")],
    out: Annotated[Path, typer.Option(help="Where to write the simulated evidence.")],
    home: Annotated[
        Path | None,
        typer.Option(help="fedtune home holding the platform key (default: FEDTUNE_HOME)."),
    ] = None,
) -> None:
    """Produce simulated-TEE evidence with this install's platform key (development only)."""
    from fedtune.settings import load_settings

    data = _hex(report_data, "--report-data", size=REPORT_DATA_SIZE)
    tee = SimulatedTee.load_or_create(home or load_settings().home)
    evidence = tee.get_evidence(data)
    atomic_write_bytes(out, evidence.raw)
    _warn(SIMULATED_WARNING)
    _out().print(
        f"wrote {out}\nplatform key {tee.public_key.fingerprint}\n"
        f"measurement {tee.measurement.hex()}"
    )
