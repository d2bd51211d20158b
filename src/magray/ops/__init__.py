"""Operations support: metrics, structured logging and memory-pressure management.

* :mod:`magray.ops.metrics` counts operations and records latency histograms, renders them in
  the Prometheus text format, and turns them into a JSON-able snapshot that can be stored and
  merged across process invocations.
* :mod:`magray.ops.logging` configures the ``magray`` logger for human-readable or JSON-lines
  output and logs operations with their duration and the ids they touched, never the texts.
* :mod:`magray.ops.resources` watches the process's resident memory and the memory available
  on the system, shrinks registered knobs (cache sizes, batch sizes) under pressure and gives
  them back once the pressure is gone.
* :mod:`magray.ops.tracing` opens OpenTelemetry spans around embedding, index search and
  store access once enabled (the server does, with ``--otlp``; the ``otel`` extra).
"""
