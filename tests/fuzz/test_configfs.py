"""configfs-tsm outputs (provider, generation, outblob, auxblob) as a hostile kernel would give."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclave.attest.configfs_tsm import ConfigfsTsmProvider
from enclave.attest.evidence import EvidenceKind
from enclave.attest.snp import parse_evidence_claims
from enclave.attest.snp_cert_table import chain_from_table, parse_cert_table
from enclave.errors import EnclaveError

from . import _seeds as seeds
from ._contract import typed
from ._fake_tsm import Answer, FakeTsm
from ._mutate import fuzz_settings, seeded_bytes
from .targets import _scratch

pytestmark = pytest.mark.timeout(300)

SNP, TDX = seeds.snp(), seeds.tdx()
ROOT = _scratch("fedtune-fuzz-configfs-")
# Entry offsets of the certificate table: GUID, offset (u32 at 16), length (u32 at 20).
TABLE_FIELDS = tuple(base + field for base in range(0, 96, 24) for field in (16, 20))

answers = st.builds(
    Answer,
    provider=st.sampled_from([b"sev_guest\n", b"tdx_guest\n", b"sev_guest", b""])
    | st.binary(max_size=16),
    outblob=seeded_bytes([SNP["gsg_report"], TDX["quote_v4"]], hot=(0, 8, 0x30, 0x48)),
    auxblob=st.none() | seeded_bytes([SNP["cert_table"]], hot=TABLE_FIELDS),
    generation=st.sampled_from([b"1\n", b"0", b" 42 ", b"-1", b"x", b"1" * 5000, b"\xff"]),
)


@fuzz_settings(120)
@given(answer=answers)
def test_provider_answers_typed_and_leaves_no_entry(answer: Answer) -> None:
    fake = FakeTsm(ROOT)
    fake.answer = answer
    provider = ConfigfsTsmProvider(ROOT, max_attempts=1)
    with fake.installed():
        outcome = typed(provider.get_evidence, seeds.REPORT_DATA, allowed=(EnclaveError,))
    assert fake.leftovers() == [], "the provider left a report entry behind"
    if outcome.ok:
        evidence = outcome.value
        kinds = {b"sev_guest": EvidenceKind.SEV_SNP, b"tdx_guest": EvidenceKind.TDX}
        assert evidence.kind is kinds[answer.provider.strip()]
        assert evidence.raw == answer.outblob
        if evidence.kind is EvidenceKind.SEV_SNP:
            assert evidence.claims == parse_evidence_claims(answer.outblob)
            expected = chain_from_table(parse_cert_table(answer.auxblob)) if answer.auxblob else []
            assert evidence.certificates == expected
