"""The sandbox's exceptions: launching it, calling it out of order, and what it refuses."""

from __future__ import annotations

from enclave.errors import EnclaveError


class SandboxError(EnclaveError):
    """Base of every error the sandbox launcher and runtime raise."""


class SandboxLaunchError(SandboxError):
    """The sandbox could not be started; ``log_tail`` holds the end of its log, if any."""

    def __init__(self, reason: str, *, log_tail: str = "") -> None:
        self.reason = reason
        self.log_tail = log_tail
        tail = f"\n--- sandbox log (last lines) ---\n{log_tail}" if log_tail else ""
        super().__init__(f"the sandbox did not start: {reason}{tail}")


class WeakIsolationRefused(SandboxLaunchError):
    """bubblewrap is missing or cannot build namespaces, and weaker isolation was not allowed."""

    def __init__(self, reason: str, *, log_tail: str = "") -> None:
        super().__init__(
            f"{reason}; refusing to run the model in a plain child process. Install bubblewrap "
            "(Debian: apt-get install bubblewrap) and allow unprivileged user namespaces, or "
            "accept weaker isolation explicitly (allow_weak_isolation=True, "
            "--allow-weak-isolation)",
            log_tail=log_tail,
        )


class HardeningFailed(SandboxError):
    """A process protection (non-dumpable, no core dumps) did not take effect; the runtime stops."""

    def __init__(self, setting: str, *, expected: str, got: str) -> None:
        self.setting = setting
        self.expected = expected
        self.got = got
        super().__init__(
            f"process hardening {setting} did not take effect (expected {expected}, got {got}); "
            "the runtime refuses to hold plaintext weights without it"
        )


class InvalidRequest(SandboxError):
    """A request field is missing or malformed; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"request field {field!r}: {reason}")


class WrongPhase(SandboxError):
    """A call came before the runtime reached the phase it needs, or after it passed it."""

    def __init__(self, operation: str, *, phase: str, needs: str) -> None:
        self.operation = operation
        self.phase = phase
        self.needs = needs
        super().__init__(f"{operation} needs {needs}; the sandbox is {phase}")


class KeyMismatch(SandboxError):
    """An installed secret is bound to another model or session than the one in use."""

    def __init__(self, field: str, *, expected: str, got: str) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(
            f"{field} does not match: the installed key is for {expected!r}, got {got!r}; "
            "ask the key broker for the key of this model and session"
        )


class UntrustedManifest(SandboxError):
    """The manifest is signed by another key than the provider the owner trusts."""

    def __init__(self, *, trusted: str, signer: str) -> None:
        self.trusted = trusted
        self.signer = signer
        super().__init__(
            f"the manifest is signed by {signer}, not by the trusted provider {trusted}; "
            "refusing to load a model from anyone else"
        )


class ModelStreamError(SandboxError):
    """The LoadModel stream is not one header followed by the sealed blob's chunks."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"LoadModel stream: {reason}")


class TermsError(SandboxError):
    """Session terms given to Configure are malformed or contradict the installed secrets."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"session terms, {field}: {reason}")


class TermsSignatureError(TermsError):
    """A signature over the session terms is missing, from the wrong party, or does not verify."""


class ConfigurationLocked(SandboxError):
    """The owner's agent finished setting the sandbox up; secrets, model and terms are fixed.

    After a successful Configure the runtime refuses InstallKey, LoadModel and Configure, so
    whatever reaches it later (the Flower relay runs code the owner did not write) cannot swap
    the CKKS key, the model or the terms of a session under way.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"{operation} refused: the sandbox is configured and its set-up is locked; start a "
            "new sandbox for another session or set-up"
        )


class WrongSession(SandboxError):
    """A Train, Evaluate or export request names another session than the configured one."""

    def __init__(self, *, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(
            f"the request is for session {got!r}, this sandbox serves session {expected!r}"
            if got else f"the request names no session; this sandbox serves {expected!r}"
        )


class DataPathError(SandboxError):
    """A record file named in Configure is not a plain file inside the owner's data directory."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"record file {path!r}: {reason}")


class AdapterSourceError(SandboxError):
    """The global adapter sent with Train or Evaluate cannot be used in this session."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"global adapter: {reason}")


class RoundError(SandboxError):
    """A round number is out of order (not larger than the last trained one, or not trained)."""

    def __init__(self, reason: str, *, expected: str, got: int) -> None:
        self.reason = reason
        self.expected = expected
        self.got = got
        super().__init__(f"round {got}: {reason} (expected {expected})")


class ExportRefused(SandboxError):
    """An aggregation request breaks the session terms; nothing derived from the update leaves."""

    def __init__(self, rule: str, detail: str) -> None:
        self.rule = rule
        self.detail = detail
        super().__init__(f"export refused ({rule}): {detail}")


class AdapterNotReady(SandboxError):
    """SealAdapter was asked for before there is a final adapter to seal, or without the key."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"no adapter can be sealed yet: {reason}")
