"""The PKI decision, pinned: grpcio refuses Ed25519 TLS keys, so TLS keys are P-256."""

from __future__ import annotations

import datetime as dt
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from crypto.identity import Identity
from fedtune.orchestrator import pki
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.errors import InvalidRequest, Unauthenticated

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _serve(ca_pem: bytes, key_pem: bytes, chain_pem: bytes) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "t.T", {"M": grpc.unary_unary_rpc_method_handler(lambda r, c: b"ok")}
            )
        ]
    )
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(key_pem, chain_pem)], root_certificates=ca_pem, require_client_auth=True
        ),
    )
    server.start()
    return server, port


def test_grpc_refuses_an_ed25519_client_key():
    """If this starts passing a handshake, the TLS key could become the identity key itself."""
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = pki.create_ca("t", now=now)
    srv_key, srv = pki.issue_server_certificate(ca_key, ca, ["127.0.0.1"], now=now)
    ed = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed")])
    from cryptography.hazmat.primitives import hashes

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.subject)
        .public_key(ed.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    server, port = _serve(pki.cert_to_pem(ca), pki.key_to_pem(srv_key), pki.cert_to_pem(srv))
    try:
        ed_pem = ed.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        creds = grpc.ssl_channel_credentials(pki.cert_to_pem(ca), ed_pem, pki.cert_to_pem(cert))
        with (
            grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel,
            pytest.raises(grpc.RpcError) as err,
        ):
            channel.unary_unary("/t.T/M")(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # The same chain with a P-256 client key works.
        p256 = pki.generate_tls_key()
        good = pki.issue_client_certificate(
            ca_key,
            ca,
            pki.build_csr(p256, "x"),
            fingerprint=Identity.generate().fingerprint,
            role=Role.PROVIDER,
            name="x",
            now=now,
        )
        creds = grpc.ssl_channel_credentials(
            pki.cert_to_pem(ca), pki.key_to_pem(p256), pki.cert_to_pem(good)
        )
        with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
            assert channel.unary_unary("/t.T/M")(b"", timeout=5) == b"ok"
    finally:
        server.stop(0)


def test_client_certificate_carries_identity_and_role():
    ca_key, ca = pki.create_ca("t", now=NOW)
    ident = Identity.generate()
    cert = pki.issue_client_certificate(
        ca_key,
        ca,
        pki.build_csr(pki.generate_tls_key(), "n"),
        fingerprint=ident.fingerprint,
        role=Role.AUDITOR,
        name="carol",
        now=NOW,
    )
    uris = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert sorted(uris) == sorted([f"fedtune:identity:{ident.fingerprint}", "fedtune:role:auditor"])
    p = pki.principal_from_certificate(cert)
    assert (p.fingerprint, p.role, p.name) == (ident.fingerprint, Role.AUDITOR, "carol")
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)


def test_certificate_without_binding_is_not_a_principal():
    ca_key, ca = pki.create_ca("t", now=NOW)
    _, server = pki.issue_server_certificate(ca_key, ca, ["localhost"], now=NOW)
    with pytest.raises(Unauthenticated, match="exactly one identity"):
        pki.principal_from_certificate(server)


def test_csr_with_wrong_curve_or_garbage_is_refused():
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key, ca = pki.create_ca("t", now=NOW)
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(InvalidRequest, match="P-256"):
        pki.issue_client_certificate(
            ca_key,
            ca,
            pki.build_csr(p384, "x"),
            fingerprint="f",
            role=Role.PROVIDER,
            name="x",
            now=NOW,
        )
    with pytest.raises(InvalidRequest, match="not a DER"):
        pki.issue_client_certificate(
            ca_key, ca, b"junk", fingerprint="f", role=Role.PROVIDER, name="x", now=NOW
        )


def test_ca_fingerprint_is_sha256_of_der():
    import hashlib

    _, ca = pki.create_ca("t", now=NOW)
    der = ca.public_bytes(serialization.Encoding.DER)
    assert pki.ca_fingerprint(ca) == "sha256:" + hashlib.sha256(der).hexdigest()
