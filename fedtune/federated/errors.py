"""Errors of the federated data plane: Flower processes that will not start, runs that fail."""

from __future__ import annotations

from pathlib import Path

from fedtune.errors import FedtuneError


class FederatedError(FedtuneError):
    """Base of every error raised by ``fedtune.federated``."""


class DeploymentError(FederatedError):
    """A SuperLink, SuperNode or Flower CLI process misbehaved; ``process`` names which one."""

    def __init__(self, process: str, message: str, *, log_path: Path | None = None,
                 log_tail: str = "") -> None:
        self.process = process
        self.log_path = log_path
        self.log_tail = log_tail
        text = f"{process}: {message}"
        if log_path is not None:
            text += f"\n(full log: {log_path})"
        if log_tail:
            text += f"\n--- last lines of its log ---\n{log_tail.rstrip()}\n---"
        super().__init__(text)


class ProcessStartError(DeploymentError):
    """A process exited, or did not become ready, within its start-up time limit.

    ``returncode`` is the exit status when it exited, ``None`` when it was still running
    but never showed the readiness signal (it has been stopped by then).
    """

    def __init__(self, process: str, message: str, *, returncode: int | None,
                 log_path: Path | None = None, log_tail: str = "") -> None:
        self.returncode = returncode
        super().__init__(process, message, log_path=log_path, log_tail=log_tail)


class ProcessDiedError(DeploymentError):
    """A process that was up exited without being asked to (``returncode`` says how)."""

    def __init__(self, process: str, message: str, *, returncode: int | None,
                 log_path: Path | None = None, log_tail: str = "") -> None:
        self.returncode = returncode
        super().__init__(process, message, log_path=log_path, log_tail=log_tail)


class TeardownError(DeploymentError):
    """Processes of ours survived SIGKILL; ``survivors`` lists ``(pid, command line)``."""

    def __init__(self, process: str, survivors: list[tuple[int, str]]) -> None:
        self.survivors = survivors
        listing = "; ".join(f"pid {pid} ({cmd})" for pid, cmd in survivors)
        super().__init__(
            process,
            f"{len(survivors)} process(es) survived SIGKILL: {listing}. "
            "They are probably stuck in uninterruptible I/O; kill them by pid once it ends.",
        )


class FlowerCliError(DeploymentError):
    """A ``flwr`` CLI call (``run``, ``ls``, ``log``, ``stop``, ``supernode register``) failed."""

    def __init__(self, command: str, message: str, *, returncode: int | None,
                 output: str = "") -> None:
        self.command = command
        self.returncode = returncode
        self.output = output
        super().__init__(f"flwr {command}", message, log_tail=output)


class RunError(FederatedError):
    """A submitted Flower run did not complete; ``run_id`` names it, ``status`` says how far."""

    def __init__(self, run_id: int, status: str, message: str, *, details: str = "",
                 log_path: Path | None = None, log_tail: str = "") -> None:
        self.run_id = run_id
        self.status = status
        self.details = details
        self.log_path = log_path
        self.log_tail = log_tail
        text = f"run {run_id} {message} (status {status!r})"
        if details:
            text += f": {details}"
        if log_path is not None:
            text += f"\n(ServerApp log: {log_path})"
        if log_tail:
            text += f"\n--- last lines of the ServerApp log ---\n{log_tail.rstrip()}\n---"
        super().__init__(text)


class RunFailedError(RunError):
    """The run finished, but failed or was stopped (a ServerApp exception lands here)."""


class RunTimeoutError(RunError):
    """The run was still going when its time limit ran out; it has been stopped."""


class ReportError(FederatedError):
    """A saved session report could not be read; ``path`` names the file, ``reason`` why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"session report {path}: {reason}")
