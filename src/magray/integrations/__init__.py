"""Integrations with agent frameworks and protocols; each module imports its framework
lazily and needs its extra (see the README's Integrations section)."""
