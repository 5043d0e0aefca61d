"""The relay ClientApp: forwards each fedtune Flower message to the owner's sandbox, and back.

It runs on the owner's SuperNode (a fresh ``flwr-clientapp`` process per message) and is
glue, nothing more: it reads the sandbox's Unix socket from the node config
(``sandbox-socket``, written by the owner's agent), passes every request of the message's
:class:`~fedtune.federated.messages.CallBatch` to the sandbox unread, in order, and returns
the sandbox's answers, or the first refusal with its status and error type.

Trust boundary: whoever can reach the SuperLink can start a run whose ClientApp code runs on
the owner's machine (DEPLOYMENT-NOTES.md section 4), so nothing here is trusted with a
decision. The sandbox takes rounds, thresholds, DP and the aggregation mode only from the
signed session terms, refuses requests for another session, and has locked its set-up
before this relay ever runs. What a malicious ClientApp could still do as the SuperNode's
user (read files the user can read) is the owner agent's business: it must run the SuperNode
jailed (next issue), not this module's.

Imports stay light (no torch, TenSEAL or transformers): each message pays a Python start-up.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedtune.federated.messages import RELAY, CallBatch, CallFailure, CallReplies
from fedtune.sandbox_client import SandboxCallError, SandboxClient

SOCKET_KEY = "sandbox-socket"
SESSION_KEY = "session-id"


class RelayConfigError(SandboxCallError):
    """The SuperNode is not set up to relay this run (no socket, or another session's)."""


def relay_batch(batch: CallBatch, socket_path: str) -> CallReplies:
    """Make ``batch``'s calls on the sandbox at ``socket_path``; stop at the first refusal."""
    methods: list[str] = []
    replies: list[bytes] = []
    failure = None
    with SandboxClient(socket_path, session_id=batch.session_id) as client:
        for method, request in zip(batch.methods, batch.requests, strict=True):
            try:
                replies.append(client.relay(method, request))
            except SandboxCallError as exc:
                failure = CallFailure(method, exc.code.name, exc.error_type, exc.message)
                break
            methods.append(method)
    return CallReplies(tuple(methods), tuple(replies), failure)


def _socket_for(context: Context, batch: CallBatch) -> str:
    import grpc

    socket = str(context.node_config.get(SOCKET_KEY, ""))
    session = str(context.node_config.get(SESSION_KEY, ""))
    if not socket:
        raise RelayConfigError(
            "relay", grpc.StatusCode.FAILED_PRECONDITION, "RelayConfigError",
            f"the SuperNode's node config names no {SOCKET_KEY}; start it with the owner agent",
        )
    if session and session != batch.session_id:
        raise RelayConfigError(
            "relay", grpc.StatusCode.PERMISSION_DENIED, "RelayConfigError",
            f"this SuperNode relays session {session!r}, the message is for "
            f"{batch.session_id!r}",
        )
    return socket


def handle(message: Message, context: Context) -> Message:
    """Relay one message: its batch to the sandbox, the sandbox's answers back."""
    batch = CallBatch.from_content(message.content)
    try:
        replies = relay_batch(batch, _socket_for(context, batch))
    except SandboxCallError as exc:
        replies = CallReplies((), (), CallFailure(RELAY, exc.code.name, exc.error_type,
                                                  exc.message))
    return Message(replies.to_content(), reply_to=message)


app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train (and the round's first aggregation stage)."""
    return handle(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Held-out evaluation."""
    return handle(message, context)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Aggregation stages after the first."""
    return handle(message, context)
