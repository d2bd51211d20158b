"""LangChain on magray: a ``VectorStore`` and an ``Embeddings`` (``magray[langchain]``).

``MagrayVectorStore`` keeps LangChain documents in a magray store, local
(``magray.open``) or on a server (``magray.connect``): the page content is the record's
text, the metadata its metadata, and the LangChain id a tag ``lc:<id>`` (so that
``get_by_ids``, ``delete`` and re-adding an id find the record through one selective
filter). Adding an id that exists replaces that document. Vectors come from the
``embedding`` given, or from the store's own embedder (and its caches) without one.

Scores: ``similarity_search_with_score`` returns the cosine similarity (higher is
better, in [-1, 1]); ``similarity_search_with_relevance_scores`` maps it to [0, 1] as
``(1 + cosine) / 2``.

Filters (``filter=`` of the search methods): magray's fields by name (``layers``,
``tags``, ``project``, ``session``, ``kind``, ``since``, ``until``, ``contains``) are
applied inside the index; any other key must equal the document's metadata value, and
is checked on fetched candidates, fetching wider until k pass or the store is done.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

_TAG = "lc:"
_FIELDS = {"layers", "tags", "project", "session", "kind", "since", "until", "contains"}


class MagrayEmbeddings(Embeddings):
    """LangChain embeddings from magray's embedders: ``model`` is what ``magray.open``
    takes as ``embedder`` ("auto", "hash", a model name or directory). With
    ``memory=`` (an open store) it embeds through that store's embedder and caches.
    Vectors are unit float32 rows returned as lists of floats."""

    def __init__(self, model: str = "auto", *, memory: Any = None) -> None:
        self.model = model
        self._memory = memory
        self._embedder: Any = None

    def _embed(self, texts: list[str], query: bool) -> list[list[float]]:
        if not texts:
            return []
        if self._memory is not None:
            return [list(map(float, v)) for v in self._memory.embed(texts, query=query)]
        if self._embedder is None:
            from magray.embed.select import load_embedder

            self._embedder = load_embedder(self.model)
        e = self._embedder
        fn = getattr(e, "embed_query", None) if query else None
        vecs = np.asarray((fn or e.embed)(texts), dtype=np.float32)
        return [list(map(float, v)) for v in vecs]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(list(texts), query=False)

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], query=True)[0]


class MagrayVectorStore(VectorStore):
    """A LangChain VectorStore over a magray memory (see the module doc).

    Args:
        memory: an open ``magray.Memory`` or ``magray.connect(...)`` client.
        embedding: LangChain embeddings for documents and queries; None uses the store's
            own embedder.
        layer: the layer new documents go to ("interact", "insights" or "assets").
    """

    def __init__(
        self, memory: Any, embedding: Embeddings | None = None, *, layer: str = "assets"
    ) -> None:
        self.memory = memory
        self._embedding = embedding
        self.layer = layer
        self._known_dim = 0

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding or MagrayEmbeddings(memory=self.memory)

    # -- writing ----------------------------------------------------------------------

    def _dim(self) -> int:
        """The store's vector dimension; 0 while it holds none (a server namespace
        with no store yet reads as empty). Asked of the store (a stats call) only until
        it has one: a store's dimension does not change under an open handle."""
        if self._known_dim:
            return self._known_dim
        from magray.errors import NotFoundError

        try:
            self._known_dim = int(self.memory.stats().get("dim") or 0)
        except NotFoundError:
            return 0
        return self._known_dim

    def _records_of(self, lc_id: str) -> list[Any]:
        """The magray hits whose LangChain id is lc_id (normally at most one)."""
        dim = self._dim()
        if not dim:
            return []
        probe = np.zeros(dim, np.float32)
        probe[0] = 1.0
        hits: list[Any] = self.memory.search(vector=probe, k=16, tags=[_TAG + lc_id], mode="vector")
        return hits

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Add (or, for an id already stored, replace) texts; returns their ids."""
        texts = list(texts)
        metas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        given = list(ids) if ids is not None else [None] * len(texts)
        if len(metas) != len(texts) or len(given) != len(texts):
            raise ValueError(
                f"{len(texts)} texts, {len(metas)} metadatas and {len(given)} ids: give "
                "one of each per text"
            )
        out = [i if i else str(uuid.uuid4()) for i in given]
        vectors = (
            np.asarray(self._embedding.embed_documents(texts), np.float32)
            if self._embedding is not None and texts
            else None
        )
        for j, (text, meta, lc_id) in enumerate(zip(texts, metas, out)):
            old = [h.id for h in self._records_of(lc_id)]
            if old:
                self.memory.delete(old)
            self.memory.add_many(
                [text],
                vectors=None if vectors is None else vectors[j : j + 1],
                tags=[_TAG + lc_id],
                metadata=dict(meta),
                layer=self.layer,
                kind="langchain",
                on_duplicate="store",
            )
        return out

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by LangChain id; ids that are not stored are ignored."""
        if not ids:
            return None
        found = [h.id for lc_id in ids for h in self._records_of(lc_id)]
        if found:
            self.memory.delete(list(dict.fromkeys(found)))
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents of ids, in that order; missing ids are left out."""
        docs = []
        for lc_id in ids:
            for h in self._records_of(lc_id):
                docs.append(self._document(h.record))
        return docs

    # -- searching --------------------------------------------------------------------

    @staticmethod
    def _document(record: Any) -> Document:
        lc_id = next((t[len(_TAG) :] for t in record.tags if t.startswith(_TAG)), record.id)
        return Document(page_content=record.text, metadata=dict(record.metadata), id=lc_id)

    def _search(
        self, query: str | None, vector: Any, k: int, filter: dict[str, Any] | None
    ) -> list[tuple[Document, float]]:
        if not self._dim():
            return []
        flt = dict(filter or {})
        fields = {key: flt.pop(key) for key in list(flt) if key in _FIELDS}
        fetch = k if not flt else max(4 * k, 20)
        while True:
            if vector is not None:
                hits = self.memory.search(vector=vector, k=fetch, mode="vector", **fields)
            else:
                hits = self.memory.search(query, k=fetch, mode="vector", **fields)
            out = [
                (self._document(h.record), float(h.score))
                for h in hits
                if all(h.record.metadata.get(key) == v for key, v in flt.items())
            ]
            if len(out) >= k or len(hits) < fetch:
                return out[:k]
            fetch *= 4

    def _query(self, query: str) -> Any:
        if self._embedding is None:
            return None
        return np.asarray(self._embedding.embed_query(query), np.float32)

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(document, cosine similarity) best first."""
        vector = self._query(query)
        return self._search(None if vector is not None else query, vector, k, filter)

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = np.asarray(embedding, np.float32)
        return [d for d, _ in self._search(None, vector, k, filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda cosine: (1.0 + cosine) / 2.0

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Maximal marginal relevance (Carbonell and Goldstein, SIGIR 1998) over the
        fetch_k nearest documents."""
        emb = self.embeddings
        return self.max_marginal_relevance_search_by_vector(
            emb.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        from langchain_core.vectorstores.utils import maximal_marginal_relevance

        query = np.asarray(embedding, np.float32)
        found = self._search(None, query, fetch_k, filter)
        if not found:
            return []
        docs = [d for d, _ in found]
        vectors = self.embeddings.embed_documents([d.page_content for d in docs])
        picked = maximal_marginal_relevance(query, vectors, lambda_mult=lambda_mult, k=k)
        return [docs[i] for i in picked]

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        memory: Any = None,
        path: Any = None,
        **kwargs: Any,
    ) -> MagrayVectorStore:
        """A store over memory (or ``magray.open(path, embedder=None)``) holding texts."""
        if memory is None:
            import magray

            memory = magray.open(path, embedder=None)
        store = cls(memory, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
