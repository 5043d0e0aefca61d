"""Every target on mutations of its real seeds and on random bytes: a result or a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ._mutate import fuzz_settings, seeded_bytes
from .targets import TARGETS

pytestmark = pytest.mark.timeout(300)

# Examples per target in the default suite; the slow targets (a real audit log verified end to
# end, TDX collateral checked to Intel's root) get fewer, the campaign (atheris) covers depth.
_EXAMPLES = {"audit_saved_checkpoint": 25, "tdx_collateral": 60, "configfs": 60, "ckks": 40}
_DEFAULT = 120


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_answers_typed(name: str) -> None:
    target = TARGETS[name]
    strategy = seeded_bytes(target.seeds())

    @fuzz_settings(_EXAMPLES.get(name, _DEFAULT))
    @given(data=strategy)
    def run(data: bytes) -> None:
        target.run(data)

    run()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_accepted(name: str) -> None:
    # The seeds are valid inputs: a target that refused them would make every mutation moot.
    for seed in TARGETS[name].seeds():
        outcome = TARGETS[name].run(seed)
        assert outcome.ok, f"{name} refused its own seed: {outcome.error}"


def test_random_bytes_never_verify() -> None:
    @fuzz_settings(60)
    @given(raw=st.binary(max_size=6000), which=st.integers(0, 2))
    def run(raw: bytes, which: int) -> None:
        TARGETS["evidence"].run(bytes([which]) + raw)

    run()
