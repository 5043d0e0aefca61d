"""Enrolment and mutual TLS against a real server: pinning, tokens, foreign CAs, no certificate."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from crypto.identity import Identity
from fedtune._proto import common_pb2, enrolment_pb2, enrolment_pb2_grpc, registry_pb2
from fedtune.orchestrator import pki
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.client import ClientConfig, OrchestratorClient, enrol
from fedtune.orchestrator.deployment import init_deployment
from fedtune.orchestrator.enrolment import SIGNING_CONTEXT, EnrolmentRequest
from fedtune.orchestrator.errors import EnrolmentRefused, RemoteError

from .conftest import audit_events, start_server


@pytest.mark.parametrize("role", list(Role))
def test_enrolled_certificate_binds_identity_and_role(parties, role):
    party = parties.enrol(role, f"party-{role.value}")
    cert = pki.cert_from_pem(party.config.certificate.read_bytes())
    principal = pki.principal_from_certificate(cert)
    assert principal.fingerprint == party.identity.fingerprint
    assert principal.role is role
    # The TLS key is P-256, not the identity key (grpcio refuses Ed25519 TLS keys).
    assert cert.public_key().curve.name == "secp256r1"
    stored = parties.server.repository.get_party(party.fingerprint)
    assert stored is not None and stored.role == role.value
    assert stored.public_key == party.identity.public.raw


def test_wrong_ca_fingerprint_is_refused_before_sending_the_token(parties, deployment, tmp_path):
    token = parties.token(Role.DATA_OWNER, "mallory")
    wrong = "sha256:" + "00" * 32
    with pytest.raises(EnrolmentRefused, match="pinned fingerprint"):
        enrol(f"127.0.0.1:{parties.server.enrol_port}", token, wrong, tmp_path / "m")
    # The token was never presented, so it still works with the right fingerprint.
    enrol(
        f"127.0.0.1:{parties.server.enrol_port}",
        token,
        deployment.info.ca_fingerprint,
        tmp_path / "m2",
    )


def test_token_is_single_use(parties, deployment, tmp_path):
    token = parties.token(Role.DATA_OWNER, "alice")
    address = f"127.0.0.1:{parties.server.enrol_port}"
    enrol(address, token, deployment.info.ca_fingerprint, tmp_path / "a")
    with pytest.raises(RemoteError) as err:
        enrol(address, token, deployment.info.ca_fingerprint, tmp_path / "b")
    assert err.value.code == "PERMISSION_DENIED"
    assert "already used" in err.value.details


def test_expired_and_unknown_tokens_are_refused(parties, deployment, tmp_path):
    address = f"127.0.0.1:{parties.server.enrol_port}"
    expired = parties.token(Role.PROVIDER, "late", ttl=dt.timedelta(microseconds=1))
    with pytest.raises(RemoteError, match="expired"):
        enrol(address, expired, deployment.info.ca_fingerprint, tmp_path / "x")
    with pytest.raises(RemoteError, match="unknown enrolment token"):
        enrol(address, "fte1_not-a-token", deployment.info.ca_fingerprint, tmp_path / "y")
    events = audit_events(parties.server)
    assert any(
        e.action == "refusal"
        and e.details["rpc"] == "Enrol"
        and "expired" in e.reason
        and e.role == "anonymous"
        for e in events
    )


def test_enrolment_request_signed_by_another_key_is_refused(parties, deployment):
    token = parties.token(Role.DATA_OWNER, "eve")
    claimed, signer = Identity.generate(), Identity.generate()
    request = EnrolmentRequest(
        token=token,
        identity=claimed.public.raw,
        csr=pki.build_csr(pki.generate_tls_key(), "eve"),
        ca_fingerprint=deployment.info.ca_fingerprint,
        requested_at=dt.datetime.now(dt.UTC),
    ).canonical_bytes()
    ca = deployment.root.joinpath("ca", "ca.pem").read_bytes()
    with (
        grpc.secure_channel(
            f"127.0.0.1:{parties.server.enrol_port}", grpc.ssl_channel_credentials(ca)
        ) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        enrolment_pb2_grpc.EnrolmentStub(channel).Enrol(
            enrolment_pb2.EnrolRequest(
                request=common_pb2.SignedDocument(
                    canonical=request, signature=signer.sign(request, context=SIGNING_CONTEXT)
                )
            ),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not verify" in err.value.details()
    # The token is unspent: the refusal changed nothing.
    assert (
        parties.server.repository.get_token(
            __import__("fedtune.orchestrator.enrolment", fromlist=["x"]).token_digest(token)
        ).used_at
        is None
    )


def test_client_certificate_of_another_deployment_is_refused(parties, tmp_path):
    other_root = tmp_path / "other"
    init_deployment(other_root, hosts=["127.0.0.1"], api_port=0, enrol_port=0)
    foreign = ClientConfig.load(other_root / "operator")
    # Same server address and *our* CA as trust root, but a certificate from the other CA.
    ours = parties.operator().config
    mixed = foreign.model_copy(
        update={"server": ours.server, "ca_certificate": ours.ca_certificate}
    )
    with OrchestratorClient(mixed, timeout=10) as client, pytest.raises(RemoteError) as err:
        client.list_models()
    assert err.value.code == "UNAVAILABLE"  # the TLS handshake itself is refused


def test_no_client_certificate_is_refused_on_the_api_port(parties, deployment):
    ca = deployment.root.joinpath("ca", "ca.pem").read_bytes()
    with grpc.secure_channel(
        f"127.0.0.1:{parties.server.api_port}", grpc.ssl_channel_credentials(ca)
    ) as channel:
        call = channel.unary_unary(
            "/fedtune.v1.Registry/ListModels",
            request_serializer=registry_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=registry_pb2.ListModelsResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            call(registry_pb2.ListModelsRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_enrolment_port_serves_nothing_else(parties, deployment):
    ca = deployment.root.joinpath("ca", "ca.pem").read_bytes()
    with grpc.secure_channel(
        f"127.0.0.1:{parties.server.enrol_port}", grpc.ssl_channel_credentials(ca)
    ) as channel:
        call = channel.unary_unary(
            "/fedtune.v1.Registry/ListModels",
            request_serializer=registry_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=registry_pb2.ListModelsResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            call(registry_pb2.ListModelsRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_enrol_is_not_served_on_the_api_port(parties, deployment):
    op = parties.operator()
    call = op.client.channel.unary_unary(
        "/fedtune.v1.Enrolment/Enrol",
        request_serializer=enrolment_pb2.EnrolRequest.SerializeToString,
        response_deserializer=enrolment_pb2.EnrolResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as err:
        call(enrolment_pb2.EnrolRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_certificate_signed_by_our_ca_but_never_issued_is_refused(parties, deployment, tmp_path):
    # Defence in depth: a certificate the CA key signed outside enrolment is not a party.
    from fedtune.orchestrator.deployment import read_private

    ca_key = pki.key_from_pem(read_private(deployment.root / "ca" / "ca.key"))
    ca_cert = pki.cert_from_pem((deployment.root / "ca" / "ca.pem").read_bytes())
    ident, tls = Identity.generate(), pki.generate_tls_key()
    cert = pki.issue_client_certificate(
        ca_key,
        ca_cert,
        pki.build_csr(tls, "ghost"),
        fingerprint=ident.fingerprint,
        role=Role.OPERATOR,
        name="ghost",
        now=dt.datetime.now(dt.UTC),
    )
    config = ClientConfig.write_new(
        tmp_path / "ghost",
        identity=ident,
        tls_key=tls,
        certificate=cert,
        ca_certificate=ca_cert,
        server=f"127.0.0.1:{parties.server.api_port}",
        role=Role.OPERATOR,
        name="ghost",
    )
    with OrchestratorClient(config, timeout=10) as client, pytest.raises(RemoteError) as err:
        client.list_models()
    assert err.value.code == "UNAUTHENTICATED"


def test_restarted_server_keeps_enrolled_parties(deployment, tmp_path):
    server = start_server(deployment.root)
    try:
        from fedtune.orchestrator.enrolment import create_token

        token = create_token(
            server.repository,
            Role.DATA_OWNER,
            "dora",
            ttl=dt.timedelta(hours=1),
            now=dt.datetime.now(dt.UTC),
        )
        config = enrol(
            f"127.0.0.1:{server.enrol_port}",
            token,
            deployment.info.ca_fingerprint,
            tmp_path / "dora",
        )
    finally:
        server.stop(0)
    server = start_server(deployment.root)
    try:
        config = config.model_copy(update={"server": f"127.0.0.1:{server.api_port}"})
        with OrchestratorClient(config, timeout=10) as client:
            assert client.list_models().models == []
    finally:
        server.stop(0)
