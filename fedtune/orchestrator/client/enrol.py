"""Enrolling a party: pin the deployment CA by fingerprint, prove identity, get a certificate."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from crypto.identity import Identity
from fedtune._proto import common_pb2, enrolment_pb2, enrolment_pb2_grpc
from fedtune.orchestrator import pki
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.client.config import ClientConfig, identity_path
from fedtune.orchestrator.enrolment import SIGNING_CONTEXT, EnrolmentRequest
from fedtune.orchestrator.errors import EnrolmentRefused, RemoteError

_TIMEOUT_S = 30.0


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) as (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def fetch_pinned_ca(
    address: str, ca_fingerprint: str, *, timeout: float = _TIMEOUT_S
) -> x509.Certificate:
    """Read the server's certificate chain and return the CA whose fingerprint is pinned.

    The handshake is not verified (there is nothing to verify against yet); trust comes from
    the pinned fingerprint alone, and the server's leaf must be issued by that CA.
    """
    host, port = split_address(address)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        # Python 3.13 has get_unverified_chain() on the socket; 3.11/3.12 on the SSL object.
        getter = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain
        chain = [
            x509.load_der_x509_certificate(c.public_bytes(ssl._ssl.ENCODING_DER)) for c in getter()
        ]
    if not chain:
        raise EnrolmentRefused(f"{address} presented no certificate")
    for cert in chain:
        if pki.ca_fingerprint(cert) == ca_fingerprint:
            try:
                chain[0].verify_directly_issued_by(cert)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise EnrolmentRefused(
                    f"{address}'s certificate is not issued by the pinned CA ({exc})"
                ) from None
            return cert
    got = ", ".join(pki.ca_fingerprint(c) for c in chain)
    raise EnrolmentRefused(
        f"{address} presented no CA with the pinned fingerprint {ca_fingerprint} (got {got}); "
        "check the fingerprint 'fedtune orchestrator init' printed, or the address"
    )


def enrol(
    address: str,
    token: str,
    ca_fingerprint: str,
    home: Path,
    *,
    identity_file: Path | None = None,
    timeout: float = _TIMEOUT_S,
) -> ClientConfig:
    """Redeem ``token`` at the enrolment port ``address``; save the client config under ``home``."""
    if not token:
        raise ValueError("token must not be empty")
    ca = fetch_pinned_ca(address, ca_fingerprint, timeout=timeout)
    id_path = Path(identity_file) if identity_file else identity_path(home)
    identity = Identity.load(id_path) if id_path.exists() else Identity.generate()
    if not id_path.exists():
        identity.save(id_path)
    tls_key = pki.generate_tls_key()
    request = EnrolmentRequest(
        token=token,
        identity=identity.public.raw,
        csr=pki.build_csr(tls_key, identity.public.short_fingerprint),
        ca_fingerprint=ca_fingerprint,
        requested_at=dt.datetime.now(dt.UTC),
    )
    canonical = request.canonical_bytes()
    signed = common_pb2.SignedDocument(
        canonical=canonical, signature=identity.sign(canonical, context=SIGNING_CONTEXT)
    )
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.cert_to_pem(ca))
    with grpc.secure_channel(address, credentials) as channel:
        try:
            response = enrolment_pb2_grpc.EnrolmentStub(channel).Enrol(
                enrolment_pb2.EnrolRequest(request=signed), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise RemoteError("Enrol", exc.code().name, exc.details() or "") from None
    cert = pki.cert_from_pem(response.certificate_pem.encode())
    principal = pki.principal_from_certificate(cert)
    if principal.fingerprint != identity.fingerprint:
        raise EnrolmentRefused("the issued certificate is bound to another identity")
    host, _ = split_address(address)
    server = f"[{host}]:{response.api_port}" if ":" in host else f"{host}:{response.api_port}"
    return ClientConfig.write_new(
        home,
        identity=identity,
        tls_key=tls_key,
        certificate=cert,
        ca_certificate=ca,
        server=server,
        role=Role(response.role),
        name=response.name,
        identity_file=id_path,
    )
