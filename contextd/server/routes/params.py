"""Path and query parameters shared by the routes, with the contract's patterns."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from contextd.models import ID_PATTERN, NAMESPACE_PATTERN, SESSION_PATTERN

NamespacePath = Annotated[str, Path(pattern=NAMESPACE_PATTERN, description="Namespace.")]
DocumentPath = Annotated[str, Path(pattern=ID_PATTERN, description="Document id.")]
SessionPath = Annotated[str, Path(pattern=SESSION_PATTERN, description="Session id.")]
NamespaceQuery = Annotated[str, Query(pattern=NAMESPACE_PATTERN,
                                      description="Namespace holding the session.")]
