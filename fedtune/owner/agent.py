"""The data owner's agent for one session: sandbox, attested key release, model, terms, SuperNode.

For one owner and one running session, :class:`OwnerAgent` does, in order:

1. ``prepare()``:
   - launches the sandbox on the owner's data directory (read-only inside);
   - for each secret the session needs (the model's data key; for CKKS sessions also the
     session's CKKS secret context): asks the key broker for a nonce, has the sandbox attest
     with it, relays the evidence to the broker's Release and the wrapped secret back into
     the sandbox (``InstallKey``): the agent only ever handles ciphertext;
   - streams the sealed model from the registry into the sandbox (``LoadModel``);
   - configures the sandbox with the session terms exactly as signed plus the provider's and
     the owner's own acceptance signatures; the sandbox verifies them itself and locks its
     set-up (``Configure``);
   - makes a SuperNode authentication key and registers its public half with the
     orchestrator, signed by the owner's identity (``RegisterNodeKey``): the operator admits
     exactly that SuperNode, under the owner's fingerprint.
2. ``start_supernode()``: starts the owner's SuperNode with node config naming the sandbox's
   socket, retrying (bounded) until the operator has registered the key with the SuperLink.

``close()`` stops the SuperNode and the sandbox. The sandbox dies with the thread that
started it (see ``enclave.sandbox.launcher``): call ``prepare`` from a long-lived thread.

With ``JoinSpec.policy`` (what ``fedtune owner join`` does) the owner is a relying party too
(mutual attestation): the sandbox starts on an empty private staging directory, attests to a
nonce of the owner's, and its evidence is verified against the owner's own signed policy
(``fedtune.owner.policy``); the verdict goes on the audit log (``RecordOwnerVerdict``). Only
when it passes are the record files staged (``fedtune.owner.staging``); a refusal stops the
sandbox and raises :class:`SandboxRefused` with nothing staged. ``reattest()`` repeats both the
key broker's and the owner's check on a running sandbox. With ``JoinSpec.jail`` the SuperNode
and every ClientApp it starts run in a bubblewrap jail that shows neither the records, the
staging directory nor ``$FEDTUNE_HOME`` (``fedtune.owner.jail``). ``seal_adapter()`` has the
sandbox seal the final adapter under the session key and stores the ciphertext with the
orchestrator; nobody holds it in plaintext until every party approved an export.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from crypto.atomicfile import atomic_write_bytes
from crypto.identity import Identity
from enclave.sandbox import (
    PartySignature,
    SandboxHandle,
    SandboxLauncher,
    SecretKind,
    SignedSessionTerms,
)
from enclave.sandbox.adapter_seal import SealedAdapter
from enclave.sandbox.launcher import Tee
from enclave.sandbox.state import ConfigureResult
from fedtune.federated.deployment import (
    Deployment,
    SuperNodeInfo,
    TlsCertificates,
    write_supernode_auth_key,
)
from fedtune.federated.errors import ProcessStartError
from fedtune.federated.participants import VerifiedSession, verify_session
from fedtune.orchestrator.broker import SecretKind as BrokerSecret
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient
from fedtune.owner.config import OwnerPolicy
from fedtune.owner.errors import JoinError, ParticipationStopped, SandboxRefused
from fedtune.owner.jail import JailSpec, SuperNodeJail, protected_paths
from fedtune.owner.policy import OwnerCheck, check_sandbox, owner_policy
from fedtune.owner.staging import make_staging_dir, stage_records, unstage
from fedtune.sandbox_client import SandboxClient

__all__ = ["JoinSpec", "OwnerAgent", "Prepared"]

SUPERNODE_NAME = "owner"
SOCKET_KEY = "sandbox-socket"
SESSION_KEY = "session-id"
OWNER_KEY = "owner"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class JoinSpec:
    """What an owner decides for one session: its records, where to work, where Flower is.

    ``work_dir`` holds the sandbox's socket (keep the path short: a Unix socket path has
    at most 107 bytes), the SuperNode's key and its Flower state. ``superlink_ca`` defaults to
    the deployment CA the owner pinned at enrolment (the SuperLink's certificate is issued by
    it). ``platform_key`` is the simulated TEE's key (development and tests only).
    """

    session_id: str
    data_dir: Path
    train_file: str
    work_dir: Path
    superlink_address: str
    eval_file: str | None = None
    superlink_ca: Path | None = None
    tee: Tee = "simulated"
    platform_key: Identity | None = None
    allow_weak_isolation: bool = False
    num_threads: int | None = None
    sandbox_start_timeout_s: float = 180.0
    supernode_wait_s: float = 180.0
    extra_node_config: dict[str, str] = field(default_factory=dict)
    # Mutual attestation: the owner's own policy, checked before any record is staged.
    policy: OwnerPolicy | None = None
    # Run the SuperNode in a bubblewrap jail hiding these paths (and the records, staging).
    jail: bool = False
    protected: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        for name in ("data_dir", "work_dir"):
            if not isinstance(getattr(self, name), Path):
                raise TypeError(f"{name} must be a pathlib.Path")
        if self.policy is not None and not isinstance(self.policy, OwnerPolicy):
            raise TypeError("policy must be an OwnerPolicy (owner.toml's [policy])")
        if not isinstance(self.protected, tuple) or any(
            not isinstance(p, Path) for p in self.protected
        ):
            raise TypeError("protected must be a tuple of pathlib.Path")
        if not isinstance(self.session_id, str) or not self.session_id:
            raise ValueError("session_id must be a non-empty str")
        if not isinstance(self.train_file, str) or not self.train_file:
            raise ValueError("train_file must name the record file inside data_dir")
        if not isinstance(self.superlink_address, str) or ":" not in self.superlink_address:
            raise ValueError("superlink_address must be 'host:port'")
        for name in ("sandbox_start_timeout_s", "supernode_wait_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        reserved = {SOCKET_KEY, SESSION_KEY, OWNER_KEY} & set(self.extra_node_config)
        if reserved:
            raise ValueError(f"extra_node_config may not set {sorted(reserved)}")


@dataclass(frozen=True)
class Prepared:
    """A sandbox ready for the session's rounds, and the SuperNode key the owner registered."""

    session: VerifiedSession
    socket_path: Path
    configured: ConfigureResult
    node_key: Path  # the SuperNode's private authentication key
    node_public_key: bytes  # its OpenSSH public key, as registered
    owner_check: OwnerCheck | None = None  # the owner's own verdict, with a policy
    staging_dir: Path | None = None  # where the records were staged, with a policy


class OwnerAgent:
    """One owner's side of one session (see the module doc)."""

    def __init__(
        self, config: ClientConfig, spec: JoinSpec, *, progress: Progress | None = None
    ) -> None:
        if not isinstance(config, ClientConfig):
            raise TypeError("config must be the owner's ClientConfig")
        if not isinstance(spec, JoinSpec):
            raise TypeError("spec must be a JoinSpec")
        self.config = config
        self.spec = spec
        self._progress = progress or (lambda _: None)
        self.sandbox: SandboxHandle | None = None
        self.prepared: Prepared | None = None
        self.deployment: Deployment | None = None
        self.supernode: SuperNodeInfo | None = None
        self.restarts = 0
        self._staged: list[Path] = []

    def __enter__(self) -> OwnerAgent:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- step 1 ---------------------------------------------------------------------------------

    def prepare(self) -> Prepared:
        """Launch, attest, release, load, configure the sandbox; register the SuperNode key."""
        if self.prepared is not None:
            return self.prepared
        spec = self.spec
        identity = self.config.load_identity()
        with OrchestratorClient(self.config) as client:
            session = verify_session(client.get_session(spec.session_id))
            if session.state != "running":
                raise JoinError("session", f"session {spec.session_id} is {session.state}; "
                                "keys are released for running sessions only")
            mine = next((o for o in session.owners if o.fingerprint == identity.fingerprint),
                        None)
            if mine is None:
                raise JoinError("session", "you are not an invited owner of this session")
            staging = None
            if spec.policy is not None:
                # The sandbox sees an empty directory until the owner's verdict passed.
                staging = make_staging_dir(spec.work_dir / "staging")
            self._progress("starting the sandbox")
            self.sandbox = SandboxLauncher(
                staging or spec.data_dir,
                work_dir=spec.work_dir / "sandbox",
                tee=spec.tee,
                platform_key=spec.platform_key,
                allow_weak_isolation=spec.allow_weak_isolation,
                num_threads=spec.num_threads,
                start_timeout=spec.sandbox_start_timeout_s,
            ).start()
            check = None
            with SandboxClient(self.sandbox.socket_path) as sandbox:
                if staging is not None:
                    check = self._owner_verdict(client, sandbox, identity, "join")
                    names = [spec.train_file] + ([spec.eval_file] if spec.eval_file else [])
                    self._progress(f"your policy accepts the sandbox; staging {len(names)} "
                                   "record file(s)")
                    self._staged = stage_records(spec.data_dir, staging, names)
                self._install_secrets(client, sandbox, session)
                self._load_model(client, sandbox, session)
                configured = self._configure(sandbox, session, identity)
            node_key, public = self._register_node_key(client, identity)
        self.prepared = Prepared(session, self.sandbox.socket_path, configured, node_key, public,
                                 check, staging)
        return self.prepared

    def _owner_verdict(
        self, client: OrchestratorClient, sandbox: SandboxClient, identity: Identity, stage: str
    ) -> OwnerCheck:
        """The owner's own check of the sandbox, put on the log; SandboxRefused if it fails."""
        spec = self.spec
        assert spec.policy is not None
        self._progress("checking the sandbox's evidence against your policy")
        platform = spec.platform_key.public if spec.platform_key is not None else None
        signed = owner_policy(spec.policy, identity, session_id=spec.session_id,
                              platform_key=platform)
        check = check_sandbox(sandbox, signed)
        failed, why = check.first_failure
        reason = "accepted" if check.ok else f"{failed}: {why}"
        client.record_owner_verdict(
            spec.session_id, stage=stage, ok=check.ok, reason=reason, verdict=check.verdict,
            policy_digest=signed.digest, measurement=check.attested.measurement,
        )
        if not check.ok:
            if stage == "join" and self.sandbox is not None:
                self.sandbox.stop()
                self.sandbox = None
            raise SandboxRefused(stage, failed, why, check.verdict)
        return check

    def _broker(self, client: OrchestratorClient, session: VerifiedSession) -> OrchestratorClient:
        ref = session.terms.key_broker
        if ref is None:
            return client
        from fedtune.orchestrator.standalone import broker_client

        return broker_client(self.config, ref)

    def _install_secrets(
        self, client: OrchestratorClient, sandbox: SandboxClient, session: VerifiedSession
    ) -> None:
        terms = session.terms
        model_id = f"{terms.model_name}@{terms.model_version}"
        kinds = [(BrokerSecret.MODEL_DATA_KEY, SecretKind.MODEL_DATA_KEY)]
        if terms.aggregation == "ckks":
            kinds.append((BrokerSecret.SESSION_CKKS_SECRET, SecretKind.CKKS_SECRET_CONTEXT))
        if terms.key_broker is None:
            # The session key seals the final adapter (results need both sides to export).
            kinds.append((BrokerSecret.SESSION_KEY, SecretKind.SESSION_KEY))
        broker = self._broker(client, session)
        try:
            for broker_kind, sandbox_kind in kinds:
                self._progress(f"attesting the sandbox for the {sandbox_kind.value}")
                nonce = broker.challenge(session.session_id, broker_kind)
                attested = sandbox.attest(nonce)
                wrapped, sealed = broker.release_secret(
                    session.session_id, broker_kind, attested.evidence_bytes,
                    attested.ephemeral_public_key, nonce,
                )
                sandbox.install_key(sandbox_kind, wrapped, model_id=model_id,
                                    session_id=session.session_id, sealed_secret=sealed)
        finally:
            if broker is not client:
                broker.close()

    def _load_model(
        self, client: OrchestratorClient, sandbox: SandboxClient, session: VerifiedSession
    ) -> None:
        terms = session.terms
        self._progress(f"streaming {terms.model_name}@{terms.model_version} into the sandbox")
        manifest = client.get_manifest(terms.model_name, terms.model_version)
        sandbox.load_model(
            manifest.to_json(),
            client.download_stream(terms.model_name, terms.model_version),
            provider=terms.provider_fingerprint,
        )

    def _configure(
        self, sandbox: SandboxClient, session: VerifiedSession, identity: Identity
    ) -> ConfigureResult:
        self._progress("configuring the sandbox with the signed terms")
        signatures = self._signatures(session, identity)
        return sandbox.configure(
            signatures, train_file=self.spec.train_file, eval_file=self.spec.eval_file
        )

    @staticmethod
    def _signatures(session: VerifiedSession, identity: Identity) -> SignedSessionTerms:
        # verify_session checked both signatures; the sandbox checks them again itself.
        mine = next(o for o in session.owners if o.fingerprint == identity.fingerprint)
        return SignedSessionTerms(
            document=session.terms_bytes,
            provider=PartySignature(session.provider.raw, session.provider_acceptance),
            owner=PartySignature(identity.public.raw, mine.acceptance),
        )

    def _register_node_key(
        self, client: OrchestratorClient, identity: Identity
    ) -> tuple[Path, bytes]:
        self._progress("registering the SuperNode key")
        key = self.spec.work_dir / "supernode" / "auth.key"
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        public_path = write_supernode_auth_key(key)
        public = public_path.read_bytes().strip()
        client.register_node_key(self.spec.session_id, public, identity)
        return key, public

    # -- step 2 ---------------------------------------------------------------------------------

    def start_supernode(self) -> SuperNodeInfo:
        """Start the SuperNode; wait (bounded) until the operator admitted its key."""
        if self.prepared is None:
            raise JoinError("supernode", "prepare() first: the sandbox must be ready")
        if self.supernode is not None:
            return self.supernode
        spec = self.spec
        ca = spec.superlink_ca or self.config.ca_certificate
        self.deployment = Deployment(
            spec.work_dir / "flower",
            tls=TlsCertificates(ca_certfile=ca),
            superlink_address=spec.superlink_address,
            startup_timeout_s=60.0,
            supernode_wrapper=self._jail(Path(ca)) if spec.jail else None,
        )
        node_config = {
            **spec.extra_node_config,
            SOCKET_KEY: str(self.prepared.socket_path),
            SESSION_KEY: spec.session_id,
            OWNER_KEY: self.config.fingerprint,
        }
        deadline = time.monotonic() + spec.supernode_wait_s
        self._progress("starting the SuperNode")
        while True:
            try:
                self.supernode = self.deployment.add_supernode(
                    SUPERNODE_NAME, node_config=node_config, auth_key=self.prepared.node_key
                )
                return self.supernode
            except ProcessStartError as exc:
                # Exit 305 "Failed to activate": the operator has not registered the key yet.
                if "Failed to activate" not in exc.log_tail or time.monotonic() > deadline:
                    raise
            self._progress("waiting for the operator to admit the SuperNode key")
            time.sleep(2.0)

    def _jail(self, ca: Path) -> SuperNodeJail:
        """The bubblewrap jail for the SuperNode: no records, no staging, no $FEDTUNE_HOME."""
        assert self.prepared is not None
        node_key = self.prepared.node_key
        read_only = [ca.resolve(), node_key.resolve()]
        if node_key.with_suffix(".pub").exists():
            read_only.append(node_key.with_suffix(".pub").resolve())
        protected = protected_paths(
            self.spec.data_dir, self.prepared.staging_dir, self.config.identity.parent,
            *self.spec.protected,
        )
        return SuperNodeJail(JailSpec(
            socket_dir=self.prepared.socket_path.parent.resolve(),
            read_only_files=tuple(read_only),
            protected=protected,
        ))

    def supernode_running(self) -> bool:
        """Whether the SuperNode process is alive."""
        return self.deployment is not None and self.deployment.is_running(SUPERNODE_NAME)

    def restart_supernode(self) -> SuperNodeInfo:
        """Start the SuperNode again after it exited (a dropped connection); counts restarts."""
        if self.deployment is None or self.prepared is None:
            raise JoinError("supernode", "start_supernode() first")
        self.restarts += 1
        self._progress(f"the SuperNode stopped; restarting it (attempt {self.restarts})")
        info = self.deployment.restart(SUPERNODE_NAME)
        assert isinstance(info, SuperNodeInfo)
        self.supernode = info
        return info

    # -- during and after the rounds --------------------------------------------------------------

    def reattest(self) -> OwnerCheck | None:
        """Re-attest the running sandbox to the key broker and, with a policy, to the owner.

        ParticipationStopped when either refuses (the owner should stop serving rounds).
        """
        if self.prepared is None or self.sandbox is None:
            raise JoinError("reattest", "prepare() first: there is no sandbox to re-attest")
        identity = self.config.load_identity()
        session = self.prepared.session
        check = None
        with OrchestratorClient(self.config) as client, SandboxClient(
            self.sandbox.socket_path
        ) as sandbox:
            self._progress("re-attesting the sandbox")
            broker = self._broker(client, session)
            try:
                nonce = broker.challenge(session.session_id, BrokerSecret.REATTESTATION)
                attested = sandbox.attest(nonce)
                outcome = broker.reattest(session.session_id, attested.evidence_bytes,
                                          attested.ephemeral_public_key, nonce)
            finally:
                if broker is not client:
                    broker.close()
            if not outcome.ok:
                raise ParticipationStopped(
                    "reattestation", f"the key broker refuses the sandbox now: {outcome.reason}"
                )
            if self.spec.policy is not None:
                try:
                    check = self._owner_verdict(client, sandbox, identity, "reattest")
                except SandboxRefused as exc:
                    raise ParticipationStopped("reattestation", str(exc)) from exc
        return check

    def seal_adapter(self) -> tuple[SealedAdapter, Path]:
        """Have the sandbox seal the final adapter; store the ciphertext (locally and remotely).

        Returns the sealed adapter and the local file holding the ciphertext.
        """
        if self.prepared is None or self.sandbox is None:
            raise JoinError("seal", "prepare() first: only the sandbox holds the adapter")
        with SandboxClient(self.sandbox.socket_path) as sandbox:
            self._progress("sealing the final adapter under the session key")
            sealed = sandbox.seal_adapter(session_id=self.spec.session_id)
        path = self.spec.work_dir / "results" / f"{self.spec.session_id}.adapter.sealed"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_bytes(path, sealed.sealed, mode=0o600)
        with OrchestratorClient(self.config) as client:
            self._progress("storing the sealed adapter with the orchestrator")
            client.put_sealed_adapter(sealed)
        return sealed, path

    # -- teardown -------------------------------------------------------------------------------

    def stop_supernode(self) -> None:
        """Stop the SuperNode (the sandbox keeps running)."""
        if self.deployment is not None:
            self.deployment.close()
            self.deployment = None
            self.supernode = None

    def close(self) -> None:
        """Stop the SuperNode and the sandbox; remove the staged links to the records."""
        try:
            self.stop_supernode()
        finally:
            try:
                if self.sandbox is not None:
                    self.sandbox.stop()
                    self.sandbox = None
            finally:
                unstage(self._staged)
                self._staged = []
