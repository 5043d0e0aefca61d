"""Attach a sandbox's isolation report to an attestation verdict, so weaker isolation shows in it.

The report comes with ``Attest`` but is not covered by the evidence (its report data binds
only the nonce and the ephemeral key), so it is recorded as what the runtime reported: a
``sandbox.isolation`` check that passes (isolation is the owner's concern, not a release
rule) and, when the isolation is weaker than the bubblewrap sandbox, a loud warning in the
verdict's warnings, where every tool that renders verdicts shows it.
"""

from __future__ import annotations

from enclave.attest.verdict import Check, Verdict
from enclave.sandbox.isolation import IsolationReport

CHECK_NAME = "sandbox.isolation"


def isolation_check(report: IsolationReport) -> Check:
    """The ``sandbox.isolation`` check describing ``report``."""
    if not isinstance(report, IsolationReport):
        raise TypeError("report must be an IsolationReport")
    spaces = ", ".join(report.namespaces) or "none"
    facts = (
        f"{report.mode.value}; namespaces: {spaces}; "
        f"network {'loopback only' if report.network_isolated else 'reachable'}; "
        f"dumpable {str(report.dumpable).lower()}; core limit {report.core_limit}"
    )
    weaker = " (WEAKER than the bubblewrap sandbox)" if report.weaker else ""
    return Check.passed(
        CHECK_NAME, f"reported by the runtime, not covered by the evidence: {facts}{weaker}"
    )


def with_isolation(verdict: Verdict, report: IsolationReport) -> Verdict:
    """``verdict`` plus the isolation check, and the report's warnings when it is weaker."""
    if not isinstance(verdict, Verdict):
        raise TypeError("verdict must be a Verdict")
    warnings = list(verdict.warnings)
    if report.weaker:
        warnings.extend(w for w in report.warnings if w not in warnings)
    return verdict.model_copy(
        update={"checks": [*verdict.checks, isolation_check(report)], "warnings": warnings}
    )
