from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from magray import _native, kernels

# No test reads the Hugging Face cache of the machine or reaches a hub: an empty cache of
# the run's own, a hub endpoint where nothing listens. Set before huggingface_hub is
# imported, which reads them once; tests that need a hub start the stand-in.
_HF_HOME = tempfile.mkdtemp(prefix="magray-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
for _var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MAGRAY_HUB_URL"):
    os.environ.pop(_var, None)

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
