"""magray's wire API, version 1: the code protoc generates from
``proto/magray/v1/memory.proto`` (never edited by hand; ``python proto/generate.py``
regenerates it, and a test checks that it is current)."""
