"""The session plumbing that needs no processes: message codec, relay refusals, round parameters,
node matching by key, run config, and the terms a sandbox derives."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.app import ConfigRecord, RecordDict

from crypto.identity import Identity
from crypto.secagg.params import default_threshold
from enclave.sandbox import TermsSignatureError, derive_sandbox_terms, parse_session_terms
from enclave.sandbox.terms import PartySignature, SignedSessionTerms, verify_session_terms
from fedtune.federated.aggregator import aggregate_digest, round_params
from fedtune.federated.client_app import relay_batch
from fedtune.federated.messages import (
    RECORD,
    CallBatch,
    CallFailure,
    CallReplies,
    MessageFormatError,
)
from fedtune.federated.participants import OwnerKey, match_nodes, same_key
from fedtune.federated.server_app import RunSettings
from fedtune.federated.transport import NodeView
from fedtune.orchestrator.terms import SIGNING_CONTEXT, DifferentialPrivacy, SessionTerms

# -- messages ------------------------------------------------------------------------------------


def test_a_batch_and_its_replies_cross_as_one_config_record() -> None:
    batch = CallBatch("s1", ("Train", "ExportUpdate"), (b"\x01train", b"\x02export"))
    assert CallBatch.from_content(batch.to_content()) == batch
    replies = CallReplies(("Train",), (b"ok",), CallFailure(
        "ExportUpdate", "PERMISSION_DENIED", "ExportRefused", "clip 4.0, the terms say 8.0"))
    back = CallReplies.from_content(replies.to_content())
    assert back == replies and not back.answered(batch)
    assert back.failure is not None
    assert back.failure.describe() == (
        "ExportUpdate refused (PERMISSION_DENIED, ExportRefused): clip 4.0, the terms say 8.0")
    done = CallReplies(batch.methods, (b"a", b"b"))
    assert done.answered(batch)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"v": 2, "session": "s", "calls": ["Train"], "requests": [b""]}, "v"),
        ({"v": 1, "session": "s", "calls": ["Configure"], "requests": [b""]}, "calls"),
        ({"v": 1, "session": "s", "calls": ["LoadModel"], "requests": [b""]}, "calls"),
        ({"v": 1, "session": "s", "calls": ["Train"], "requests": []}, "requests"),
        ({"v": 1, "session": "s", "calls": ["Train"], "requests": ["text"]}, "requests"),
        ({"v": 1, "session": "", "calls": ["Train"], "requests": [b""]}, "session"),
        ({"v": 1, "session": "s", "calls": ["Train"] * 9, "requests": [b""] * 9}, "calls"),
    ],
)
def test_a_batch_the_relay_would_not_forward_is_refused_naming_the_field(
    record: dict, field: str
) -> None:
    content = RecordDict({RECORD: ConfigRecord(record)})
    with pytest.raises(MessageFormatError) as caught:
        CallBatch.from_content(content)
    assert caught.value.field == field


def test_set_up_calls_are_never_relayed() -> None:
    with pytest.raises(MessageFormatError):
        CallBatch("s1", ("InstallKey",), (b"",))
    with pytest.raises(MessageFormatError):
        CallReplies.from_content(RecordDict({}))


def test_the_relay_reports_a_missing_sandbox_as_a_typed_failure(tmp_path: Path) -> None:
    batch = CallBatch("s1", ("Status", "Evaluate"), (b"", b""))
    replies = relay_batch(batch, str(tmp_path / "nobody.sock"))
    assert replies.methods == () and replies.failure is not None
    assert (replies.failure.method, replies.failure.code) == ("Status", "UNAVAILABLE")
    assert replies.failure.error_type == "Unavailable"
    assert grpc.StatusCode.UNAVAILABLE.name == "UNAVAILABLE"


# -- round parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "minimum"), [(3, 2), (5, 2), (5, 5), (10, 7), (20, 3)])
def test_round_parameters_meet_the_terms_threshold(n: int, minimum: int) -> None:
    ids = [1000 + 17 * i for i in range(n)]
    params = round_params("s1", 2, ids, 64, min_threshold=minimum)
    assert params.threshold >= minimum
    assert params.threshold >= default_threshold(params.degree)
    assert params.threshold <= params.degree + 1 <= n
    assert params.participants == tuple(sorted(ids)) and params.round_number == 2
    assert (params.clip, params.max_weight) == (8.0, 1000.0)  # what every sandbox derives


def test_round_parameters_refuse_what_secure_aggregation_cannot_do() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        round_params("s1", 1, [1, 2], 8, min_threshold=2)
    with pytest.raises(ValueError, match="cannot be met"):
        round_params("s1", 1, [1, 2, 3], 8, min_threshold=4)


def test_aggregate_digest_is_sha256_of_the_bytes() -> None:
    # Known answer: SHA-256 of the empty string.
    assert aggregate_digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


# -- owners by key ---------------------------------------------------------------------------------


def _keys() -> tuple[str, bytes]:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    ssh = key.public_bytes(serialization.Encoding.OpenSSH,
                           serialization.PublicFormat.OpenSSH).decode()
    pem = key.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return ssh, pem


def test_nodes_are_matched_to_owners_by_their_signed_key_never_by_name() -> None:
    (a_ssh, a_pem), (b_ssh, b_pem), (_, c_pem) = _keys(), _keys(), _keys()
    alice, bob = Identity.generate(), Identity.generate()
    owners = [OwnerKey(alice.fingerprint, alice.public, a_ssh, b""),
              OwnerKey(bob.fingerprint, bob.public, b_ssh, b"")]
    nodes = [
        NodeView(11, c_pem, alice.fingerprint, True),  # claims alice's name, another key
        NodeView(12, a_pem, "", True),
        NodeView(13, b_pem, "whatever", False),
    ]
    found = match_nodes(nodes, owners)
    assert {fp: n.node_id for fp, n in found.items()} == {alice.fingerprint: 12,
                                                         bob.fingerprint: 13}
    assert same_key(a_ssh, a_pem) and not same_key(a_ssh, b_pem)
    assert not same_key("", a_pem) and not same_key(a_ssh, b"not pem")


# -- run config ------------------------------------------------------------------------------------


def test_run_settings_need_absolute_paths_and_numbers(tmp_path: Path) -> None:
    good = {"session-id": "s1", "orchestrator-home": str(tmp_path),
            "results-dir": str(tmp_path / "r"), "keep-aggregates": True}
    settings = RunSettings.from_run_config(good)
    assert settings.driver.aggregates_dir == tmp_path / "r" / "aggregates"
    assert settings.driver.train_timeout_s == 900.0
    for change, key in (({"session-id": ""}, "session-id"),
                        ({"results-dir": "relative"}, "results-dir"),
                        ({"stage-timeout-s": "soon"}, "stage-timeout-s"),
                        ({"keep-aggregates": 1}, "keep-aggregates")):
        with pytest.raises(ValueError, match=key):
            RunSettings.from_run_config(good | change)


# -- the terms a sandbox derives -------------------------------------------------------------------


def _terms(**changes: object) -> tuple[SessionTerms, Identity, Identity]:
    provider, owner, other = Identity.generate(), Identity.generate(), Identity.generate()
    values = dict(
        session_id="s1", model_name="acme/m", model_version="2",
        provider_fingerprint=provider.fingerprint,
        invited_owners=sorted([owner.fingerprint, other.fingerprint]), rounds=4,
        min_participants=2, secagg_threshold=2, labels=["a", "b"],
        created_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    )
    values.update(changes)
    return SessionTerms.model_validate(values), provider, owner


def test_a_sandbox_derives_its_limits_from_the_signed_terms() -> None:
    terms, _, _ = _terms(dp=DifferentialPrivacy(enabled=True, clip_norm=0.5,
                                                noise_multiplier=1.2), rounds=7)
    derived = derive_sandbox_terms(parse_session_terms(terms.canonical_bytes()))
    assert (derived.session_id, derived.model_id, derived.rounds) == ("s1", "acme/m@2", 7)
    assert (derived.aggregation, derived.secagg_min_threshold, derived.min_participants) == (
        "secagg", 2, 2)
    # DP noise is calibrated for the threshold: the fewest clients a released sum can have.
    assert (derived.dp.enabled, derived.dp.num_clients, derived.dp.clip_norm) == (True, 2, 0.5)
    ckks, _, _ = _terms(aggregation="ckks", secagg_threshold=None,
                        dp=DifferentialPrivacy(enabled=True, noise_multiplier=1.0))
    derived = derive_sandbox_terms(parse_session_terms(ckks.canonical_bytes()))
    assert (derived.aggregation, derived.secagg_min_threshold, derived.dp.num_clients) == (
        "ckks", None, 2)
    # Every owner of a session starts from the same seed; another session from another.
    other, _, _ = _terms(session_id="s2")
    assert derived.seed == derive_sandbox_terms(
        parse_session_terms(_terms()[0].canonical_bytes())).seed
    assert derived.seed != derive_sandbox_terms(parse_session_terms(other.canonical_bytes())).seed


def test_verify_session_terms_needs_both_signatures_over_the_exact_bytes() -> None:
    terms, provider, owner = _terms()
    document = terms.canonical_bytes()

    def signed(doc: bytes, p: Identity = provider, o: Identity = owner) -> SignedSessionTerms:
        return SignedSessionTerms(
            doc, PartySignature(p.public.raw, p.sign(doc, context=SIGNING_CONTEXT)),
            PartySignature(o.public.raw, o.sign(doc, context=SIGNING_CONTEXT)))

    assert verify_session_terms(signed(document)).rounds == 4
    good = signed(document)
    cases = [
        signed(document, o=Identity.generate()),  # not invited
        signed(document, p=Identity.generate()),  # not the provider the terms name
        SignedSessionTerms(document.replace(b'"rounds":4', b'"rounds":9'), good.provider,
                           good.owner),  # changed after signing
        SignedSessionTerms(document, good.provider, PartySignature(
            owner.public.raw, owner.sign(document, context="manifest"))),  # wrong context
    ]
    for case in cases:
        with pytest.raises(TermsSignatureError):
            verify_session_terms(case)
