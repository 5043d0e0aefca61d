"""Attestation: evidence providers, verifiers (SEV-SNP, TDX, simulated), policies, verify()."""

from enclave.attest.amd_certs import AmdProduct, AmdRoots, ProductRoots, pinned_roots
from enclave.attest.binding import NONCE_SIZE, new_nonce, report_data_for
from enclave.attest.configfs_tsm import ConfigfsTsmProvider
from enclave.attest.evidence import REPORT_DATA_SIZE, Claims, Evidence, EvidenceKind
from enclave.attest.measurement import runtime_measurement
from enclave.attest.policy import AllowedMeasurement, ReleasePolicy, SignedReleasePolicy
from enclave.attest.provider import EvidenceProvider
from enclave.attest.simulated import SIMULATED_WARNING, SimulatedTee, verify_simulated
from enclave.attest.snp import parse_report, verify_snp
from enclave.attest.tdx import TdxQuote, intel_sgx_root_ca, parse_tdx_quote, verify_tdx
from enclave.attest.verdict import AttestationFailed, Check, CheckStatus, Verdict
from enclave.attest.verify import verify

__all__ = [
    "NONCE_SIZE",
    "REPORT_DATA_SIZE",
    "SIMULATED_WARNING",
    "AllowedMeasurement",
    "AmdProduct",
    "AmdRoots",
    "AttestationFailed",
    "Check",
    "CheckStatus",
    "Claims",
    "ConfigfsTsmProvider",
    "Evidence",
    "EvidenceKind",
    "EvidenceProvider",
    "ProductRoots",
    "ReleasePolicy",
    "SignedReleasePolicy",
    "SimulatedTee",
    "TdxQuote",
    "Verdict",
    "intel_sgx_root_ca",
    "new_nonce",
    "parse_report",
    "parse_tdx_quote",
    "pinned_roots",
    "report_data_for",
    "runtime_measurement",
    "verify",
    "verify_simulated",
    "verify_snp",
    "verify_tdx",
]
