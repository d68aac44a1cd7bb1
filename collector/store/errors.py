"""StoreError: every storage failure, with a short `reason` the daemon counts and logs by.

SQLite result codes (https://sqlite.org/rescode.html) map to reasons; the primary code is the
low byte of the extended code Python reports. The message is one line and names the database.
"""

from __future__ import annotations

import os
import sqlite3

# primary result code -> (reason, what happened)
_CODES = {
    3: ("permission", "permission denied"),
    5: ("locked", "database is locked by another connection"),
    6: ("locked", "a table is locked by another statement"),
    8: ("readonly", "database is read-only"),
    10: ("io", "disk I/O error"),
    11: ("corrupt", "database file is corrupt"),
    13: ("full", "database or disk is full"),
    14: ("cantopen", "cannot open the database file"),
    26: ("corrupt", "file is not a database"),
}


class StoreError(Exception):
    """A storage failure. `reason`: locked, readonly, full, io, corrupt, cantopen, permission,
    missing, schema or error. `path`: the database it concerns."""

    def __init__(self, message: str, *, reason: str = "error", path: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.path = path


def from_sqlite(exc: sqlite3.Error, path: str, action: str, busy_timeout: float | None = None) -> StoreError:
    """Turn a sqlite3 exception raised while doing `action` ("write", "open" …) into a StoreError."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    reason, what = _CODES.get(code & 0xFF if code is not None else -1, ("error", str(exc)))
    if reason == "cantopen":
        reason, what = _diagnose_open(path)
    if reason == "locked" and busy_timeout is not None:
        what += f" (gave up after {busy_timeout:g} s)"
    return StoreError(f"cannot {action} {path}: {what} ({name}: {exc})", reason=reason, path=path)


def _diagnose_open(path: str) -> tuple[str, str]:
    """SQLite says only 'unable to open database file'; find out why."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return "cantopen", f"directory {directory} does not exist"
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "readonly", f"{directory} is on a read-only file system"
    except OSError:
        pass
    if not os.access(directory, os.W_OK):
        return "readonly", f"directory {directory} is not writable (SQLite needs it for the WAL files)"
    return "cantopen", "cannot open the database file"
