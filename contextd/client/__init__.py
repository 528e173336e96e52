"""HTTP clients with the `Engine`'s method names, signatures and return models.

    >>> from contextd import Client
    >>> with Client("http://127.0.0.1:8000") as client:  # doctest: +SKIP
    ...     client.assemble(query="What does contextd do?", max_tokens=1000).usage.total
"""

from contextd.client.aio import AsyncClient
from contextd.client.base import BaseClient
from contextd.client.errors import ProblemError, error_from_response
from contextd.client.sync import Client

__all__ = ["AsyncClient", "BaseClient", "Client", "ProblemError", "error_from_response"]
