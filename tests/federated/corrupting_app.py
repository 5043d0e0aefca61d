"""A test-only ClientApp: the fedtune relay, except that one owner's masked vector is corrupted.

The owner is chosen by the run config (``corrupt-owner``, an identity fingerprint) and matched
against the node config the owner's agent wrote (``owner``). Its sandbox answers the
collect_masked_vectors stage normally; this relay then either re-encodes the masked vector
well formed but one word short (``corrupt-mode = "wrong-length"``) or cuts it off
mid-vector (``"malformed"``) before returning it, as a broken or malicious ClientApp would.
The aggregator must exclude that owner with the reason on the record and still commit the
correct sum of the others.

Travels inside the FAB (its name must not match ``test_*.py``).
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from crypto.secagg.messages import Binding, MaskedVector, MessageKind
from enclave._proto import sandbox_pb2
from enclave.sandbox.aggregation import peek_secagg_request
from fedtune.federated.client_app import _socket_for, relay_batch
from fedtune.federated.messages import CallBatch, CallReplies

EXTRA_CONFIG = {"corrupt-owner": "", "corrupt-mode": "wrong-length"}


def _corrupt(replies: CallReplies, mode: str) -> CallReplies:
    out = list(replies.replies)
    for index, method in enumerate(replies.methods):
        if method != "ExportUpdate":
            continue
        answer = sandbox_pb2.SandboxExportUpdateResponse.FromString(out[index])
        if answer.stage != "collect_masked_vectors":
            continue
        answer.reply = _shorter(bytes(answer.reply)) if mode == "wrong-length" else (
            bytes(answer.reply)[:-4]  # "malformed": cut off mid-vector
        )
        out[index] = answer.SerializeToString()
    return CallReplies(replies.methods, tuple(out), replies.failure)


def _shorter(data: bytes) -> bytes:
    """The same masked vector, well formed, one word shorter than the round's length."""
    kind, session, round_number, client = peek_secagg_request(data)
    assert kind is MessageKind.MASKED_VECTOR
    binding = Binding(session, round_number, client)
    vector = MaskedVector.from_bytes(data, binding)
    return MaskedVector(vector.masked_with, vector.vector[:-1]).to_bytes(binding)


def handle(message: Message, context: Context) -> Message:
    """Relay as fedtune's relay does; corrupt the chosen owner's masked vector."""
    batch = CallBatch.from_content(message.content)
    replies = relay_batch(batch, _socket_for(context, batch))
    if str(context.node_config.get("owner", "")) == str(context.run_config["corrupt-owner"]):
        replies = _corrupt(replies, str(context.run_config["corrupt-mode"]))
    return Message(replies.to_content(), reply_to=message)


app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train + setup."""
    return handle(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Evaluation."""
    return handle(message, context)


@app.query()
def query(message: Message, context: Context) -> Message:
    """The later aggregation stages."""
    return handle(message, context)
