"""Operations: status, health, performance, warmup, config, metrics, gpu."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from magray.cli.common import Ctx, emit_fields, emit_json, index_line, json_option


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


# -- status ---------------------------------------------------------------------------------


@click.command()
@json_option
@click.pass_obj
def status(ctx: Ctx, as_json: bool) -> None:
    """One screen: store, layers, indexes, embedder, cache, breaker, limits."""
    from magray import __version__

    app = ctx.app()
    path = app.store_path()
    data: dict[str, Any] = {"version": __version__, "store": str(path)}
    if not app.store_exists():
        data["state"] = "no store yet (the first `magray memory add` creates it)"
        emit_json(data) if as_json else click.echo(
            f"magray {__version__}\nstore {path}: {data['state']}"
        )
        return
    mem = app.memory(read_only=True)
    st = mem.stats()
    data.update(
        store_bytes=st["store_bytes"],
        records=st["records"],
        layers=st["layers"],
        dim=st["dim"],
        fingerprint=st["fingerprint"],
        embedder=st["embedder"],
        cache=st["cache"],
        cache_redis=st.get("cache_redis"),
    )
    from magray.ops.resources import ResourceManager

    data["limits"] = app.container(read_only=True).resolve(ResourceManager).limits()
    if as_json:
        emit_json(data)
        return
    out = [f"magray {__version__}", f"store     {path}  ({_mb(st['store_bytes'])})"]
    for layer, info in st["layers"].items():
        out.append(f"  {layer:9} {info.get('records', 0):>9} records")
    out.append(f"index     {index_line(st['index'])}")
    e = st["embedder"] or {}
    out.append(
        f"embedder  {e.get('name', 'none (vector-only)')}  {e.get('provider', '')}  "
        f"fingerprint {st['fingerprint'] or e.get('fingerprint', '-')}"
    )
    breaker = e.get("breaker")
    if breaker:
        out.append(
            f"breaker   {breaker['state']}  failures {breaker['failures']}"
            + (f"  last error: {breaker['last_error']}" if breaker.get("last_error") else "")
        )
    cache = (st["cache"] or {}).get("doc")
    if cache:
        out.append(
            f"cache     L1 hit rate {cache['l1']['hit_rate']:.0%} ({_mb(cache['l1']['bytes'])} "
            f"of {_mb(cache['l1']['limit_bytes'])}); L2 {cache['l2']['entries']} entries"
        )
    l3 = st.get("cache_redis")
    if l3:
        line = f"cache L3  {l3.get('url', '')} {l3['state']}"
        if "hit_rate" in l3:
            line += f"  hit rate {l3['hit_rate']:.0%} ({l3['hits']} hits, {l3['misses']} misses)"
        if l3.get("last_error"):
            line += f"  last error: {l3['last_error']}"
        out.append(line)
    lim = data["limits"]
    knobs = ", ".join(f"{k}={v['current']}" for k, v in lim.get("knobs", {}).items()) or "-"
    rss_limit = lim.get("thresholds", {}).get("rss_limit_bytes")
    out.append(
        f"limits    {knobs}; rss limit {_mb(rss_limit) if rss_limit else 'none'}; "
        f"memory pressure: {lim.get('last_pressure_reason') or 'none'}"
    )
    click.echo("\n".join(out))


# -- health ---------------------------------------------------------------------------------


class _Warning(Exception):
    """A check that found a problem which does not make magray unhealthy (an
    accelerator that is down)."""


def _check(name: str, fn: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    warn = False
    try:
        detail = fn()
        ok = True
    except _Warning as exc:
        detail, ok, warn = str(exc), False, True
    except Exception as exc:
        detail, ok = f"{type(exc).__name__}: {exc}", False
    out = {
        "check": name,
        "ok": ok,
        "ms": round((time.perf_counter() - t0) * 1e3, 2),
        "detail": detail,
    }
    if warn:
        out["warn"] = True
    return out


@click.command()
@json_option
@click.pass_obj
def health(ctx: Ctx, as_json: bool) -> None:
    """Component checks with latencies; exit 1 if anything is unhealthy."""
    app = ctx.app()
    path = app.store_path()
    results = []
    mem_box: dict[str, Any] = {}

    def store_rw() -> str:
        mem = app.memory()
        mem_box["m"] = mem
        s = mem.store
        key = b"health-probe"
        b = s.batch()
        b.put(key, str(time.time()).encode(), s.handle["meta"])
        s.write(b, durable=False)
        if s.get("meta", key) is None:
            raise RuntimeError("wrote a probe key and could not read it back")
        b = s.batch()
        b.delete(key, s.handle["meta"])
        s.write(b, durable=False)
        return "read/write ok"

    def consistency() -> str:
        from magray.memory.record import Layer

        mem = mem_box["m"]
        st = mem.stats()
        problems = []
        for layer in Layer:
            in_store = sum(1 for _ in mem.store.scan("labels", bytes((layer.code,))))
            indexed = st["layers"][layer.value]["records"]
            if indexed != in_store:
                problems.append(f"{layer.value}: index {indexed}, store {in_store}")
        if problems:
            raise RuntimeError("; ".join(problems))
        return f"{st['records']} records agree"

    def embedder() -> str:
        e = app.embedder()
        if e is None:
            return "vector-only store"
        v = e.embed(["health check"])
        if v.shape != (1, e.dim) or abs(float((v * v).sum()) - 1.0) > 1e-3:
            raise RuntimeError(f"unexpected output {v.shape}")
        return f"{e.name} ({getattr(e, 'provider', 'cpu')})"

    def disk() -> str:
        target = path if path.exists() else path.parent
        while not target.exists():
            target = target.parent
        usage = shutil.disk_usage(target)
        if usage.free < 512 << 20:
            raise RuntimeError(f"only {_mb(usage.free)} free")
        return f"{_mb(usage.free)} free"

    def memory_check() -> str:
        # The same reading and floor as the resource manager's pressure check.
        from magray.ops.resources import MIN_AVAILABLE_FRACTION, read_memory

        r = read_memory()
        if r.available_bytes < MIN_AVAILABLE_FRACTION * r.total_bytes:
            raise RuntimeError(f"only {_mb(r.available_bytes)} available")
        return f"rss {_mb(r.rss_bytes)}, available {_mb(r.available_bytes)}"

    def redis_cache() -> str:
        from magray.embed.redis_tier import describe, probe

        url = app.settings.values.get("cache_redis_url") or ""
        reason = probe(url)
        if reason is not None:
            raise _Warning(f"{describe(url)}: {reason}; magray runs without this tier")
        return f"{describe(url)} answers"

    results.append(_check("store read/write", store_rw))
    if "m" in mem_box:
        results.append(_check("index/store consistency", consistency))
    results.append(_check("embedder smoke test", embedder))
    results.append(_check("disk space", disk))
    results.append(_check("memory", memory_check))
    if app.settings.values.get("cache_redis_url"):
        results.append(_check("redis cache (L3)", redis_cache))
    healthy = all(r["ok"] or r.get("warn") for r in results)
    if as_json:
        emit_json({"healthy": healthy, "checks": results})
    else:
        for r in results:
            mark = "ok  " if r["ok"] else "warn" if r.get("warn") else "FAIL"
            click.echo(f"{mark} {r['check']:26} {r['ms']:8.2f} ms  {r['detail']}")
    if not healthy:
        raise SystemExit(1)


# -- performance ----------------------------------------------------------------------------


@click.command()
@click.option(
    "--run", "run_bench", is_flag=True, help="Also run a quick self-benchmark on a temporary store."
)
@json_option
@click.pass_obj
def performance(ctx: Ctx, run_bench: bool, as_json: bool) -> None:
    """Latency percentiles per operation from the persisted metrics."""
    app = ctx.app()
    data: dict[str, Any] = {}
    history = app.metrics_history().summary()
    if history:
        data["history"] = history
    if run_bench:
        data["self_benchmark"] = _self_benchmark(ctx)
    if as_json:
        emit_json(data)
        return
    hist = data.get("history") or {}
    if not hist:
        click.echo("no recorded operations yet")
    for name, h in sorted(hist.items()):
        if not isinstance(h, dict) or "p50" not in h:
            continue
        click.echo(
            f"{name:16} n={h.get('count', 0):<8} p50 {fmt(h.get('p50'))}  "
            f"p95 {fmt(h.get('p95'))}  p99 {fmt(h.get('p99'))}"
        )
    if run_bench:
        b = data["self_benchmark"]
        click.echo(
            f"self-benchmark: add {b['add_per_s']:.0f}/s, search p50 {b['search_p50_ms']:.3f} ms "
            f"over {b['records']} records ({b['embedder']})"
        )


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f} ms"


def _self_benchmark(ctx: Ctx) -> dict[str, Any]:
    import statistics

    import magray

    texts = [
        f"self benchmark memory {i} about topic {i % 17} and item {i * 7}" for i in range(2000)
    ]
    with (
        tempfile.TemporaryDirectory(prefix="magray-perf-") as tmp,
        magray.open(Path(tmp) / "store", embedder="hash") as mem,
    ):
        t0 = time.perf_counter()
        for i in range(0, len(texts), 500):
            mem.add_many(texts[i : i + 500])
        took = time.perf_counter() - t0
        lat = []
        for i in range(200):
            t1 = time.perf_counter()
            mem.search(f"topic {i % 17} item", k=10)
            lat.append(time.perf_counter() - t1)
        return {
            "records": len(texts),
            "embedder": "hash",
            "add_per_s": len(texts) / took,
            "search_p50_ms": statistics.median(lat) * 1e3,
            "search_p95_ms": sorted(lat)[int(0.95 * len(lat))] * 1e3,
        }


# -- warmup ---------------------------------------------------------------------------------


@click.command()
@json_option
@click.pass_obj
def warmup(ctx: Ctx, as_json: bool) -> None:
    """Load the model, run a warm-up batch and open the indexes."""
    app = ctx.app()
    t0 = time.perf_counter()
    e = app.embedder()
    t_model = time.perf_counter() - t0
    if e is not None:
        e.embed(["warm-up batch", "so the first request is fast"] * 8)
    t_embed = time.perf_counter() - t0 - t_model
    mem = app.memory(read_only=True)
    mem.wait_ready()
    total = time.perf_counter() - t0
    data = {
        "model_s": round(t_model, 3),
        "warmup_batch_s": round(t_embed, 3),
        "total_s": round(total, 3),
        "records": mem.stats()["records"],
        "embedder": None if e is None else e.name,
    }
    emit_json(data) if as_json else click.echo(
        f"ready in {total:.2f} s (model {t_model:.2f} s, warm-up batch {t_embed:.2f} s, "
        f"{data['records']} records indexed)"
    )


# -- config ---------------------------------------------------------------------------------


@click.group()
def config() -> None:
    """Show, locate and change settings."""


@config.command()
@json_option
@click.pass_obj
def show(ctx: Ctx, as_json: bool) -> None:
    """The effective settings and where each came from."""
    s = ctx.settings
    rows = s.rows()
    if as_json:
        emit_json(
            {
                "file": str(s.file),
                "settings": {k: {"value": v, "source": src} for k, v, src in rows},
            }
        )
        return
    for key, value, source in rows:
        click.echo(f"{key:26} {value!s:28} {source}")


@config.command()
@json_option
@click.pass_obj
def path(ctx: Ctx, as_json: bool) -> None:
    """Where the settings file is."""
    f = ctx.settings.file
    emit_json({"file": str(f), "exists": f.exists()}) if as_json else click.echo(str(f))


@config.command(name="set")
@click.argument("key")
@click.argument("value")
@json_option
@click.pass_obj
def set_(ctx: Ctx, key: str, value: str, as_json: bool) -> None:
    """Write KEY = VALUE into the settings file (validated)."""
    from magray.config import set_config_value

    target, typed = set_config_value(key, value, ctx.config_file)
    if as_json:
        emit_json({"key": key, "value": typed, "file": str(target)})
    else:
        click.echo(f"{key} = {value} ({target})")


# -- metrics --------------------------------------------------------------------------------


@click.command()
@click.option("--prometheus", is_flag=True, help="The Prometheus text exposition format.")
@json_option
@click.pass_obj
def metrics(ctx: Ctx, prometheus: bool, as_json: bool) -> None:
    """Counters and latency histograms (persisted across invocations)."""
    m = ctx.app().metrics_history()
    if prometheus:
        sys.stdout.write(m.render_prometheus())
        return
    summary = m.summary()
    if as_json:
        emit_json(summary)
        return
    for name, value in sorted(summary.items()):
        click.echo(f"{name:24} {value}")


# -- gpu ------------------------------------------------------------------------------------


@click.group()
def gpu() -> None:
    """GPU inference: what ONNX Runtime sees, and how fast each provider is."""


@gpu.command()
@json_option
@click.pass_obj
def info(ctx: Ctx, as_json: bool) -> None:
    """ONNX Runtime version, providers, devices, the active provider and the breaker."""
    import onnxruntime as ort

    data: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "device": ort.get_device(),
    }
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5)
        data["gpus"] = [line for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        data["gpus"] = []
    e = ctx.app().embedder()
    if e is not None and hasattr(e, "stats"):
        st = e.stats()
        data.update(
            active_provider=st.get("provider"),
            gpu_error=st.get("gpu_error"),
            breaker=st.get("breaker"),
        )
    else:
        data["active_provider"] = "none (hash embedder)" if e is not None else "none"
    emit_fields(data, as_json)


@gpu.command()
@click.option(
    "--batch-size",
    "batch_sizes",
    type=click.IntRange(1, 4096),
    multiple=True,
    help="Batch size (repeatable; default 1, 8, 32, 128).",
)
@click.option("--compare", is_flag=True, help="Also check GPU output against the CPU.")
@json_option
@click.pass_obj
def benchmark(ctx: Ctx, batch_sizes: tuple[int, ...], compare: bool, as_json: bool) -> None:
    """texts/s per available provider (CPU only where there is no GPU), per batch size."""
    import numpy as np

    from magray.embed.onnx import OnnxEmbedder

    e = ctx.app().embedder()
    if not isinstance(e, OnnxEmbedder):
        raise click.ClickException(
            "the active embedder is not an ONNX model; "
            "install one with `magray models pull all-MiniLM-L6-v2`"
        )
    texts = [
        f"benchmark sentence number {i} about memory engines and embeddings" for i in range(256)
    ]
    devices = ["cpu"] + (["gpu"] if e.gpu_provider else [])
    rows = []
    outputs = {}
    for device in devices:
        emb = OnnxEmbedder(e.model_dir, device=device)
        for bs in batch_sizes or (1, 8, 32, 128):
            emb.batch_size = bs
            emb.embed(texts[:bs])
            t0 = time.perf_counter()
            out = emb.embed(texts)
            rate = len(texts) / (time.perf_counter() - t0)
            outputs[device] = out
            rows.append({"provider": emb.provider, "batch_size": bs, "texts_per_s": round(rate, 1)})
    data: dict[str, Any] = {"rows": rows}
    if compare and "gpu" in outputs:
        data["max_abs_diff_gpu_vs_cpu"] = float(np.abs(outputs["gpu"] - outputs["cpu"]).max())
    if as_json:
        emit_json(data)
        return
    for r in rows:
        click.echo(
            f"{r['provider']:24} batch {r['batch_size']:5}  {r['texts_per_s']:10.1f} texts/s"
        )
    if "max_abs_diff_gpu_vs_cpu" in data:
        click.echo(f"max |gpu - cpu| = {data['max_abs_diff_gpu_vs_cpu']:.2e}")
    elif compare:
        click.echo("no GPU provider could start here: nothing to compare")
