"""LangChain's own standard test suites judge MagrayVectorStore and MagrayEmbeddings,
over a local store and over a magray server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langchain_tests")

from langchain_core.vectorstores import VectorStore  # noqa: E402
from langchain_tests.integration_tests import (  # noqa: E402
    EmbeddingsIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests  # noqa: E402

import magray  # noqa: E402
from magray.integrations.langchain import MagrayEmbeddings, MagrayVectorStore  # noqa: E402

from ..server.conftest import Server, start_server  # noqa: E402


class TestMagrayVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path: Path) -> Iterator[VectorStore]:  # type: ignore[override]
        mem = magray.open(tmp_path / "store", embedder=None)
        try:
            yield MagrayVectorStore(mem, self.get_embeddings())
        finally:
            mem.close()


@pytest.fixture(scope="module")
def lc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("lc-root"))
    yield s
    assert s.stop() == 0


class TestMagrayVectorStoreOverTheServer(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(
        self, lc_server: Server, request: pytest.FixtureRequest
    ) -> Iterator[VectorStore]:  # type: ignore[override]
        import re

        name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60].strip("-")
        mem = magray.connect(lc_server.url, namespace=name)
        try:
            # The server embeds (each namespace takes the server's model), so the
            # store uses it rather than the suite's 6-d fake embeddings.
            yield MagrayVectorStore(mem)
        finally:
            mem.close()


class _HashEmbeddings:
    """What both embeddings suites construct: MagrayEmbeddings(model="hash")."""

    @property
    def embeddings_class(self) -> type[MagrayEmbeddings]:
        return MagrayEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, str]:
        return {"model": "hash"}


class TestMagrayEmbeddingsUnit(_HashEmbeddings, EmbeddingsUnitTests):
    pass


class TestMagrayEmbeddingsIntegration(_HashEmbeddings, EmbeddingsIntegrationTests):
    pass


def test_filters_scores_mmr_and_retriever(tmp_path: Path) -> None:
    from langchain_core.documents import Document

    store = MagrayVectorStore.from_texts(
        ["the deploy key lives in the vault", "the cat sleeps", "deploy on fridays", "tea"],
        MagrayEmbeddings("hash"),
        metadatas=[{"team": "ops"}, {"team": "home"}, {"team": "ops"}, {"team": "home"}],
        ids=["a", "b", "c", "d"],
        path=tmp_path / "store",
    )
    try:
        hits = store.similarity_search_with_score("deploy key", k=4)
        assert hits[0][0].id == "a" and -1.0 <= hits[-1][1] <= hits[0][1] <= 1.0
        rel = store.similarity_search_with_relevance_scores("deploy key", k=4)
        assert all(0.0 <= s <= 1.0 for _, s in rel)
        home = store.similarity_search("deploy", k=4, filter={"team": "home"})
        assert {d.id for d in home} == {"b", "d"}
        tagged = store.similarity_search("deploy", k=4, filter={"contains": "FRIDAY"})
        assert [d.id for d in tagged] == ["c"]
        mmr = store.max_marginal_relevance_search("deploy", k=2, fetch_k=4)
        assert len(mmr) == 2 and mmr[0].id in {"a", "c"}
        retriever = store.as_retriever(search_kwargs={"k": 1})
        assert retriever.invoke("where is the deploy key") == [
            Document(id="a", page_content="the deploy key lives in the vault",
                     metadata={"team": "ops"})
        ]  # fmt: skip
    finally:
        store.memory.close()
