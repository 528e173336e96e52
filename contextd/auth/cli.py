"""`contextd keys create|list|revoke`: manage the API keys in `<data_dir>/keys.sqlite3`.

    $ contextd keys create --role write --namespace 'acme-*' --data-dir indexes
    $ contextd keys list --data-dir indexes
    $ contextd keys revoke 3f9c0a1b2d4e --data-dir indexes
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from contextd.auth.keys import KeyStore
from contextd.errors import NotFound


def cmd_keys_create(args: argparse.Namespace) -> int:
    store = KeyStore(args.data_dir)
    try:
        made = store.create(args.role, args.namespace, args.max_namespaces)
    finally:
        store.close()
    key = made.key
    print(json.dumps({"id": key.id, "role": key.role, "namespaces": key.namespaces,
                      "max_namespaces": key.max_namespaces, "secret": made.secret}))
    print("The secret is shown only this once; send it as 'Authorization: Bearer <secret>'.",
          file=sys.stderr)
    return 0


def _when(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def cmd_keys_list(args: argparse.Namespace) -> int:
    store = KeyStore(args.data_dir)
    try:
        keys: list[dict[str, Any]] = store.list()
    finally:
        store.close()
    for key in keys:
        key["created"], key["revoked"] = _when(key["created"]), _when(key["revoked"])
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    for key in keys:
        state = f"revoked {key['revoked']}" if key["revoked"] else "live"
        limit = f", at most {key['max_namespaces']} namespaces" if key["max_namespaces"] else ""
        print(f"{key['id']}  {key['role']:<5}  {','.join(key['namespaces'])}{limit}  "
              f"created {key['created']}  {state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    store = KeyStore(args.data_dir)
    try:
        if not store.revoke(args.id):
            raise NotFound(f"no live key {args.id!r}: `contextd keys list` shows the ids")
    finally:
        store.close()
    print(f"revoked {args.id}")
    return 0


def add_keys_commands(subparsers: Any) -> None:
    """Add `keys create|list|revoke` to the `contextd` command's subparsers.

        >>> add_keys_commands(parser.add_subparsers())  # doctest: +SKIP
    """
    keys = subparsers.add_parser("keys", help="manage API keys (create, list, revoke)")
    actions = keys.add_subparsers(dest="keys_command", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default="indexes", help="data directory (default: indexes)")

    p = actions.add_parser("create", help="create a key and print its secret once")
    p.add_argument("--role", choices=["read", "write", "admin"], required=True)
    p.add_argument("--namespace", action="append", required=True,
                   help="namespace the key may use, or a prefix such as 'acme-*' ('*' for "
                   "all); repeat for more")
    p.add_argument("--max-namespaces", type=int, default=None,
                   help="most namespaces the key may create (default: no limit)")
    data_dir(p)
    p.set_defaults(func=cmd_keys_create)

    p = actions.add_parser("list", help="list keys (never their secrets)")
    p.add_argument("--json", action="store_true")
    data_dir(p)
    p.set_defaults(func=cmd_keys_list)

    p = actions.add_parser("revoke", help="revoke a key at once")
    p.add_argument("id", help="key id, as `keys list` shows it")
    data_dir(p)
    p.set_defaults(func=cmd_keys_revoke)
