"""Bearer tokens: which namespaces a token may use, and whether it may write.

A tokens file is TOML, one ``[[token]]`` table per token::

    [[token]]
    name = "chat-frontend"        # what logs and errors show; the secret never is
    sha256 = "9f86d08..."         # hex SHA-256 of the secret (or: token = "the secret")
    namespaces = ["team-a"]       # "*" grants every namespace
    rights = ["read", "write"]    # read: search, get, recent, embed, stats, export

Requests carry ``authorization: Bearer <secret>``. Secrets are compared as SHA-256
digests with :func:`hmac.compare_digest`, so the file may hold only digests
(``python -c "import hashlib; print(hashlib.sha256(b'SECRET').hexdigest())"``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from magray.errors import AuthError, InvalidInputError, PermissionDeniedError

RIGHTS = ("read", "write")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Grant:
    name: str
    digest: bytes  # SHA-256 of the secret
    namespaces: frozenset[str]  # "*" for all
    write: bool


class Tokens:
    """The grants of a tokens file; :meth:`check` answers one request."""

    def __init__(self, grants: Iterable[Grant]) -> None:
        self._grants = list(grants)

    @classmethod
    def load(cls, path: str | Path) -> Tokens:
        """Read and check a tokens file. Raises InvalidInputError naming the file, the
        entry and the problem (the server then stops at start with that one line)."""
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib

        p = Path(path).expanduser()
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInputError(f"tokens file {p}: cannot read it ({exc.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"tokens file {p} is not valid TOML: {exc}") from None
        entries = data.get("token")
        unknown = set(data) - {"token"}
        if unknown or not isinstance(entries, list) or not entries:
            raise InvalidInputError(
                f"tokens file {p} must hold one or more [[token]] tables and nothing else"
            )
        grants = []
        seen: set[bytes] = set()
        for i, e in enumerate(entries, 1):
            grants.append(_grant(p, i, e))
            if grants[-1].digest in seen:
                raise InvalidInputError(f"tokens file {p}, token {i}: the same secret twice")
            seen.add(grants[-1].digest)
        return cls(grants)

    def check(self, authorization: str | None, namespace: str, write: bool) -> str:
        """The name of the grant that allows this request. Raises AuthError (no or an
        unknown token) or PermissionDeniedError (not this namespace, or read-only)."""
        if not authorization:
            raise AuthError("this server needs a token: send 'authorization: Bearer <token>'")
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError("the authorization header must be 'Bearer <token>'")
        digest = hashlib.sha256(secret.strip().encode()).digest()
        grant = None
        for g in self._grants:  # every grant is compared, in constant time each
            if hmac.compare_digest(g.digest, digest):
                grant = g
        if grant is None:
            raise AuthError("the token is not valid for this server")
        if "*" not in grant.namespaces and namespace not in grant.namespaces:
            raise PermissionDeniedError(
                f"token {grant.name!r} is not granted namespace {namespace!r}"
            )
        if write and not grant.write:
            raise PermissionDeniedError(
                f"token {grant.name!r} may only read namespace {namespace!r}"
            )
        return grant.name


def _grant(path: Path, i: int, e: object) -> Grant:
    where = f"tokens file {path}, token {i}"
    if not isinstance(e, dict):
        raise InvalidInputError(f"{where}: must be a table")
    unknown = set(e) - {"name", "sha256", "token", "namespaces", "rights"}
    if unknown:
        raise InvalidInputError(f"{where}: unknown key(s) {sorted(unknown)}")
    name = e.get("name", f"token-{i}")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}: name must be a non-empty string")
    if ("sha256" in e) == ("token" in e):
        raise InvalidInputError(f"{where}: give exactly one of sha256 and token")
    if "sha256" in e:
        hexed = e["sha256"]
        if not isinstance(hexed, str) or not _HEX64.fullmatch(hexed.lower()):
            raise InvalidInputError(f"{where}: sha256 must be 64 hexadecimal digits")
        digest = bytes.fromhex(hexed)
    else:
        secret = e["token"]
        if not isinstance(secret, str) or len(secret.strip()) < 16:
            raise InvalidInputError(f"{where}: token must be a string of 16 or more characters")
        digest = hashlib.sha256(secret.strip().encode()).digest()
    namespaces = e.get("namespaces")
    if (
        not isinstance(namespaces, list)
        or not namespaces
        or not all(isinstance(n, str) and n for n in namespaces)
    ):
        raise InvalidInputError(f'{where}: namespaces must be a list of names (or ["*"])')
    rights = e.get("rights", ["read"])
    if not isinstance(rights, list) or not rights or any(r not in RIGHTS for r in rights):
        raise InvalidInputError(f"{where}: rights must be a list of {', '.join(RIGHTS)}")
    return Grant(name, digest, frozenset(namespaces), "write" in rights)
