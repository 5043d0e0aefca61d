"""The KeyBroker servicer."""

from __future__ import annotations

import grpc

from crypto.hpke import Kem
from fedtune._proto import common_pb2, key_broker_pb2, key_broker_pb2_grpc
from fedtune.orchestrator.broker import KeyBroker, SecretKind
from fedtune.orchestrator.errors import InvalidRequest
from fedtune.orchestrator.interceptor import caller
from fedtune.orchestrator.services import convert
from fedtune.orchestrator.store.records import PolicyRecord

KINDS = {
    key_broker_pb2.SECRET_KIND_MODEL_DATA_KEY: SecretKind.MODEL_DATA_KEY,
    key_broker_pb2.SECRET_KIND_SESSION_CKKS_SECRET: SecretKind.SESSION_CKKS_SECRET,
    key_broker_pb2.SECRET_KIND_SESSION_KEY: SecretKind.SESSION_KEY,
    key_broker_pb2.SECRET_KIND_REATTESTATION: SecretKind.REATTESTATION,
}
KIND_TO_PROTO = {v: k for k, v in KINDS.items()}


def _kind(value: int) -> SecretKind:
    try:
        return KINDS[value]
    except KeyError:
        raise InvalidRequest(
            "kind",
            "name the secret: model data key, session CKKS secret, session key or "
            "re-attestation",
        ) from None


def _policy_status(record: PolicyRecord) -> key_broker_pb2.PolicyStatus:
    return key_broker_pb2.PolicyStatus(
        model_name=record.model_name,
        version=record.version,
        policy=common_pb2.SignedDocument(canonical=record.document, signature=record.signature),
        updated_at=convert.timestamp(record.updated_at),
    )


class KeyBrokerServicer(key_broker_pb2_grpc.KeyBrokerServicer):
    """KeyBroker RPCs, delegated to KeyBroker."""

    def __init__(self, broker: KeyBroker) -> None:
        self._broker = broker

    def GetBrokerKey(  # noqa: N802
        self, request: key_broker_pb2.GetBrokerKeyRequest, context: grpc.ServicerContext
    ) -> key_broker_pb2.BrokerKey:
        """The broker's HPKE public key."""
        key = self._broker.public_key
        return key_broker_pb2.BrokerKey(public_key=key.to_bytes(), kem=Kem(key.kem).name)

    def RegisterKey(  # noqa: N802
        self, request: key_broker_pb2.RegisterKeyRequest, context: grpc.ServicerContext
    ) -> key_broker_pb2.RegisterKeyResponse:
        """Register a version's data key and the model's policy."""
        policy = self._broker.register_key(
            caller(context),
            request.model.name,
            request.model.version,
            request.wrapped_key,
            request.policy.canonical,
            request.policy.signature,
        )
        return key_broker_pb2.RegisterKeyResponse(
            model=request.model, policy_version=policy.version
        )

    def SetPolicy(  # noqa: N802
        self, request: key_broker_pb2.SetPolicyRequest, context: grpc.ServicerContext
    ) -> key_broker_pb2.PolicyStatus:
        """Install a newer policy."""
        return _policy_status(
            self._broker.set_policy(
                caller(context),
                request.model_name,
                request.policy.canonical,
                request.policy.signature,
            )
        )

    def GetPolicy(  # noqa: N802
        self, request: key_broker_pb2.GetPolicyRequest, context: grpc.ServicerContext
    ) -> key_broker_pb2.PolicyStatus:
        """The policy in force."""
        return _policy_status(self._broker.get_policy(request.model_name))

    def Challenge(  # noqa: N802
        self, request: key_broker_pb2.ChallengeRequest, context: grpc.ServicerContext
    ) -> key_broker_pb2.ChallengeResponse:
        """A fresh nonce."""
        record = self._broker.challenge(caller(context), request.session_id, _kind(request.kind))
        return key_broker_pb2.ChallengeResponse(
            nonce=record.nonce, expires_at=convert.timestamp(record.expires_at)
        )

    def Release(  # noqa: N802
        self, request: key_broker_pb2.ReleaseRequest, context: grpc.ServicerContext
    ) -> key_broker_pb2.ReleaseResponse:
        """Release or refuse, with the verdict."""
        kind = _kind(request.kind)
        outcome = self._broker.release(
            caller(context),
            request.session_id,
            kind,
            request.evidence,
            request.ephemeral_public_key,
            request.nonce,
        )
        if outcome.released is not None:
            return key_broker_pb2.ReleaseResponse(
                released=key_broker_pb2.ReleasedSecret(
                    kind=KIND_TO_PROTO[kind],
                    model=common_pb2.ModelRef(
                        name=outcome.model_name, version=outcome.model_version
                    ),
                    session_id=request.session_id,
                    wrapped_secret=outcome.released,
                    sealed_secret=outcome.sealed_secret,
                )
            )
        return key_broker_pb2.ReleaseResponse(
            refused=key_broker_pb2.Refusal(
                reason=outcome.reason, verdict=convert.verdict(outcome.verdict)
            )
        )

    def GetPublicContext(  # noqa: N802
        self, request: key_broker_pb2.GetPublicContextRequest, context: grpc.ServicerContext
    ) -> key_broker_pb2.PublicContext:
        """A CKKS session's public context."""
        record = self._broker.public_context(caller(context), request.session_id)
        return key_broker_pb2.PublicContext(
            session_id=record.session_id, context=record.public_context, key_id=record.key_id
        )

    def Reattest(  # noqa: N802
        self, request: key_broker_pb2.ReleaseRequest, context: grpc.ServicerContext
    ) -> key_broker_pb2.ReattestResponse:
        """Re-verify a set-up sandbox's evidence; releases nothing."""
        if _kind(request.kind) is not SecretKind.REATTESTATION:
            raise InvalidRequest("kind", "a re-attestation names kind REATTESTATION")
        outcome = self._broker.reattest(
            caller(context),
            request.session_id,
            request.evidence,
            request.ephemeral_public_key,
            request.nonce,
        )
        return key_broker_pb2.ReattestResponse(
            ok=outcome.ok, reason=outcome.reason, verdict=convert.verdict(outcome.verdict)
        )
