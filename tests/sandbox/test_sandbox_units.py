"""The sandbox's parts without a process: terms, bubblewrap argv, status table, export rules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from crypto.errors import (
    KeyUnwrapError,
    ManifestSignatureError,
    SegmentAuthError,
    StageOrderError,
    WrongKeyError,
)
from crypto.secagg import RoundParams, SecAggClient, SecAggServer
from crypto.secagg.messages import MessageKind
from enclave.errors import EvidenceUnavailable
from enclave.ml.errors import RecordError, TrainingDiverged
from enclave.sandbox import (
    ExportRefused,
    RoundError,
    SandboxTerms,
    TermsError,
    UntrustedManifest,
    WrongPhase,
    parse_terms,
)
from enclave.sandbox.aggregation import RoundExport, peek_secagg_request
from enclave.sandbox.bwrap import (
    CODE_MOUNT,
    DATA_MOUNT,
    SOCKET_MOUNT,
    SandboxMounts,
    build_bwrap_argv,
    interpreter_dirs,
    sandbox_environment,
)
from enclave.sandbox.errors import DataPathError, InvalidRequest
from enclave.sandbox.measure import code_roots
from enclave.sandbox.service import status_for
from enclave.sandbox.training import resolve_record_file

from ._support import SESSION_ID, make_terms

# -- terms ----------------------------------------------------------------------------------


def test_terms_round_trip_only_in_canonical_form() -> None:
    terms = make_terms()
    assert parse_terms(terms.canonical_bytes()) == terms
    pretty = terms.model_dump_json(indent=2).encode()
    with pytest.raises(TermsError) as caught:
        parse_terms(pretty)
    assert caught.value.field == "encoding"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"labels": ["only-one"]}, "document"),
        ({"secagg_min_threshold": None}, "document"),
        ({"secagg_min_threshold": 5}, "document"),  # above min_participants (3)
        ({"session_id": "../escape"}, "session_id"),
        ({"model_id": "no-version"}, "model_id"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"dp": {"enabled": True, "noise_multiplier": 0.0}}, "dp"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_terms_refuse_what_is_wrong_naming_the_field(change: dict, field: str) -> None:
    document = make_terms().model_dump(mode="json")
    document.update(change)
    from crypto.canonical import canonical_json

    with pytest.raises(TermsError) as caught:
        parse_terms(canonical_json(document))
    assert caught.value.field == field


def test_ckks_terms_take_no_threshold() -> None:
    terms = make_terms(aggregation="ckks", secagg_min_threshold=None)
    assert terms.aggregation == "ckks"
    with pytest.raises(ValueError, match="only to aggregation 'secagg'"):
        make_terms(aggregation="ckks")


# -- the bubblewrap command line --------------------------------------------------------------


def _argv(tmp_path: Path) -> list[str]:
    data, sock = tmp_path / "data", tmp_path / "sock"
    data.mkdir()
    sock.mkdir()
    mounts = SandboxMounts(data_dir=data, socket_dir=sock, code_roots=code_roots(),
                           interpreter_dirs=interpreter_dirs())
    env = sandbox_environment(num_threads=3, pythonpath=str(CODE_MOUNT), home="/tmp")
    return build_bwrap_argv(mounts, ["python", "-m", "x"], env=env, info_fd=9)


def _binds(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_argv_unshares_everything_and_drops_privileges(tmp_path: Path) -> None:
    argv = _argv(tmp_path)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--clearenv"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    remounted = [argv[i + 1] for i, a in enumerate(argv) if a == "--remount-ro"]
    assert remounted == ["/dev", "/"]  # the root last, after every mount point exists
    assert argv[argv.index("--info-fd") + 1] == "9"
    assert argv[argv.index("--") + 1 :] == ["python", "-m", "x"]


def test_argv_binds_data_read_only_and_only_the_socket_dir_writable(tmp_path: Path) -> None:
    argv = _argv(tmp_path)
    assert (str(tmp_path / "data"), str(DATA_MOUNT)) in _binds(argv, "--ro-bind")
    assert _binds(argv, "--bind") == [(str(tmp_path / "sock"), str(SOCKET_MOUNT))]
    targets = {t for _, t in _binds(argv, "--ro-bind")}
    assert {str(CODE_MOUNT / "crypto"), str(CODE_MOUNT / "enclave")} <= targets
    assert str(CODE_MOUNT / "fedtune") not in targets
    tmpfs = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert sorted(tmpfs) == ["/dev/shm", "/tmp"]


def test_argv_binds_neither_the_home_nor_fedtune_home(tmp_path: Path) -> None:
    argv = _argv(tmp_path)
    sources = [Path(s) for s, _ in _binds(argv, "--ro-bind") + _binds(argv, "--ro-bind-try")
               + _binds(argv, "--bind")]
    home = Path.home()
    fedtune_home = Path(os.environ.get("FEDTUNE_HOME", home / ".fedtune"))
    for source in sources:
        assert source != home and source != fedtune_home
        assert not fedtune_home.is_relative_to(source), f"{source} would expose FEDTUNE_HOME"
        if source.is_relative_to(home):
            # Only the interpreter's own prefixes may lie under the home (pyenv, a venv).
            assert source in {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
                              *interpreter_dirs()}


def test_environment_is_explicit_and_offline() -> None:
    env = sandbox_environment(num_threads=2, pythonpath="/opt/fedtune/code", home="/tmp")
    assert not any("proxy" in key.lower() for key in env)
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert env["HF_HOME"].startswith("/tmp") and env["HOME"] == "/tmp"
    with pytest.raises(ValueError):
        sandbox_environment(num_threads=0, pythonpath="", home="/tmp")


def test_record_paths_stay_inside_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.jsonl").write_text("{}\n")
    (tmp_path / "secret.jsonl").write_text("{}\n")
    (data / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    assert resolve_record_file(data, "ok.jsonl") == (data / "ok.jsonl").resolve()
    for name in ("../secret.jsonl", "/etc/passwd", "link.jsonl", "missing.jsonl", "a\\b"):
        with pytest.raises(DataPathError):
            resolve_record_file(data, name)
    with pytest.raises(InvalidRequest):
        resolve_record_file(data, "")


# -- the status table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (WrongPhase("Train", phase="started", needs="configured"), "FAILED_PRECONDITION"),
        (WrongKeyError("a" * 64, "b" * 64), "FAILED_PRECONDITION"),
        (UntrustedManifest(trusted="x", signer="y"), "PERMISSION_DENIED"),
        (ManifestSignatureError("ed25519:x", pinned=True), "PERMISSION_DENIED"),
        (ExportRefused("threshold", "too low"), "PERMISSION_DENIED"),
        (SegmentAuthError(3, final=False), "DATA_LOSS"),
        (KeyUnwrapError(), "INVALID_ARGUMENT"),
        (RecordError("t.jsonl", 3, "label", "unknown label"), "INVALID_ARGUMENT"),
        (TermsError("labels", "too few"), "INVALID_ARGUMENT"),
        (StageOrderError(expected="setup", got="unmask"), "FAILED_PRECONDITION"),
        (RoundError("again", expected="> 1", got=1), "FAILED_PRECONDITION"),
        (TrainingDiverged(3, float("nan")), "ABORTED"),
        (EvidenceUnavailable("no TEE"), "UNAVAILABLE"),
    ],
)
def test_every_domain_error_has_its_status(error: Exception, code: str) -> None:
    assert status_for(error) is getattr(grpc.StatusCode, code)


def test_a_bug_is_not_a_domain_error() -> None:
    assert status_for(KeyError("x")) is None
    assert status_for(ValueError("x")) is None


# -- the export rules -----------------------------------------------------------------------


def _export(terms: SandboxTerms, update: np.ndarray, examples: int = 10) -> RoundExport:
    from enclave.sandbox.state import SandboxState

    return RoundExport(1, update, examples, terms, privatize=SandboxState._privatizer(terms))


def _setup_request(params: RoundParams, client: int) -> bytes:
    return SecAggServer(params).setup_requests()[client]


def test_peek_reads_the_header_of_a_request() -> None:
    params = RoundParams.create(b"sess", 4, [5, 6, 7], 10)
    kind, session, round_number, client = peek_secagg_request(_setup_request(params, 6))
    assert (kind, session, round_number, client) == (MessageKind.SETUP_REQUEST, b"sess", 4, 6)
    for bad in (b"", b"FTSA", b"XXXX\x01\x01\x00", b"FTSA\x02\x01\x00" + bytes(16)):
        with pytest.raises(InvalidRequest):
            peek_secagg_request(bad)


@pytest.mark.parametrize(
    ("terms_change", "params_change", "rule"),
    [
        ({"min_participants": 4, "secagg_min_threshold": 3}, {}, "threshold"),
        ({"min_participants": 4}, {}, "participants"),
        ({}, {"vector_length": 11}, "vector_length"),
        ({}, {"max_weight": 10.0}, "max_weight"),
    ],
)
def test_setup_against_the_terms_is_refused_and_wipes_the_update(
    terms_change: dict, params_change: dict, rule: str
) -> None:
    terms = make_terms(**terms_change)
    update = np.ones(10, dtype=np.float32)
    export = _export(terms, update)
    args = {"vector_length": 10, **params_change}
    length = args.pop("vector_length")
    params = RoundParams.create(SESSION_ID.encode(), 1, [1, 2, 3], length, **args)
    with pytest.raises(ExportRefused) as caught:
        export.secagg(_setup_request(params, 1), adapter_length=10)
    assert caught.value.rule == rule
    assert not export.pending
    assert not update.any()  # zeroed in place, not just dropped


def test_dp_clips_and_noises_the_update_before_masking() -> None:
    terms = make_terms(dp={"enabled": True, "clip_norm": 0.5, "noise_multiplier": 0.01,
                           "num_clients": 3})
    length = 2000
    update = np.random.default_rng(1).normal(0, 1, length).astype(np.float32)
    direction = update / np.linalg.norm(update)
    export = _export(terms, update.copy(), examples=40)
    ids = [1, 2, 3]
    params = RoundParams.create(SESSION_ID.encode(), 1, ids, length)
    server = SecAggServer(params)
    peers = {c: SecAggClient(c, session_id=params.session_id, round_number=1) for c in (2, 3)}

    def answer(requests: dict[int, bytes], call) -> dict[int, bytes]:
        out = {}
        for c, r in requests.items():
            out[c] = export.secagg(r, adapter_length=length)[0] if c == 1 else call(peers[c], r)
        return out

    zero = np.zeros(length, dtype=np.float32)
    server.receive_setup(answer(server.setup_requests(), lambda c, r: c.setup(r)))
    server.receive_share_keys(answer(server.share_keys_requests(), lambda c, r: c.share_keys(r)))
    server.receive_masked_vectors(answer(server.collect_requests(),
                                         lambda c, r: c.collect_masked_vector(r, zero, 1.0)))
    result = server.receive_unmask(answer(server.unmask_requests(), lambda c, r: c.unmask(r)))
    # With DP every client weighs 1, so the sum is 3x the average; the peers sent zeros.
    assert result.total_weight == pytest.approx(3.0, abs=1e-3)
    contribution = result.average * 3
    sigma = 0.01 * 0.5 / np.sqrt(3)
    assert np.linalg.norm(contribution) == pytest.approx(
        np.sqrt(0.5**2 + length * sigma**2), rel=0.05)
    assert float(contribution @ direction) == pytest.approx(0.5, abs=5 * sigma)
    assert not export.pending
