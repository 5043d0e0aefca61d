"""A party's client configuration: where the orchestrator is and which credentials to use."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, ValidationError

from crypto.atomicfile import atomic_write_bytes
from crypto.identity import Identity
from fedtune.orchestrator import pki
from fedtune.orchestrator.authz import Role
from fedtune.orchestrator.errors import ConfigurationError

CLIENT_DIR = "orchestrator"
CONFIG_FILE = "client.json"
IDENTITY_FILE = "identity.pem"


def identity_path(home: Path) -> Path:
    """A party's Ed25519 identity by default: ``<home>/identity.pem`` (as the provider tools)."""
    return Path(home) / IDENTITY_FILE


class ClientConfig(BaseModel):
    """Saved at enrolment under ``<home>/orchestrator/client.json`` so later commands need no
    flags; paths are absolute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str
    ca_certificate: Path
    certificate: Path
    tls_key: Path
    identity: Path
    role: Role
    name: str
    fingerprint: str
    ca_fingerprint: str

    @staticmethod
    def path_in(home: Path) -> Path:
        """The config file of the party whose home is ``home``."""
        return Path(home) / CLIENT_DIR / CONFIG_FILE

    @classmethod
    def load(cls, home: Path) -> ClientConfig:
        """Read the config; ConfigurationError (saying to enrol) when there is none."""
        path = cls.path_in(home)
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise ConfigurationError(
                f"no orchestrator client configuration at {path}: enrol first with "
                "'fedtune enrol --server HOST:PORT --token TOKEN --ca-fingerprint FP' "
                "(or set FEDTUNE_HOME to the party's home)"
            ) from None
        except ValidationError as exc:
            raise ConfigurationError(f"{path} is not a valid client configuration: {exc}") from None

    def save(self, home: Path) -> None:
        """Write the config atomically."""
        atomic_write_bytes(self.path_in(home), self.model_dump_json(indent=2).encode() + b"\n")

    @classmethod
    def write_new(
        cls,
        home: Path,
        *,
        identity: Identity,
        tls_key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        ca_certificate: x509.Certificate,
        server: str,
        role: Role,
        name: str,
        identity_file: Path | None = None,
    ) -> ClientConfig:
        """Store the credentials under ``home`` and the config pointing at them."""
        home = Path(home).absolute()
        folder = home / CLIENT_DIR
        id_path = identity_file or identity_path(home)
        if not id_path.exists():
            identity.save(id_path)
        atomic_write_bytes(folder / "client-tls.key", pki.key_to_pem(tls_key), mode=0o600)
        atomic_write_bytes(folder / "client.pem", pki.cert_to_pem(certificate))
        atomic_write_bytes(folder / "ca.pem", pki.cert_to_pem(ca_certificate))
        config = cls(
            server=server,
            ca_certificate=folder / "ca.pem",
            certificate=folder / "client.pem",
            tls_key=folder / "client-tls.key",
            identity=id_path.absolute(),
            role=role,
            name=name,
            fingerprint=identity.fingerprint,
            ca_fingerprint=pki.ca_fingerprint(ca_certificate),
        )
        config.save(home)
        return config

    def load_identity(self) -> Identity:
        """The party's Ed25519 identity (refusing a key file others can read)."""
        return Identity.load(self.identity)
