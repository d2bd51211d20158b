"""Paths given with a leading ``~`` (quoted, or after ``--opt=``, the shell leaves it) mean
the home directory in every option and argument; none makes a directory named ``~``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def test_tilde_paths_expand_to_home_and_never_make_a_tilde_directory(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = {"HOME": str(home)}

    def call(*args: str) -> Any:
        r = run(*args, extra_env=env, cwd=work)
        assert r.code == 0, r.err
        return r

    store = ["--store", "~/store", "--config", "~/magray.toml"]
    call(*store, "config", "set", "hnsw_m", "24")
    call("--config=~/magray.toml", "config", "set", "hnsw_ef_search", "80")
    shown = call("--config", "~/magray.toml", "config", "path").out.strip()
    assert Path(shown) == home / "magray.toml"
    assert "hnsw_ef_search = 80" in (home / "magray.toml").read_text()

    call(*store, "--log-file", "~/magray.log", "memory", "add", "tilde paths are expanded")
    assert (home / "store" / "db").is_dir()
    assert (home / "magray.log").is_file()
    (home / "notes.txt").write_text("a note from a file\n")
    call(*store, "memory", "add", "--file", "~/notes.txt")
    call(*store, "memory", "export", "~/out.jsonl")
    assert len((home / "out.jsonl").read_text().splitlines()) == 2
    call(*store, "memory", "backup", "~/backup")
    assert (home / "backup" / "manifest.json").is_file()
    call("--store", "~/copy", "memory", "import", "~/out.jsonl")
    assert (home / "copy" / "db").is_dir()

    assert not any(p.name == "~" for p in work.rglob("*")), sorted(work.rglob("*"))
    assert list(work.iterdir()) == []
