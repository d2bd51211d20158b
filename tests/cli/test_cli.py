from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .conftest import BIN, Result


def test_add_search_get_list_stats(run: Callable[..., Result]) -> None:
    r = run(
        "memory",
        "add",
        "the deploy key lives in the vault",
        "--tags",
        "ops,secrets",
        "--project",
        "infra",
        "--meta",
        "source=chat",
        "--json",
    )
    assert r.code == 0, r.err
    rid = r.json()["id"]
    assert run("memory", "add", "remember to buy milk").code == 0
    r = run("memory", "search", "where is the deploy key", "--json")
    assert r.code == 0 and r.err == "", r.err
    hits = r.json()
    assert hits[0]["id"] == rid and hits[0]["rank"] == 1 and hits[0]["layer"] == "interact"
    assert hits[0]["record"]["tags"] == ["ops", "secrets"]
    assert hits[0]["record"]["metadata"] == {"source": "chat"}
    table = run("memory", "search", "deploy key")
    assert table.code == 0 and "deploy key" in table.out and "score" in table.out
    assert run("memory", "get", rid, "--json").json()["project"] == "infra"
    assert len(run("memory", "list", "--json").json()) == 2
    st = run("memory", "stats", "--json").json()
    assert st["records"] == 2 and st["layers"]["interact"]["records"] == 2
    # The text forms: readable fields, no Python reprs.
    shown = run("memory", "get", rid).out
    assert "tags          ops, secrets" in shown and "  source  chat" in shown
    for args in (("memory", "stats"), ("status",)):
        out = run(*args).out
        assert "None" not in out and "{" not in out
        assert "index     exact, 2 records (all layers)" in out


def test_json_output_is_only_json(run: Callable[..., Result]) -> None:
    run("memory", "add", "alpha beta")
    for args in (
        ("status", "--json"),
        ("memory", "stats", "--json"),
        ("config", "show", "--json"),
        ("health", "--json"),
        ("models", "list", "--json"),
        ("performance", "--json"),
    ):
        r = run(*args)
        assert r.code == 0, (args, r.err)
        json.loads(r.out)  # nothing else on stdout


def test_help_is_fast_and_light(run: Callable[..., Result]) -> None:
    code = (
        "import sys, runpy; sys.argv = ['magray', '--help']\n"
        "try:\n    from magray.cli import main; main()\nexcept SystemExit: pass\n"
        "heavy = ('numpy', 'onnxruntime', 'rocksdict', 'hnswlib')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert "memory" in r.stdout and "Usage" in r.stdout


def snapshot(run: Callable[..., Result]) -> str:
    r = run("memory", "list", "--json", "--limit", "1000")
    return r.out


def one_line_error(r: Result, codes: tuple[int, ...] = (1, 2)) -> None:
    assert r.code in codes, (r.code, r.out, r.err)
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r.err
    assert "Traceback" not in r.err and lines[0].startswith("magray: ")


def test_bad_input_battery(run: Callable[..., Result], tmp_path: Path) -> None:
    run("memory", "add", "first memory about rockets")
    run("memory", "add", "second memory about gardens", "--layer", "assets")
    before = snapshot(run)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    truncated = tmp_path / "bk"
    assert run("memory", "backup", str(truncated)).code == 0
    victim = max(
        (p for p in (truncated / "db").iterdir() if p.is_file()), key=lambda p: p.stat().st_size
    )
    victim.write_bytes(victim.read_bytes()[:10])
    cases = [
        ("memory", "add", "x", "--layer", "archive"),
        ("memory", "search", "rockets", "--k", "0"),
        ("memory", "search", "rockets", "--k", "-1"),
        ("memory", "search", ""),
        ("memory", "add", "--file", str(tmp_path / "missing.jsonl")),
        ("memory", "add", "--file", str(binary)),
        ("memory", "add", "--file", str(tmp_path)),
        ("--store", str(a_file), "memory", "list"),
        ("config", "set", "no_such_key", "1"),
        ("memory", "restore", str(truncated)),
        ("models", "pull", "no-such-model"),
        ("memory", "get", "not-an-id"),
    ]
    for args in cases:
        r = run(*args)
        one_line_error(r)
        assert snapshot(run) == before, args
    r = run("memory", "add", "x", "--layer", "archive")
    assert r.code == 2 and "interact" in r.err
    r = run("--debug", "memory", "get", "not-an-id")
    assert r.code == 1 and "Traceback" in r.err  # --debug shows it


def test_jsonl_with_a_malformed_line_reports_it_and_imports_the_rest(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(
        '{"text": "one good line"}\n{"text": broken\n{"text": "another good line", "tags": "a,b"}\n'
    )
    r = run("memory", "add", "--file", str(f), "--json")
    one_line_error(r, codes=(1,))
    assert ":2:" in r.err and r.json()["stored"] == 2
    assert len(run("memory", "list", "--json").json()) == 2
    strict = run("memory", "add", "--file", str(f), "--strict")
    one_line_error(strict, codes=(1,))


def test_jsonl_lines_with_wrongly_typed_fields_are_reported_by_line(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    f = tmp_path / "typed.jsonl"
    lines = [
        {"text": "good one"},
        {"text": "tags as a number", "tags": 5},
        {"text": "importance as a list", "importance": [1]},
        {"text": "layer as a list", "layer": ["assets"]},
        {"text": "good two", "tags": ["x"]},
    ]
    f.write_text("".join(json.dumps(line) + "\n" for line in lines))
    r = run("memory", "add", "--file", str(f), "--json")
    # One report line per bad line, naming it; the good lines are stored.
    assert r.code == 1 and "Traceback" not in r.err
    err_lines = r.err.splitlines()
    assert [line.split(":")[2] for line in err_lines] == ["2", "3", "4"], r.err
    assert all(line.startswith(f"magray: {f}:") for line in err_lines)
    assert r.json() == {"stored": 2, "already_present": 0, "bad_lines": 3, "interrupted": False}
    assert sorted(m["text"] for m in run("memory", "list", "--json").json()) == [
        "good one",
        "good two",
    ]


def test_second_writer_while_an_import_runs(run: Callable[..., Result], tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("\n".join(f"line number {i} of a long import" for i in range(30000)))
    env = dict(
        os.environ,
        MAGRAY_HOME=str(tmp_path / "store"),
        MAGRAY_EMBEDDER="hash",
        MAGRAY_CONFIG=str(tmp_path / "config.toml"),
    )
    proc = subprocess.Popen(
        [str(BIN), "memory", "add", "--file", str(big), "--batch-size", "200"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "store" / "writer.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        r = run("memory", "add", "a second writer")
        one_line_error(r, codes=(1,))
        assert "open for writing by process" in r.err
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    # The import stopped after its current batch and said how much it stored.
    assert proc.returncode == 130, err
    assert "stored" in out and "interrupted" in out
    stored = int(out.split("stored ")[1].split()[0])
    assert 0 < stored < 30000
    r = run("memory", "stats", "--json")
    assert r.json()["records"] == stored
    again = run("memory", "add", "--file", str(big), "--batch-size", "5000", "--json")
    assert again.code == 0, again.err
    assert again.json()["already_present"] == stored and again.json()["stored"] == 30000 - stored


def test_config_show_path_set_and_precedence(run: Callable[..., Result], tmp_path: Path) -> None:
    assert run("config", "path").out.strip() == str(tmp_path / "config.toml")
    assert run("config", "set", "hnsw_ef_search", "80").code == 0
    shown = run("config", "show", "--json").json()["settings"]
    assert shown["hnsw_ef_search"] == {"value": 80, "source": f"file {tmp_path / 'config.toml'}"}
    assert shown["embedder"]["source"] == "environment MAGRAY_EMBEDDER"
    env = run("config", "show", "--json", extra_env={"MAGRAY_HNSW_EF_SEARCH": "90"}).json()
    assert env["settings"]["hnsw_ef_search"]["value"] == 90
    flag = run("--log-format", "json", "config", "show", "--json").json()
    assert flag["settings"]["log_format"] == {"value": "json", "source": "command line"}
    # --config with ~ is the same file for set as for show.
    home = tmp_path / "home"
    home.mkdir()
    tilde = {"HOME": str(home)}
    assert run("--config", "~/m.toml", "config", "set", "hnsw_m", "24", extra_env=tilde).code == 0
    assert (home / "m.toml").is_file()
    shown = run("--config", "~/m.toml", "config", "show", "--json", extra_env=tilde).json()
    assert shown["settings"]["hnsw_m"]["value"] == 24
    bad = run("config", "set", "hnsw_m", "lots")
    one_line_error(bad, codes=(1,))
    assert "hnsw_m" in bad.err and "lots" in bad.err


def test_small_and_bad_resource_settings(run: Callable[..., Result], tmp_path: Path) -> None:
    # Valid settings below the resource manager's usual floors (a cache turned off, tiny
    # batches) must work; a negative memory limit is refused naming the setting.
    small = {"MAGRAY_CACHE_L1_BYTES": "0", "MAGRAY_BATCH_SIZE": "2"}
    assert run("memory", "add", "a small fact", extra_env=small).code == 0
    st = run("status", extra_env=small)
    assert st.code == 0, st.err
    bad = run("status", extra_env={"MAGRAY_RSS_LIMIT_MB": "-1"})
    one_line_error(bad, codes=(1, 2))
    assert "rss_limit_mb" in bad.err and ">= 0" in bad.err


def test_reading_commands_do_not_load_the_embedder(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    # get, list, export and metrics never embed: they work even when the configured model
    # cannot be loaded, while a command that embeds says so in one line.
    a = run("memory", "add", "a fact to read back").out.strip()
    gone = {"MAGRAY_EMBEDDER": "all-MiniLM-L6-v2"}  # not installed in this test's models dir
    assert run("memory", "get", a, extra_env=gone).code == 0
    assert [r["id"] for r in run("memory", "list", "--json", extra_env=gone).json()] == [a]
    out = tmp_path / "out.jsonl"
    assert run("memory", "export", str(out), extra_env=gone).code == 0
    assert json.loads(out.read_text())["text"] == "a fact to read back"
    assert run("metrics", extra_env=gone).code == 0
    search = run("memory", "search", "fact", extra_env=gone)
    one_line_error(search)
    assert "all-MiniLM-L6-v2" in search.err


def test_lifecycle_backup_export_commands(run: Callable[..., Result], tmp_path: Path) -> None:
    run("memory", "add", "vital fact", "--importance", "0.9")
    r = run("memory", "promote", "--dry-run", "--json")
    assert r.json()["dry_run"] and r.json()["summary"] == {"interact->insights": 1}
    assert run("memory", "promote", "--json").json()["summary"] == {"interact->insights": 1}
    assert run("memory", "expire", "--json").code == 0
    dest = tmp_path / "b1"
    assert run("memory", "backup", str(dest)).code == 0 and (dest / "manifest.json").exists()
    assert run("memory", "backup").code == 0
    assert len(run("memory", "list-backups", "--json").json()) == 1
    # A backup whose manifest was cut short is listed as damaged; the listing goes on.
    broken = Path(run("memory", "list-backups", "--json").json()[0]["path"]).parent / "cut"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"created_at": 1')
    listed = run("memory", "list-backups", "--json")
    assert listed.code == 0, listed.err
    damaged = {Path(row["path"]).name: "damaged" in row for row in listed.json()}
    assert damaged.pop("cut") is True and list(damaged.values()) == [False]
    assert "damaged manifest" in run("memory", "list-backups").out
    out = tmp_path / "x.jsonl"
    assert run("memory", "export", str(out), "--vectors").code == 0
    assert json.loads(out.read_text().splitlines()[0])["layer"] == "insights"
    assert run("memory", "restore", str(dest)).code == 0
    assert run("memory", "import", str(out), "--json").json()["skipped"] == 1


def test_status_health_metrics_performance_warmup(run: Callable[..., Result]) -> None:
    run("memory", "add", "something to count")
    run("memory", "search", "count")
    st = run("status")
    assert st.code == 0 and "interact" in st.out and "embedder" in st.out
    h = run("health", "--json").json()
    assert h["healthy"] and {c["check"] for c in h["checks"]} >= {
        "store read/write",
        "index/store consistency",
        "embedder smoke test",
        "disk space",
        "memory",
    }
    prom = run("metrics", "--prometheus")
    assert prom.code == 0 and "magray_search_seconds_bucket" in prom.out
    perf = run("performance", "--json").json()
    assert perf["history"]
    assert run("warmup", "--json").json()["records"] == 1
    gpu = run("gpu", "info", "--json")
    assert gpu.code == 0 and "CPUExecutionProvider" in gpu.json()["providers"]


def test_search_modes_and_contains(run: Callable[..., Result]) -> None:
    assert run("memory", "add", "deploy failed with ERR_CONN_RESET").code == 0
    assert run("memory", "add", "the cat sleeps on the sofa").code == 0
    r = run("memory", "search", "err_conn_reset", "--mode", "text", "--json")
    assert r.code == 0, r.err
    hits = r.json()
    assert len(hits) == 1 and "ERR_CONN_RESET" in hits[0]["record"]["text"]
    assert set(hits[0]["scores"]) == {"text"}
    r = run("memory", "search", "anything", "--contains", "SOFA", "--json")
    assert [h["record"]["text"] for h in r.json()] == ["the cat sleeps on the sofa"]
    r = run("memory", "search", "x", "--mode", "fuzzy")
    assert r.code != 0 and "fuzzy" in r.err and "Traceback" not in r.err


def test_models_pull_through_a_hub_resumes_and_then_serves_offline(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    from huggingface_hub import constants

    from tests.embed.test_models import ONNX, blob, repo_files
    from tests.hub_standin import serve

    # A graph big enough that the library keeps a whole chunk before the connection drops.
    graph = blob("cli-graph", 2 * constants.DOWNLOAD_CHUNK_SIZE + 4321)
    files = dict(repo_files(), **{ONNX: graph})
    with serve() as hub:
        hub.add_repo("sentence-transformers/all-MiniLM-L6-v2", files)
        hub.queued[ONNX] = ["truncate"]
        env = {"HF_ENDPOINT": hub.url}
        header, first = run("models", "list", extra_env=env).out.splitlines()[:2]
        assert header.split() == ["NAME", "DIM", "STATE", "DESCRIPTION"]
        assert first.split()[:3] == ["all-MiniLM-L6-v2", "384", "-"]  # not installed yet
        pulled = run("models", "pull", "all-MiniLM-L6-v2", "--json", extra_env=env)
        assert pulled.code == 0, pulled.err
        requests = hub.content_requests(ONNX)
    assert [status for _rng, status in requests] == [200, 206]
    assert requests[1][0] == f"bytes={constants.DOWNLOAD_CHUNK_SIZE}-"
    path = Path(pulled.json()["path"])
    assert (path / ONNX).read_bytes() == graph
    assert (tmp_path / "hf" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2").is_dir()

    # Another models directory, the same Hugging Face cache, offline: found, not downloaded.
    offline = {"MAGRAY_MODELS_DIR": str(tmp_path / "other-models"), "HF_HUB_OFFLINE": "1"}
    listed = run("models", "list", "--json", extra_env=offline).json()
    row = next(r for r in listed if r["name"] == "all-MiniLM-L6-v2")
    assert row["installed"] is False and row["in_hf_cache"] is True
    again = run("models", "pull", "all-MiniLM-L6-v2", "--json", extra_env=offline)
    assert again.code == 0, again.err
    assert Path(again.json()["path"]).parent == tmp_path / "other-models"
    assert again.json()["already_installed"] is False
    # info prints one line per field; the files as one indented line each, no reprs.
    shown = run("models", "info", "all-MiniLM-L6-v2", extra_env=offline).out
    assert "{" not in shown and "None" not in shown
    lines = shown.splitlines()
    files = next(i for i, line in enumerate(lines) if line.startswith("files "))
    count = int(lines[files].split()[1])
    listed_files = lines[files + 1 : files + 1 + count]
    assert all(line.startswith("  ") and "sha256=" in line for line in listed_files)
    assert any(line.split()[0] == ONNX for line in listed_files)
    third = run("models", "pull", "all-MiniLM-L6-v2", extra_env=offline)
    assert third.code == 0 and "is already installed" in third.out
    assert run("models", "verify", extra_env=offline).code == 0

    # Offline and nothing cached: one line that names the way out.
    empty = dict(offline, HF_HOME=str(tmp_path / "empty-hf"))
    failed = run("models", "pull", "bge-small-en-v1.5", extra_env=empty)
    one_line_error(failed)
    assert "HF_HUB_OFFLINE" in failed.err
