from __future__ import annotations

from pathlib import Path

import pytest

import magray
from magray.embed import select
from magray.embed.hashing import HashEmbedder
from magray.embed.onnx import OnnxEmbedder


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGRAY_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: offline
    monkeypatch.delenv("MAGRAY_EMBEDDER", raising=False)
    monkeypatch.setattr(select, "_warned", False)


def test_auto_offline_falls_back_to_hash_with_one_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    e = select.load_embedder("auto")
    assert isinstance(e, HashEmbedder)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "magray models pull all-MiniLM-L6-v2" in err[0]
    select.load_embedder("auto")
    assert capsys.readouterr().err == ""  # once per process


def test_auto_uses_an_installed_model(minilm_dir: Path) -> None:
    from magray.embed import models

    models.import_dir(minilm_dir, "all-MiniLM-L6-v2")
    e = select.load_embedder("auto")
    assert isinstance(e, OnnxEmbedder) and e.name == "all-MiniLM-L6-v2"


def test_explicit_choices(minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(select.load_embedder("hash"), HashEmbedder)
    assert select.load_embedder(None) is None
    assert isinstance(select.load_embedder(str(minilm_dir)), OnnxEmbedder)
    mine = HashEmbedder(dim=64)
    assert select.load_embedder(mine) is mine
    monkeypatch.setenv("MAGRAY_EMBEDDER", "hash")
    assert isinstance(select.load_embedder("auto"), HashEmbedder)


def test_unknown_and_missing_models_say_what_to_do() -> None:
    with pytest.raises(magray.InvalidInputError, match="magray models pull bge-small-en-v1.5"):
        select.load_embedder("bge-small-en-v1.5")
    with pytest.raises(magray.InvalidInputError, match="unknown embedder 'nonsense'"):
        select.load_embedder("nonsense")
    with pytest.raises(magray.InvalidInputError, match="not int"):
        select.load_embedder(42)


def test_store_reports_the_active_embedder(tmp_path: Path) -> None:
    with magray.open(tmp_path / "s", embedder="hash") as m:
        st = m.stats()["embedder"]
        assert st["kind"] == "HashEmbedder" and st["fingerprint"] == m._embedder.fingerprint


def test_a_failed_download_is_not_retried_at_every_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from magray.embed import models

    calls: list[str] = []
    real = models.pull

    def counting(name: str, **kw):  # type: ignore[no-untyped-def]
        calls.append(name)
        return real(name, **kw)

    monkeypatch.setattr(models, "pull", counting)
    assert isinstance(select.load_embedder("auto"), HashEmbedder)
    assert isinstance(select.load_embedder("auto"), HashEmbedder)
    assert calls == ["all-MiniLM-L6-v2"]
    marker = tmp_path / "models" / ".download-failed-all-MiniLM-L6-v2"
    import os

    os.utime(marker, (0, 0))  # long ago: try again
    select.load_embedder("auto")
    assert len(calls) == 2


def test_open_auto_follows_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('embedder = "hash"\n')
    monkeypatch.setenv("MAGRAY_CONFIG", str(cfg))
    with magray.open(tmp_path / "s") as m:
        assert m.stats()["embedder"]["kind"] == "HashEmbedder"
    cfg.write_text('embedder = "bge-small-en-v1.5"\n')
    with pytest.raises(magray.InvalidInputError, match="models pull bge-small-en-v1.5"):
        magray.open(tmp_path / "s2")
