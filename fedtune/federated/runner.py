"""The operator's side of a session run: SuperLink, admitted SuperNodes, the run, its report.

``fedtune session run SESSION`` drives a :class:`SessionRunner`:

1. **SuperLink** (``start_superlink``): TLS with a certificate the deployment CA issues (the
   CA every party pinned at enrolment, so owners' SuperNodes trust it without anything new),
   SuperNode authentication on, state persisted.
2. **Admission** (``admit_owners``): each data owner registered its SuperNode's public key
   with the orchestrator, signed by its identity (``RegisterNodeKey``; the owner's agent does
   it). The runner verifies the session (every acceptance, every node-key signature) and
   registers exactly those keys with the SuperLink under the owners' fingerprints. Only
   those SuperNodes can join; the ServerApp maps them to owners by key.
3. **Run** (``submit`` + ``wait``): writes the Flower App directory (``server_app:app`` and
   the relay ``client_app:app``, nothing else) and submits it with the run config naming
   the session, the operator's home and a results directory.
4. **Report** (``report``): the ``SessionReport`` the ServerApp stored with the orchestrator.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from crypto.atomicfile import atomic_write_bytes
from fedtune.federated.appdir import AppDir, ConfigValue, write_app_dir
from fedtune.federated.deployment import Deployment, RunResult, SuperLinkInfo, TlsCertificates
from fedtune.federated.errors import FederatedError, FlowerCliError, RunFailedError
from fedtune.federated.participants import VerifiedSession, verify_session
from fedtune.federated.report_model import SessionReport
from fedtune.federated.server_app import RUN_CONFIG
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient
from fedtune.orchestrator.errors import RemoteError

__all__ = ["RunnerSpec", "SessionRunError", "SessionRunner", "write_session_app"]

APP_NAME = "fedtune-session"
SERVERAPP = "fedtune.federated.server_app:app"
CLIENTAPP = "fedtune.federated.client_app:app"

Progress = Callable[[str], None]


class SessionRunError(FederatedError):
    """The operator could not run the session; ``step`` names where it stopped."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"session run, step {step}: {reason}")


@dataclass(frozen=True)
class RunnerSpec:
    """The operator's choices for running sessions; ``deployment_dir`` is the orchestrator's.

    ``public_hosts`` are the names owners dial the SuperLink by (they go into its
    certificate with 127.0.0.1 and localhost). ``keep_aggregates`` writes each committed
    secure-aggregation average into the results directory (audits, tests).
    """

    deployment_dir: Path
    workdir: Path
    host: str = "127.0.0.1"
    port: int | None = None
    public_hosts: tuple[str, ...] = ("127.0.0.1",)
    key_wait_s: float = 600.0
    run_timeout_s: float = 6 * 3600.0
    keep_aggregates: bool = False
    run_config: dict[str, ConfigValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("deployment_dir", "workdir"):
            if not isinstance(getattr(self, name), Path):
                raise TypeError(f"{name} must be a pathlib.Path")
        if not self.public_hosts or not all(isinstance(h, str) and h for h in self.public_hosts):
            raise ValueError("public_hosts must name at least one host")
        for name in ("key_wait_s", "run_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        unknown = sorted(set(self.run_config) - set(RUN_CONFIG))
        if unknown:
            raise ValueError(f"run_config keys {unknown} are not the session app's "
                             f"({sorted(RUN_CONFIG)})")

    @property
    def operator_home(self) -> Path:
        """The operator's party home inside the deployment directory."""
        return self.deployment_dir / "operator"


def write_session_app(dest: Path) -> AppDir:
    """The Flower App directory of fedtune sessions (components resolve to installed fedtune)."""
    return write_app_dir(
        dest, APP_NAME, SERVERAPP, CLIENTAPP, config=RUN_CONFIG,
        description="fedtune federated fine-tuning session",
    )


def superlink_tls(deployment_dir: Path, dest: Path, hosts: tuple[str, ...]) -> TlsCertificates:
    """A SuperLink certificate issued by the deployment CA for ``hosts`` (+ loopback names)."""
    from fedtune.orchestrator import pki
    from fedtune.orchestrator.deployment import DeploymentPaths, read_private

    paths = DeploymentPaths(deployment_dir)
    ca_pem = paths.ca_cert.read_bytes()
    ca_cert = pki.cert_from_pem(ca_pem)
    ca_key = pki.key_from_pem(read_private(paths.ca_key))
    # The SuperLink's own SuperExec dials its Runtime API on 127.0.0.1 (DEPLOYMENT-NOTES 4).
    names = list(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))
    key, cert = pki.issue_server_certificate(
        ca_key, ca_cert, names, now=dt.datetime.now(dt.UTC), validity=dt.timedelta(days=30)
    )
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(dest / "ca.pem", ca_pem)
    atomic_write_bytes(dest / "superlink.pem", pki.cert_to_pem(cert))
    atomic_write_bytes(dest / "superlink.key", pki.key_to_pem(key), mode=0o600)
    return TlsCertificates(dest / "ca.pem", dest / "superlink.pem", dest / "superlink.key")


class SessionRunner:
    """Runs sessions on one SuperLink (its own, or a running ``deployment`` passed in)."""

    def __init__(
        self,
        spec: RunnerSpec,
        *,
        deployment: Deployment | None = None,
        progress: Progress | None = None,
    ) -> None:
        if not isinstance(spec, RunnerSpec):
            raise TypeError("spec must be a RunnerSpec")
        if deployment is not None and not deployment.supernode_auth:
            raise ValueError("the deployment must authenticate SuperNodes (supernode_auth=True)")
        self.spec = spec
        self._progress = progress or (lambda _: None)
        self._own = deployment is None
        self.deployment = deployment
        self.config = ClientConfig.load(spec.operator_home)

    def __enter__(self) -> SessionRunner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the SuperLink if this runner started it."""
        if self._own and self.deployment is not None:
            self.deployment.close()
            self.deployment = None

    # -- the SuperLink --------------------------------------------------------------------------

    def start_superlink(self) -> SuperLinkInfo:
        """Start a TLS SuperLink that admits registered SuperNodes only."""
        if self.deployment is not None and self.deployment.superlink is not None:
            return self.deployment.superlink
        spec = self.spec
        self._progress("starting the SuperLink")
        tls = superlink_tls(spec.deployment_dir, spec.workdir / "tls", spec.public_hosts)
        self.deployment = Deployment(
            spec.workdir / "flower", tls=tls, host=spec.host, superlink_port=spec.port,
            supernode_auth=True, persist_state=True,
        )
        self._own = True
        return self.deployment.start_superlink()

    def _deployment(self) -> Deployment:
        if self.deployment is None:
            raise SessionRunError("superlink", "no SuperLink: call start_superlink() first")
        return self.deployment

    # -- admission ------------------------------------------------------------------------------

    def verified(self, session_id: str) -> VerifiedSession:
        """The session, with every acceptance and node-key signature checked."""
        with OrchestratorClient(self.config) as client:
            return verify_session(client.get_session(session_id))

    def admit_owners(self, session_id: str) -> dict[str, int]:
        """Wait (bounded) for every owner's signed SuperNode key; register each; fp -> node id."""
        deadline = time.monotonic() + self.spec.key_wait_s
        while True:
            session = self.verified(session_id)
            if session.state != "running":
                raise SessionRunError("admission", f"session {session_id} is {session.state}; "
                                      "start it first ('fedtune session start')")
            missing = [o.fingerprint for o in session.owners if not o.node_key]
            if not missing or time.monotonic() > deadline:
                break
            self._progress(f"waiting for {len(missing)} owner(s) to register a SuperNode key")
            time.sleep(2.0)
        ready = [o for o in session.owners if o.node_key]
        if len(ready) < session.terms.min_participants:
            raise SessionRunError(
                "admission", f"{len(ready)} owner(s) registered a SuperNode key within "
                f"{self.spec.key_wait_s:.0f} s, the terms need {session.terms.min_participants}"
            )
        deployment = self._deployment()
        keys = self.spec.workdir / "node-keys" / session_id
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        admitted = {}
        for owner in ready:
            path = keys / f"{owner.fingerprint.split(':', 1)[1][:16]}.pub"
            atomic_write_bytes(path, owner.node_key.encode("ascii") + b"\n")
            self._progress(f"admitting the SuperNode of {owner.fingerprint[:20]}...")
            try:
                admitted[owner.fingerprint] = deployment.register_supernode(
                    path, owner.fingerprint
                )
            except FlowerCliError as exc:
                # Registered by an earlier run of this session on the same SuperLink state.
                if "already in use" not in (exc.output + str(exc)).lower():
                    raise
                admitted[owner.fingerprint] = 0
        return admitted

    # -- the run --------------------------------------------------------------------------------

    def results_dir(self, session_id: str) -> Path:
        """Where the ServerApp writes ``report.json`` (and kept aggregates) for a session."""
        return (self.spec.workdir / "results" / session_id).resolve()

    def submit(
        self,
        session_id: str,
        *,
        app: AppDir | None = None,
        run_config: Mapping[str, ConfigValue] | None = None,
    ) -> int:
        """Write the session app (unless given) and submit it; returns the run id.

        ``run_config`` overrides the spec's for this run (keys the app must declare).
        """
        deployment = self._deployment()
        if app is None:
            app = write_session_app(
                self.spec.workdir / "apps" / f"{session_id}-{uuid.uuid4().hex[:8]}"
            )
        results = self.results_dir(session_id)
        results.mkdir(parents=True, exist_ok=True, mode=0o700)
        config: dict[str, ConfigValue] = {
            "session-id": session_id,
            "orchestrator-home": str(self.spec.operator_home.resolve()),
            "results-dir": str(results),
            "keep-aggregates": self.spec.keep_aggregates,
            **self.spec.run_config,
            **dict(run_config or {}),
        }
        self._progress("submitting the run")
        return deployment.submit(app, run_config=config)

    def wait(self, run_id: int) -> RunResult:
        """Wait for the run to end (bounded); a failed run is returned, not raised."""
        return self._deployment().wait(run_id, timeout_s=self.spec.run_timeout_s, check=False)

    def report(self, session_id: str) -> SessionReport:
        """The report the ServerApp stored with the orchestrator."""
        with OrchestratorClient(self.config) as client:
            document = client.get_session_report(session_id)
        return SessionReport.model_validate_json(document.report)

    def run(self, session_id: str) -> tuple[RunResult, SessionReport]:
        """Admit the owners, run the session, return how the run ended and the report."""
        self.start_superlink()
        self.admit_owners(session_id)
        result = self.wait(self.submit(session_id))
        try:
            report = self.report(session_id)
        except RemoteError as exc:  # no report stored: the ServerApp failed before the end
            raise RunFailedError(result.run_id, result.status,
                                 "ended without a session report", details=result.details,
                                 log_path=result.log_path) from exc
        return result, report
