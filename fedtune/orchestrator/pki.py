"""The deployment's X.509 PKI: CA, server and client certificates bound to Ed25519 identities.

grpcio's BoringSSL refuses Ed25519 TLS keys (handshake fails with
NO_COMMON_SIGNATURE_ALGORITHMS; ``tests/orchestrator/test_pki.py`` pins this), so every TLS key
is ECDSA P-256 and a party's client certificate *binds* its Ed25519 identity: the SAN carries
``fedtune:identity:<fingerprint>`` and ``fedtune:role:<role>``, and the CA issues it only after
the enrolment request was signed by that Ed25519 key (proof of possession).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedtune.orchestrator.authz import Principal, Role
from fedtune.orchestrator.errors import InvalidRequest, Unauthenticated

IDENTITY_URI_PREFIX = "fedtune:identity:"
ROLE_URI_PREFIX = "fedtune:role:"
CA_FINGERPRINT_PREFIX = "sha256:"

_CLOCK_SKEW = dt.timedelta(minutes=5)


def generate_tls_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key for TLS."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM of a private key (unencrypted; callers write it with mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_from_pem(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load a P-256 private key from PEM."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidRequest("tls key", f"expected an EC private key, got {type(key).__name__}")
    return key


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_from_pem(pem: bytes) -> x509.Certificate:
    """Parse one PEM certificate."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, x509.InvalidVersion) as exc:
        raise InvalidRequest("certificate", f"not a valid PEM X.509 certificate: {exc}") from None


def ca_fingerprint(cert: x509.Certificate) -> str:
    """``sha256:`` + hex SHA-256 of the DER certificate: what parties pin at enrolment."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return CA_FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def create_ca(
    name: str, *, now: dt.datetime, validity: dt.timedelta = dt.timedelta(days=3650)
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA for one deployment."""
    key = generate_tls_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedtune"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    subject: x509.Name,
    san: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    now: dt.datetime,
    validity: dt.timedelta,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def host_name(host: str) -> x509.GeneralName:
    """A SAN entry for a host: an IP address when it parses as one, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: list[str],
    *,
    now: dt.datetime,
    validity: dt.timedelta = dt.timedelta(days=825),
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS server key and certificate for ``hosts`` (DNS names or IP addresses)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    key = generate_tls_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    san = [host_name(h) for h in dict.fromkeys(hosts)]
    cert = _leaf(
        ca_key,
        ca_cert,
        key.public_key(),
        subject,
        san,
        ExtendedKeyUsageOID.SERVER_AUTH,
        now,
        validity,
    )
    return key, cert


def build_csr(tls_key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    """A DER certificate signing request for a party's TLS key."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(tls_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def issue_client_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr_der: bytes,
    *,
    fingerprint: str,
    role: Role,
    name: str,
    now: dt.datetime,
    validity: dt.timedelta = dt.timedelta(days=365),
) -> x509.Certificate:
    """Certify the CSR's P-256 key for ``role``, bound to the Ed25519 identity ``fingerprint``."""
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError as exc:
        raise InvalidRequest("csr", "not a DER certificate signing request") from exc
    if not csr.is_signature_valid:
        raise InvalidRequest("csr", "the CSR's self-signature does not verify")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise InvalidRequest("csr", "the TLS key must be ECDSA P-256")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedtune"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    san: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(IDENTITY_URI_PREFIX + fingerprint),
        x509.UniformResourceIdentifier(ROLE_URI_PREFIX + role.value),
    ]
    return _leaf(
        ca_key, ca_cert, public_key, subject, san, ExtendedKeyUsageOID.CLIENT_AUTH, now, validity
    )


def principal_from_certificate(cert: x509.Certificate) -> Principal:
    """Read the identity fingerprint, role and name a client certificate is bound to."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise Unauthenticated("client certificate has no subject alternative name") from None
    except ValueError as exc:
        # cryptography parses extensions lazily: a malformed or duplicated one surfaces here.
        raise Unauthenticated(f"client certificate has malformed extensions: {exc}") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    fingerprints = [
        u[len(IDENTITY_URI_PREFIX) :] for u in uris if u.startswith(IDENTITY_URI_PREFIX)
    ]
    roles = [u[len(ROLE_URI_PREFIX) :] for u in uris if u.startswith(ROLE_URI_PREFIX)]
    if len(fingerprints) != 1 or len(roles) != 1:
        raise Unauthenticated("client certificate must bind exactly one identity and one role")
    try:
        role = Role(roles[0])
    except ValueError:
        raise Unauthenticated(f"client certificate carries unknown role {roles[0]!r}") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else ""
    return Principal(fingerprint=fingerprints[0], role=role, name=name, serial=cert.serial_number)
