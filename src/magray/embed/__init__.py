"""Embedders: turn text into unit float32 vectors."""

from magray.embed.base import Embedder
from magray.embed.hashing import HashEmbedder

__all__ = ["Embedder", "HashEmbedder"]
