"""JSON documents from outside, mutated by structure: manifests, simulated evidence, policies,
audit leaves, TDX collateral and safetensors headers; each parses, verifies only unchanged, or
is refused with a typed error."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given

from . import _seeds as seeds
from . import targets
from ._mutate import fuzz_settings, json_text

pytestmark = pytest.mark.timeout(300)

MODEL = seeds.sealed_model()
SIM = seeds.simulated()
NOTES = seeds.notes()


def _docs(*texts: bytes) -> list[object]:
    return [json.loads(t) for t in texts]


@fuzz_settings(200)
@given(data=json_text(_docs(MODEL.manifest_json), [MODEL.manifest_json]))
def test_manifest(data: bytes) -> None:
    targets.manifest(data)


@fuzz_settings(200)
@given(data=json_text(_docs(SIM.raw), [SIM.raw]))
def test_simulated_evidence(data: bytes) -> None:
    targets.simulated(data)


@fuzz_settings(150)
@given(data=json_text(_docs(SIM.policy_json), [SIM.policy_json]))
def test_release_policy(data: bytes) -> None:
    targets.policy(data)


@fuzz_settings(200)
@given(data=json_text(_docs(*NOTES.leaves[:3]), list(NOTES.leaves[:3])))
def test_audit_leaf(data: bytes) -> None:
    targets.audit_leaf(data)


def _collateral_docs() -> list[object]:
    # Both spellings the parser accepts: signed bodies as JSON text, and as whole PCS responses.
    original = json.loads(seeds.tdx()["collateral_v4"])
    nested = dict(original)
    for key, wrapper in (("tcb_info", "tcbInfo"), ("qe_identity", "enclaveIdentity")):
        nested[key] = {
            wrapper: json.loads(original[key]),
            "signature": original[f"{key}_signature"],
        }
        del nested[f"{key}_signature"]
    inner = json.loads(original["tcb_info"])
    return [original, nested, inner]


@fuzz_settings(80)
@given(data=json_text(_collateral_docs(), [seeds.tdx()["collateral_v4"]]))
def test_tdx_collateral(data: bytes) -> None:
    targets.tdx_collateral(data)


def _with_length(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


@fuzz_settings(200)
@given(text=json_text(_docs(MODEL.safetensors_header[8:]), [MODEL.safetensors_header[8:]]))
def test_safetensors_header(text: bytes) -> None:
    targets.safetensors(_with_length(text))
