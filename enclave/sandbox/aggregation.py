"""ExportUpdate's work: the client side of the aggregation protocol for one trained round.

The round's plaintext update (``new - global`` adapter delta) never leaves. What may leave:

- secure aggregation (``crypto.secagg``): the four SecAgg+ stage responses (public keys,
  encrypted shares, the masked vector, the unmasking shares), produced by one
  ``SecAggClient`` for this round, driven by the server's stage requests as they come;
- CKKS (``crypto.ckks``): the weighted update encrypted under the session's key.

Before either, client-level DP (``crypto.dp``) clips and noises the update when the terms ask
for it, once per round, so every path sees the same privatized update. The runtime also
holds the server to the session terms: it refuses a setup whose threshold or participant
count is below the agreed minimum, or whose vector length, clip or weight bound differ from
the terms (nothing, not even public keys, is answered then). After the masked vector or the
ciphertext has left, or after any failure, the update is wiped and the round cannot export
again.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from crypto.errors import StageOrderError
from crypto.secagg import ClientStage, SecAggClient
from crypto.secagg.messages import FORMAT_VERSION, MAGIC, MessageKind
from enclave.sandbox.errors import ExportRefused, InvalidRequest, RoundError
from enclave.sandbox.terms import SandboxTerms

_KIND_STAGE = {
    MessageKind.SETUP_REQUEST: ClientStage.SETUP,
    MessageKind.SHARE_KEYS_REQUEST: ClientStage.SHARE_KEYS,
    MessageKind.COLLECT_REQUEST: ClientStage.COLLECT_MASKED_VECTORS,
    MessageKind.UNMASK_REQUEST: ClientStage.UNMASK,
}
_U64 = struct.Struct(">Q")


def peek_secagg_request(message: bytes) -> tuple[MessageKind, bytes, int, int]:
    """(kind, session id, round, recipient) from a secagg request's header, without trusting it.

    The header layout is ``crypto/secagg/messages.py``'s: magic "FTSA" | version u8 | kind u8 |
    len u8 | session_id | round u64 | client u64. The stage methods re-check all of it.
    """
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError("message must be bytes")
    data = bytes(message[:300])
    if len(data) < 7 or data[:4] != MAGIC:
        raise InvalidRequest("secagg", "not a fedtune secure-aggregation message")
    if data[4] != FORMAT_VERSION:
        raise InvalidRequest(
            "secagg", f"message format {data[4]}, this build reads {FORMAT_VERSION}"
        )
    try:
        kind = MessageKind(data[5])
    except ValueError:
        raise InvalidRequest("secagg", f"unknown message kind {data[5]}") from None
    size = data[6]
    end = 7 + size + 16
    if len(data) < end:
        raise InvalidRequest("secagg", "the message header is truncated")
    session = data[7 : 7 + size]
    (round_number,) = _U64.unpack_from(data, 7 + size)
    (client,) = _U64.unpack_from(data, 15 + size)
    return kind, session, round_number, client


class RoundExport:
    """The export of one trained round's update, through secure aggregation or CKKS."""

    def __init__(
        self,
        round_number: int,
        update: np.ndarray,
        num_examples: int,
        terms: SandboxTerms,
        *,
        privatize: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.round = round_number
        self.terms = terms
        self._update: np.ndarray | None = update
        self._num_examples = num_examples
        self._privatize = privatize
        self._final: tuple[np.ndarray, float] | None = None
        self._client: SecAggClient | None = None
        self.finished = False

    @property
    def pending(self) -> bool:
        """True while the update is held and may still leave (masked or encrypted)."""
        return self._update is not None and not self.finished

    def wipe(self) -> None:
        """Zero and drop the update (and its privatized copy); the round cannot export again."""
        for array in (self._update, self._final[0] if self._final else None):
            if array is not None and array.flags.writeable:
                array.fill(0)
        self._update = None
        self._final = None
        self.finished = True

    def _weighted(self) -> tuple[np.ndarray, float]:
        """The update as it may leave (DP applied once) and its FedAvg weight."""
        if self._final is None:
            if self._update is None:
                raise RoundError("the update already left or was discarded", expected="a new "
                                 "trained round", got=self.round)
            vector = self._update
            weight = float(self._num_examples)
            if self.terms.dp.enabled:
                if self._privatize is None:
                    raise ExportRefused("dp", "DP is on but no privatizer was configured")
                vector = self._privatize(vector)
                weight = 1.0  # DP-FedAvg weighs clients equally (crypto/dp.py)
            self._final = (np.asarray(vector, dtype=np.float32), weight)
        return self._final

    def _guard(self, step: Callable[[], bytes]) -> bytes:
        """Run a stage; on any failure wipe the update so nothing more leaves this round."""
        if self.finished:
            raise RoundError("the round's export is over (done or failed)",
                             expected="a new trained round", got=self.round)
        try:
            return step()
        except BaseException:
            self.wipe()
            raise

    # -- secure aggregation ------------------------------------------------------------------

    def secagg(self, message: bytes, *, adapter_length: int) -> tuple[bytes, str, bool]:
        """Answer one SecAgg+ stage request; (reply, stage name, whether the round is done)."""
        if self.terms.aggregation != "secagg":
            raise ExportRefused("mode", "this session aggregates with CKKS, not secure aggregation")
        kind, session, round_number, client_id = peek_secagg_request(message)
        expected_session = self.terms.session_id.encode("utf-8")
        if session != expected_session:
            raise ExportRefused(
                "session", f"the request is for session {session!r}, not {expected_session!r}"
            )
        if round_number != self.round:
            raise RoundError("no update was trained for this round",
                             expected=str(self.round), got=round_number)
        stage = _KIND_STAGE.get(kind)
        if stage is None:
            raise InvalidRequest("secagg", f"{kind.name} is a client response, not a request")
        if self._client is None:
            if stage is not ClientStage.SETUP:
                # A stray request does not end the round: nothing was answered yet.
                raise StageOrderError(expected=ClientStage.SETUP.value, got=stage.value)
            reply = self._guard(lambda: self._setup(message, client_id, adapter_length))
            return reply, stage.value, False
        client = self._client
        if stage is ClientStage.SHARE_KEYS:
            return self._guard(lambda: client.share_keys(message)), stage.value, False
        if stage is ClientStage.COLLECT_MASKED_VECTORS:

            def collect() -> bytes:
                vector, weight = self._weighted()
                reply = client.collect_masked_vector(message, vector, weight)
                # The masked vector is out: the plaintext update is not needed any more.
                self._update = None
                if self._final is not None:
                    self._final[0].fill(0)
                    self._final = None
                return reply

            return self._guard(collect), stage.value, False
        reply = self._guard(lambda: client.unmask(message))
        self.wipe()
        return reply, stage.value, True

    def _setup(self, message: bytes, client_id: int, adapter_length: int) -> bytes:
        client = SecAggClient(
            client_id, session_id=self.terms.session_id.encode("utf-8"), round_number=self.round
        )
        reply = client.setup(message)
        params = client.params
        terms = self.terms
        problems = []
        minimum = terms.secagg_min_threshold or 0
        if params.threshold < minimum:
            problems.append(("threshold", f"threshold {params.threshold} is below the agreed "
                                          f"minimum {minimum}"))
        if len(params.participants) < terms.min_participants:
            problems.append(("participants", f"{len(params.participants)} participants, the "
                                             f"terms need at least {terms.min_participants}"))
        if params.vector_length != adapter_length:
            problems.append(("vector_length", f"vector length {params.vector_length}, the "
                                              f"adapter has {adapter_length} values"))
        if params.clip != terms.update_clip:
            problems.append(("clip", f"clip {params.clip}, the terms say {terms.update_clip}"))
        if params.max_weight != terms.max_weight:
            problems.append(("max_weight", f"max_weight {params.max_weight}, the terms say "
                                           f"{terms.max_weight}"))
        if problems:
            rule, detail = problems[0]
            raise ExportRefused(rule, detail)
        self._client = client
        return reply

    # -- CKKS --------------------------------------------------------------------------------

    def ckks(self, round_number: int, context: bytes | None) -> bytes:
        """The round's weighted update encrypted under the session's CKKS key."""
        if self.terms.aggregation != "ckks":
            raise ExportRefused("mode", "this session uses secure aggregation, not CKKS")
        if round_number != self.round:
            raise RoundError("no update was trained for this round",
                             expected=str(self.round), got=round_number)
        if context is None:
            raise ExportRefused("ckks-key", "no CKKS secret context is installed (InstallKey)")

        def encrypt() -> bytes:
            from crypto.ckks import encrypt_update

            vector, weight = self._weighted()
            return encrypt_update(
                context, vector, weight, max_weight=self.terms.max_weight,
                clip=self.terms.update_clip,
            )

        blob = self._guard(encrypt)
        self.wipe()
        return blob
