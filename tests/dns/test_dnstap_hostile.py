"""The dnstap listener against hostile or broken senders (docs/dns.md, ceilings): frames are
built with the fstrm codec, dnstap-pb and dnspython; whatever is sent, the listener counts and
goes on, never raises, and keeps only answers for the catalogue's names."""

from __future__ import annotations

import asyncio
import struct

import dns.message
import dns.rrset
import fstrm
import pytest
from dnstap_pb import dnstap_pb2

from collector.classify.catalogue import load_catalogue
from collector.dns.dnstap import CONTENT_TYPE, MAX_CONNECTIONS, MAX_FRAME, DnstapListener
from collector.dns.table import LearnedAddresses

CAT = load_catalogue()
CODEC = fstrm.FstrmCodec()


def answer(name: str, address: str, ttl: int = 300, rtype: str = "A") -> bytes:
    q = dns.message.make_query(name, rtype)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(name, ttl, "IN", rtype, address))
    return r.to_wire()


def frame(wire: bytes, mtype=dnstap_pb2.Message.CLIENT_RESPONSE, client=b"\x0a\x00\x00\x07") -> bytes:
    d = dnstap_pb2.Dnstap()
    d.type = dnstap_pb2.Dnstap.MESSAGE
    d.message.type = mtype
    d.message.query_address = client
    d.message.response_message = wire
    return CODEC.encode_data(d.SerializeToString())


async def session(path: str, *chunks: bytes, handshake: bool = True) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    got = b""
    if handshake:
        writer.write(CODEC.encode_ctrlready(CONTENT_TYPE))
        await writer.drain()
        got = await asyncio.wait_for(reader.read(64), 5)
    writer.write(CODEC.encode_ctrlstart(CONTENT_TYPE))
    for c in chunks:
        writer.write(c)
    await writer.drain()
    writer.write(CODEC.encode(ctrl=fstrm.FSTRM_CONTROL_STOP))
    try:
        await writer.drain()
        got += await asyncio.wait_for(reader.read(64), 5)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    writer.close()
    return got


def run(tmp_path, body):
    table = LearnedAddresses()
    listener = DnstapListener(f"unix:{tmp_path}/t.sock", table, lambda: CAT, clock=lambda: 1000.0)

    async def main():
        await listener.start()
        try:
            await body(str(tmp_path / "t.sock"))
            await asyncio.sleep(0.2)
        finally:
            await listener.stop()
    asyncio.run(main())
    return listener, table


def test_handshake_and_answers(tmp_path):
    replies = []

    async def body(path):
        replies.append(await session(path, frame(answer("web.whatsapp.com.", "192.0.2.1")),
                                     frame(answer("www.example.org.", "192.0.2.2")),
                                     frame(answer("chat.signal.org.", "2001:db8::5", rtype="AAAA"))))
    listener, table = run(tmp_path, body)
    accept = CODEC.encode_ctrlaccept(CONTENT_TYPE)
    finish = CODEC.encode(ctrl=fstrm.FSTRM_CONTROL_FINISH)
    assert replies[0] == accept + finish
    assert listener.frames == {"matched": 2, "unmatched": 1}
    assert sorted(sid for sid, _ in table.entries.values()) == ["signal", "whatsapp"]
    assert table.clients == {("10.0.0.7", "whatsapp"): 1, ("10.0.0.7", "signal"): 1}
    assert listener.figures()["imflow_dns_resolving_clients"][3] == {("whatsapp",): 1, ("signal",): 1}
    assert listener.figures()["imflow_dns_client_answers"][3] == {("10.0.0.7", "whatsapp"): 1,
                                                                  ("10.0.0.7", "signal"): 1}


def test_unidirectional_sender(tmp_path):
    async def body(path):
        await session(path, frame(answer("web.whatsapp.com.", "192.0.2.1")), handshake=False)
    listener, table = run(tmp_path, body)
    assert listener.frames == {"matched": 1} and len(table) == 1


@pytest.mark.parametrize("junk, outcome", [
    (CODEC.encode_data(b"\xff\xff\xff"), "bad_protobuf"),
    (frame(b"\x00\x01garbage"), "bad_dns"),
    (frame(answer("web.whatsapp.com.", "192.0.2.1")[:-3]), "bad_dns"),
    (frame(answer("web.whatsapp.com.", "192.0.2.1"), mtype=dnstap_pb2.Message.CLIENT_QUERY), "other_type"),
])
def test_bad_frames_are_counted_and_the_stream_goes_on(tmp_path, junk, outcome):
    async def body(path):
        await session(path, junk, frame(answer("web.whatsapp.com.", "192.0.2.1")))
    listener, table = run(tmp_path, body)
    assert listener.frames == {outcome: 1, "matched": 1} and len(table) == 1


@pytest.mark.parametrize("junk", [
    struct.pack("!I", MAX_FRAME + 1) + b"x" * 100,  # a data frame over the ceiling
    struct.pack("!II", 0, 100_000),  # a control frame over the ceiling
    struct.pack("!II", 0, 8) + struct.pack("!II", 77, 0),  # an unknown control frame
])
def test_a_broken_stream_is_closed_and_counted(tmp_path, junk):
    async def body(path):
        await session(path, junk, frame(answer("web.whatsapp.com.", "192.0.2.1")))
        await session(path, frame(answer("chat.signal.org.", "192.0.2.9")))  # the next sender is heard
    listener, table = run(tmp_path, body)
    assert listener.frames["bad_stream"] == 1 and listener.frames["matched"] == 1
    assert [sid for sid, _ in table.entries.values()] == ["signal"]


def test_wrong_content_type_is_refused(tmp_path):
    async def body(path):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(CODEC.encode_ctrlready(b"protobuf:something.Else"))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(64), 5) == b""  # closed, no ACCEPT
        writer.close()
    listener, _ = run(tmp_path, body)
    assert listener.frames == {"bad_stream": 1}


def test_connections_are_bounded(tmp_path):
    async def body(path):
        held = [await asyncio.open_unix_connection(path) for _ in range(MAX_CONNECTIONS + 3)]
        await asyncio.sleep(0.3)
        for _, w in held:
            w.close()
    listener, _ = run(tmp_path, body)
    assert listener.refused == 3 and listener.connected_total == MAX_CONNECTIONS


def test_the_view_takes_answers_in_between_batches(tmp_path):
    """Answers change the classifier's view within a second of the table's rebuild_every without
    any flow classified (the listener's own task): the first batch after them builds nothing."""
    table = LearnedAddresses(rebuild_every=0.2)
    listener = DnstapListener(f"unix:{tmp_path}/t.sock", table, lambda: CAT, clock=lambda: 1000.0)

    async def main():
        await listener.start()
        try:
            await session(str(tmp_path / "t.sock"), *(frame(answer("web.whatsapp.com.", f"192.0.2.{i}"))
                                                      for i in range(1, 51)))
            await asyncio.sleep(0.6)
            assert len(table._view) == 50 and not table._pending
            view = table._view
            assert table.view(CAT.by_id, 1000.0) is view  # what the classifier gets: no work left
        finally:
            await listener.stop()
        assert listener._updater is None
    asyncio.run(main())


def test_a_workers_view_takes_the_supervisors_entries_in_between_batches():
    """With --workers, what the supervisor sends down the pipe reaches the worker's view by the
    feed's own task, as the listener's answers do: the worker's first batch builds nothing."""
    import multiprocessing

    from collector.daemon.workers import LearnedFeed
    from collector.netflow.batch import addr_from_str

    table = LearnedAddresses(rebuild_every=0.2)
    theirs, ours = multiprocessing.Pipe()
    feed = LearnedFeed(ours, table, lambda: CAT, clock=lambda: 1000.0)
    sent = [(*addr_from_str(f"192.0.2.{i}"), "whatsapp", 2000.0) for i in range(1, 41)]

    async def main():
        await feed.start()
        try:
            theirs.send(sent)
            await asyncio.sleep(0.7)
            assert len(table._view) == len(sent) and not table._pending
            view = table._view
            assert table.view(CAT.by_id, 1000.0) is view
            assert {table.entries[(hi, lo)][0] for hi, lo, _, _ in sent} == {"whatsapp"}
        finally:
            await feed.stop()
        assert feed._updater is None
    asyncio.run(main())
