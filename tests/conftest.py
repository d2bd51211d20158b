from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from magray import _native, kernels

# Property tests: enough examples to find boundary bugs, few enough for a 2-core CI.
settings.register_profile(
    "magray",
    max_examples=60,
    deadline=None,
    # The isa fixture deliberately holds one instruction set for all examples of a test.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.load_profile("magray")

AVAILABLE_ISAS: list[str] = list(kernels.cpu_info()["available"])  # type: ignore[call-overload]


@pytest.fixture(params=AVAILABLE_ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per instruction set this machine has."""
    before = kernels.cpu_info()["isa"]
    _native._set_isa(request.param)
    try:
        yield request.param
    finally:
        _native._set_isa(str(before))
