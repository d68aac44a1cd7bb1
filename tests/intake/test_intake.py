"""The intake's two ways of reading UDP: recvmmsg(2) (`collector.intake.mmsg`, Linux) and the event
loop's datagram transport. Real sockets on loopback; what each hands on is compared with what
was sent (payloads of every size up to the UDP maximum, IPv4 and IPv6 sources, the allow list).
"""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from collector.intake import mmsg
from collector.intake import Intake
from collector.netflow.batch import COLUMNS
from collector.netflow.decoder import Decoder

MODES = [False, pytest.param(True, marks=pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg"))]


async def _collect(use_mmsg: bool, allow: list[str] | None, sends) -> tuple[list, list, Intake]:
    got: list = []
    intake = Intake(["127.0.0.1:0", "[::1]:0"], got.extend, allow, batch_size=7, delay=0.01,
                    use_mmsg=use_mmsg)
    bound = await intake.start()
    ports = {"4": int(bound[0].rsplit(":", 1)[1]), "6": int(bound[1].rsplit(":", 1)[1])}
    senders = {"4": socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
               "4b": socket.socket(socket.AF_INET, socket.SOCK_DGRAM),  # a second exporter
               "6": socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)}
    senders["4"].bind(("127.0.0.1", 0))
    senders["4b"].bind(("127.0.0.2", 0))
    senders["6"].bind(("::1", 0))
    expected = []
    for family, payload in sends:
        sock = senders[family]
        sock.sendto(payload, ("::1", ports["6"]) if family == "6" else ("127.0.0.1", ports["4"]))
        expected.append((payload, sock.getsockname()[:2]))
        if len(expected) % 50 == 0:
            await asyncio.sleep(0.01)  # stay under the socket buffer
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(got) + intake.denied >= len(expected):
            break
    intake.close()
    for s in senders.values():
        s.close()
    return [(data, source[:2]) for data, source, _ in got], expected, intake


@pytest.mark.parametrize("use_mmsg", MODES)
def test_every_datagram_whole_with_its_source(use_mmsg):
    sends = [("4" if i % 3 else "6", bytes([i % 251]) * size)
             for i, size in enumerate([1, 20, 1400, 9000, 65000, 65507 - 20, 300] * 30)]
    got, expected, intake = asyncio.run(_collect(use_mmsg, None, sends))
    assert sorted(got) == sorted(expected)  # two sockets: order across them is the loop's
    assert intake.denied == 0 and intake.socket_errors == 0


@pytest.mark.parametrize("use_mmsg", MODES)
@pytest.mark.parametrize("refused, allowed", [(40, 40), (600, 30)])
def test_allow_list_refuses_and_counts(use_mmsg, refused, allowed):
    """Refused datagrams take receive slots too: many of them in a row (600, far more than a
    batch) must not leave the intake with no room for the allowed ones after them."""
    sends = [("4", b"v4-%d" % i) for i in range(refused)] + [("6", b"v6-%d" % i) for i in range(allowed)]
    got, expected, intake = asyncio.run(_collect(use_mmsg, ["::1/128"], sends))
    assert sorted(got) == sorted(e for e in expected if e[1][0] == "::1")
    assert intake.denied == refused


@pytest.mark.parametrize("use_mmsg", MODES)
def test_exporters_interleaved_on_one_socket(use_mmsg):
    """Datagrams of two sources queued together (one recvmmsg takes both): each keeps its
    own source, and the allow list judges each."""
    sends = [("4" if i % 3 else "4b", b"dg-%d" % i) for i in range(300)]
    got, expected, intake = asyncio.run(_collect(use_mmsg, None, sends))
    assert sorted(got) == sorted(expected)
    got, expected, intake = asyncio.run(_collect(use_mmsg, ["127.0.0.2/32"], sends))
    assert sorted(got) == sorted(e for e in expected if e[1][0] == "127.0.0.2")
    assert intake.denied == 200


def _bench_datagrams():
    """bench/ingest/datagrams.py: simulator traffic exported as v5, v9 and IPFIX."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "ingest" / "datagrams.py"
    spec = importlib.util.spec_from_file_location("bench_datagrams", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def _columns(batch) -> list:
    return [getattr(batch, name).tolist() for name in COLUMNS]


@pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg")
def test_received_batches_decode_as_copies_of_them_do():
    """The bulk path reading datagrams where they landed in the receive arena gives the
    flows and exporter state that decoding copies of the same datagrams gives."""
    bench = _bench_datagrams()
    build = bench.build
    streams = {"a": build("v9", 4000).datagrams, "b": build("ipfix", 4000).datagrams + build("v5", 2000).datagrams}
    # IPFIX datagrams of up to 150 records (~6 KiB): longer than an arena slot, so they are
    # received in two pieces and gathered into the large region, among the usual ones
    per = bench.MAX_RECORDS
    try:
        bench.MAX_RECORDS = 150
        streams["c"] = build("ipfix", 6000).datagrams
    finally:
        bench.MAX_RECORDS = per
    assert sum(len(d) > mmsg.PITCH for d in streams["c"]) > 20
    in_place, copies = Decoder(), Decoder()
    got: list = [[], []]
    kinds = []

    def on_batch(batch):
        kinds.append(type(batch))
        items = list(batch)  # copies, taken before the batch is decoded in place
        got[0].append(_columns(in_place.decode(batch)))
        got[1].append(_columns(copies.decode(items)))

    async def run():
        intake = Intake(["127.0.0.1:0"], on_batch, batch_size=100, delay=0.01, use_mmsg=True)
        port = int((await intake.start())[0].rsplit(":", 1)[1])
        senders = {k: socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for k in streams}
        sent = 0
        for i in range(max(len(v) for v in streams.values())):
            for k, dgrams in streams.items():
                if i < len(dgrams):
                    senders[k].sendto(dgrams[i], ("127.0.0.1", port))
                    sent += 1
            if i % 40 == 0:
                await asyncio.sleep(0.005)
        for _ in range(300):
            await asyncio.sleep(0.01)
            if sum(copies.stats.datagrams.values()) >= sent:
                break
        intake.close()
        for s in senders.values():
            s.close()
        return sent

    sent = asyncio.run(run())
    assert set(kinds) == {mmsg.Batch}
    assert sum(in_place.stats.datagrams.values()) == sent
    assert got[0] == got[1]
    for name in ("datagrams", "flows", "errors", "seq_lost", "templates"):
        assert getattr(in_place.stats, name) == getattr(copies.stats, name), name


@pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg")
def test_a_batch_lists_its_sources_once_in_order_of_arrival():
    """The sources the decoder looks sessions up by: from the calls' own word while every call
    came from one source, else from the datagrams; the same list either way."""
    import numpy as np

    receiver = mmsg.Receiver(slots=4, capacity=16)
    a, b, c = ("192.0.2.1", 2055), ("192.0.2.2", 2055), ("192.0.2.1", 9995)
    calls = [[b, b], [a], [b, b, b], [c, a]]
    for told in (True, False):
        batch = receiver.new_batch()
        for srcs in calls:
            one = srcs[0] if told and len(set(srcs)) == 1 else None
            batch._add(np.zeros(len(srcs), np.int64), np.ones(len(srcs), np.uint32), list(srcs), 0.0, one)
            assert batch.distinct_sources() == list(dict.fromkeys(batch.sources))
        assert batch.distinct_sources() == [b, a, c]
    receiver.close()


@pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg")
def test_a_batch_cannot_be_read_once_its_arena_moved_on():
    receiver = mmsg.Receiver(slots=4, capacity=8)
    old = receiver.new_batch()
    receiver.new_batch()
    with pytest.raises(RuntimeError):
        old.layout()
    receiver.close()


@pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg")
def test_datagrams_around_the_slot_size_whole_in_one_batch():
    """Datagrams just under, at and over a slot's size and up to the UDP maximum, many of them
    long in one receive call: each read back whole, through `layout()` (what the decoder's
    bulk path reads: the arena at the datagram's offset) as through indexing, and the large
    ones never overlap the slots or each other."""
    receiver = mmsg.Receiver(slots=64, capacity=256)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sizes = [1, mmsg.PITCH - 1, mmsg.PITCH, mmsg.PITCH + 1, 9000, 65507, 1400, 2 * mmsg.PITCH + 3]
    sent = []
    try:
        batch = receiver.new_batch()
        for i in range(120):
            size = sizes[i % len(sizes)]
            payload = bytes((i * 7 + j) % 251 for j in range(min(size, 512))) * (size // 512 + 1)
            sent.append(payload[:size])
            tx.sendto(sent[-1], rx.getsockname())
            if i % 40 == 39:
                while receiver.receive(rx.fileno(), 0.0, batch)[0]:
                    pass
        while receiver.receive(rx.fileno(), 0.0, batch)[0]:
            pass
        assert [data for data, _, _ in batch] == sent
        arena, offsets, lens, _, _ = batch.layout()
        assert [bytes(arena[o:o + n]) for o, n in zip(offsets.tolist(), lens.tolist())] == sent
        spans = sorted(zip(offsets.tolist(), lens.tolist()))
        assert all(o + n <= o2 for (o, n), (o2, _) in zip(spans, spans[1:]))
    finally:
        rx.close()
        tx.close()
        receiver.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_MEMINFO and /proc/net/udp are Linux's")
def test_drops_read_from_the_socket_match_proc_net_udp():
    """The kernel's drop count read per socket (SO_MEMINFO) is the `drops` column of
    /proc/net/udp for that socket (what `queue_stats` reads): a burst into a small receive
    buffer, sent while the loop cannot read, drops datagrams; both say how many."""
    async def run():
        intake = Intake(["127.0.0.1:0"], lambda batch: None, rcvbuf=4096, batch_size=64, delay=0.01)
        port = int((await intake.start())[0].rsplit(":", 1)[1])
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(400):  # no await: the loop reads nothing meanwhile
            tx.sendto(b"x" * 1000, ("127.0.0.1", port))
        tx.close()
        drops, proc = intake.drops(), {k: d for k, (_, d) in intake.queue_stats().items()}
        intake.close()
        return drops, proc

    drops, proc = asyncio.run(run())
    assert drops == proc
    assert sum(drops.values()) > 0


@pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg")
def test_a_socket_read_dry_rests_and_loses_nothing(monkeypatch):
    """A socket read dry is left alone for `REST` and read when it is over, again and again
    while datagrams keep coming (each read then finds more of them), and watched again once a
    rest brought none; every datagram still arrives, whole and once, with bursts and pauses
    around the rests, and closing while a socket rests leaves no reader behind."""
    from collector.intake import listener

    monkeypatch.setattr(listener, "REST_MIN_BUFFER", 0)  # whatever this machine's rmem_max grants
    monkeypatch.setattr(listener, "REST", 0.005)
    rests = []

    async def run():
        got: list = []
        intake = Intake(["127.0.0.1:0"], got.extend, batch_size=64, delay=0.01, use_mmsg=True)
        port = int((await intake.start())[0].rsplit(":", 1)[1])
        fd = intake.readers[0]
        assert fd in intake.restful
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent = []
        for burst in range(40):
            for i in range(1 + burst % 7):
                payload = f"{burst}:{i}".encode() * 20
                sender.sendto(payload, ("127.0.0.1", port))
                sent.append(payload)
            await asyncio.sleep(0.001 * (burst % 4))
            rests.append(fd in intake._resting)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(got) >= len(sent):
                break
        await asyncio.sleep(0.05)
        idle = fd not in intake._resting  # with nothing arriving it is watched, not polled
        sender.sendto(b"last", ("127.0.0.1", port))
        await asyncio.sleep(0)  # read at once, or rests: either way close must clean up
        intake.close()
        sender.close()
        assert not intake._resting and not intake.readers
        return sorted(d for d, _, _ in got), sorted(sent), idle

    got, sent, idle = asyncio.run(run())
    assert got == sent
    assert any(rests)  # the rests did happen
    assert idle
