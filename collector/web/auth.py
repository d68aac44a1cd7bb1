"""Optional HTTP basic authentication (RFC 7617) for the web page: one user, whose password is
kept in the config only as an scrypt hash (`scrypt$LOG2N$R$P$SALT$HASH`, base64), made by
`imflow web --hash-password`. Basic authentication sends the password with every request:
over anything but loopback, put the page behind a TLS reverse proxy (docs/web.md).

A correct password costs one scrypt (~50 ms); the credentials of the last few successful
logins are remembered (as SHA-256 digests) so a page's requests do not each pay for it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

LOG2N, R, P = 14, 8, 1  # scrypt cost: 16 MiB of memory, ~50 ms
_FORMAT = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
REMEMBERED = 16


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1 << LOG2N, r=R, p=P, dklen=32)
    return f"scrypt${LOG2N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify(password: str, stored: str) -> bool:
    m = _FORMAT.fullmatch(stored)
    if m is None:
        return False
    log2n, r, p = (int(x) for x in m.group(1, 2, 3))
    salt, want = base64.b64decode(m.group(4)), base64.b64decode(m.group(5))
    got = hashlib.scrypt(password.encode(), salt=salt, n=1 << log2n, r=r, p=p, dklen=len(want),
                         maxmem=256 << 20)
    return hmac.compare_digest(got, want)


class BasicAuth:
    def __init__(self, user: str, password_hash: str):
        self.user, self.password_hash = user, password_hash
        self._good: list[bytes] = []  # digests of header values that passed, newest last

    def check(self, header: str | None) -> bool:
        """Whether an Authorization header carries the configured user and password."""
        if not header or header[:6].lower() != "basic " or len(header) > 1024:
            return False
        key = hashlib.sha256(header.encode("utf-8", "replace")).digest()
        if any(hmac.compare_digest(key, k) for k in self._good):
            return True
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok = hmac.compare_digest(user.encode(), self.user.encode()) & verify(password, self.password_hash)
        if ok:
            self._good = [*self._good[-(REMEMBERED - 1):], key]
        return ok
