from __future__ import annotations

import numpy as np
import pytest

from magray.embed import HashEmbedder


def test_unit_rows_deterministic_and_lexical() -> None:
    e = HashEmbedder()
    texts = [
        "the deploy key lives in the vault",
        "where is the deploy key",
        "bananas are yellow",
        "",
    ]
    v = e.embed(texts)
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-6)
    assert not v[3].any()  # no features, no direction
    np.testing.assert_array_equal(v, HashEmbedder().embed(texts))
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_fingerprint_depends_on_settings() -> None:
    assert HashEmbedder().fingerprint == HashEmbedder().fingerprint
    assert HashEmbedder(dim=128).fingerprint != HashEmbedder().fingerprint
    assert HashEmbedder(dim=128).embed(["x y"]).shape == (1, 128)
    with pytest.raises(ValueError, match="dim"):
        HashEmbedder(dim=2)
