"""Typed decode errors. Each carries a short `reason` used as a counter label.

Errors are raised inside the decoders and caught at exactly one boundary per datagram
(`Decoder.decode`), where the datagram is counted by reason and skipped whole.
"""

from __future__ import annotations


class DecodeError(Exception):
    reason = "malformed"

    def __init__(self, detail: str = "", *, version: int | None = None, domain: int | None = None,
                 template_id: int | None = None, reason: str | None = None):
        super().__init__(detail or self.reason)
        if reason is not None:
            self.reason = reason
        self.version = version
        self.domain = domain
        self.template_id = template_id

    def __str__(self) -> str:
        parts = [self.reason]
        if self.version is not None:
            parts.append(f"v{self.version}")
        if self.domain is not None:
            parts.append(f"domain {self.domain}")
        if self.template_id is not None:
            parts.append(f"template {self.template_id}")
        detail = self.args[0] if self.args else ""
        return " ".join(parts) + (f": {detail}" if detail and detail != self.reason else "")


class ShortHeader(DecodeError):
    reason = "short-header"


class BadVersion(DecodeError):
    reason = "bad-version"


class BadLength(DecodeError):
    """A message or set length that is zero, too short, or runs past the datagram."""
    reason = "bad-length"


class BadTemplate(DecodeError):
    """A template or options template record that cannot be valid."""
    reason = "bad-template"


class RecordOverrun(DecodeError):
    """A variable-length field or a record that runs past its set."""
    reason = "record-overrun"
