"""Typed decode errors. Each carries a short `reason` used as a counter label.

Errors are raised inside the decoders and caught at exactly one boundary per datagram
(`Decoder.decode`), where the datagram is counted by reason and skipped whole; `Faults` logs
one line per reason per minute of what is counted there.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


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


class Shed(DecodeError):
    """Template sets of a session that has sent no flow yet, past the batch's budget
    (`Limits.max_new_template_bytes_per_batch`): dropped so that a flood of new sessions cannot
    starve established exporters. The exporter re-sends its templates; nothing is applied."""
    reason = "template-shed"


class Faults:
    """One log line per reason per `every` seconds for what the decoder counts by reason:
    malformed datagrams (INFO, the sender's fault) and internal errors (ERROR, a decoder bug;
    the traceback at DEBUG). Counting is the caller's, always; this only rate-limits the log."""

    def __init__(self, clock, every: float = 60.0):
        self.clock = clock
        self.every = every
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def note(self, reason: str, exporter: str, exc: BaseException | None = None, internal: bool = False) -> None:
        now = self.clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.every:
            self._since[reason] = self._since.get(reason, 0) + 1
            return
        self._last[reason] = now
        more = self._since.pop(reason, 0)
        also = f" (and {more} more since the last line)" if more else ""
        if internal:
            where = ""
            tb = exc.__traceback__ if exc is not None else None
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None:
                where = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
            log.error("internal decoder error from %s: %s: %s%s%s; counted in "
                      "imflow_decode_errors_total{reason=\"%s\"}, logged once a minute",
                      exporter, type(exc).__name__, exc, where, also, reason)
            log.debug("traceback of that internal decoder error", exc_info=exc)
        else:
            log.info("decode error %s from %s: %s%s; counted in imflow_decode_errors_total, logged once "
                     "a minute", reason, exporter, exc, also)
