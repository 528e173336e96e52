"""Adapters that put contextd behind the retriever and memory interfaces of LLM frameworks.

Each works over an `Engine` or a `Client` alike, and each framework is an optional extra,
imported only when its adapter module is:

- `contextd.integrations.langchain` (`pip install 'contextd[langchain]'`): `ContextdRetriever`,
  `ContextdChatMessageHistory`, `to_langchain_messages`.
- `contextd.integrations.llamaindex` (`pip install 'contextd[llamaindex]'`): `ContextdRetriever`,
  `ContextdChatMemory`.

    >>> from contextd.integrations.langchain import ContextdRetriever  # doctest: +SKIP
    >>> ContextdRetriever(engine, top_k=3).invoke("vitamin d")[0].metadata["id"]  # doctest: +SKIP
"""
