"""API keys per tenant: roles, the namespaces each key may use, and where keys are kept.

    >>> store = KeyStore(Path("indexes"))  # doctest: +SKIP
    >>> created = store.create("write", ["acme-*"])  # doctest: +SKIP
"""

from contextd.auth.keys import ApiKey, CreatedKey, KeyRing, KeySpec, KeyStore, Role, hash_secret

__all__ = ["ApiKey", "CreatedKey", "KeyRing", "KeySpec", "KeyStore", "Role", "hash_secret"]
