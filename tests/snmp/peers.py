"""Real SNMP agents for the tests, on loopback, started and stopped by pid.

- Debian **snmpd** (net-snmp 5.9.3) with a generated config: a v2c community and v3 users.
  SNMP_PERSISTENT_DIR points into the test's folder (snmpd keeps v3 keys there; a reused
  folder would keep old passwords) and `-C -c FILE` reads only our config. A wrong community
  gets no answer at all; so does a wrong v3 privacy key (the garbled PDU fails to parse).
- **snmpsim** (PyPI, 1.2.2) serving .snmprec recordings: the v2c community is the file name;
  SNMPv3 with the empty context (what pollers send) is served by `self.snmprec`; it refuses to
  run as root unless SNMPSIM_ALLOW_ROOT=true. A v3 request it cannot decrypt gets a
  usmStatsDecryptionErrors report (net-snmp would stay silent).
- net-snmp's command-line tools (`snmpget`, `snmpbulkwalk`) as an independent reader.
- `ErrorAgent`: a few lines of BER that answer every SNMPv2c request with one errorStatus
  (genErr, tooBig): the misbehaving agents the others cannot play.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "snmp"


def free_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_udp_port_both() -> int:
    """A port free on both 127.0.0.1 and ::1."""
    for _ in range(50):
        port = free_udp_port()
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
                s.bind(("::1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no UDP port free on both loopbacks")


def cli_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(workdir / "cli"), MIBS="", MIBDIRS="/nonexistent")
    env.pop("SNMPCONFPATH", None)
    return env


def snmp_cli(workdir: Path, tool: str, args: list[str], timeout: float = 10) -> dict[tuple, str]:
    """Run a net-snmp tool with numeric OIDs and bare values; {oid tuple: value text}."""
    out = subprocess.run([tool, "-On", "-Oq", "-Ot", "-Oe", *args],
                         capture_output=True, text=True, timeout=timeout, env=cli_env(workdir), check=False)
    if out.returncode:
        raise RuntimeError(f"{tool} failed: {out.stderr.strip()}")
    values: dict[tuple, str] = {}
    for line in out.stdout.splitlines():
        oid, _, value = line.partition(" ")
        if oid.startswith("."):
            values[tuple(int(x) for x in oid[1:].split("."))] = value.strip().strip('"')
    return values


@dataclass
class Agent:
    """A process started with Popen (no shell: its pid is the agent's) and its address."""

    name: str
    proc: subprocess.Popen
    port: int
    workdir: Path
    log: Path
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_ready(agent: Agent, probe: list[str], deadline: float = 15) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if agent.proc.poll() is not None:
            raise RuntimeError(f"{agent.name} exited ({agent.proc.returncode}): {agent.log_text()[-2000:]}")
        out = subprocess.run(["snmpget", "-On", "-t", "0.3", "-r", "0", *probe],
                             capture_output=True, timeout=5, env=cli_env(agent.workdir), check=False)
        if out.returncode == 0:
            return
        time.sleep(0.1)
    agent.stop()
    raise RuntimeError(f"{agent.name} did not answer within {deadline}s: {agent.log_text()[-2000:]}")


@dataclass
class V3User:
    name: str
    auth: str = ""  # net-snmp names: SHA, SHA-256, SHA-512 ...
    auth_key: str = ""
    priv: str = ""  # AES, AES-256 ...
    priv_key: str = ""

    @property
    def level(self) -> str:
        return "priv" if self.priv else "auth" if self.auth else "noauth"


def start_snmpd(workdir: Path, community: str, users: list[V3User], sys_name: str,
                sys_descr: str) -> Agent:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_udp_port_both()
    conf = workdir / "snmpd.conf"
    lines = [
        f"agentAddress udp:127.0.0.1:{port},udp6:[::1]:{port}",
        f"rocommunity {community} 127.0.0.1",
        f"rocommunity6 {community} ::1",
        f"sysName {sys_name}",
        f"sysDescr {sys_descr}",
        "sysLocation imflow test",
    ]
    for u in users:
        spec = " ".join(x for x in (u.auth, f'"{u.auth_key}"' if u.auth else "", u.priv,
                                     f'"{u.priv_key}"' if u.priv else "") if x)
        lines += [f"createUser {u.name} {spec}".rstrip(), f"rouser {u.name} {u.level}"]
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    log = workdir / "snmpd.log"
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(workdir / "persist"), MIBS="", MIBDIRS="/nonexistent")
    # -f foreground, -C -c: only our config, -I -smux: no SMUX socket on tcp/199
    proc = subprocess.Popen(
        [shutil.which("snmpd") or "/usr/sbin/snmpd", "-f", "-Lf", str(log), "-C", "-c", str(conf),
         "-I", "-smux", "-p", str(workdir / "snmpd.pid")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    agent = Agent("snmpd", proc, port, workdir, log)
    _wait_ready(agent, ["-v2c", "-c", community, f"127.0.0.1:{port}", ".1.3.6.1.2.1.1.5.0"])
    return agent


def snmpd_available() -> bool:
    return bool(shutil.which("snmpd") or os.path.exists("/usr/sbin/snmpd")) and bool(shutil.which("snmpget"))


def snmpsim_available() -> bool:
    return bool(shutil.which("snmpsim-command-responder")) and bool(shutil.which("snmpget"))


def start_snmpsim(workdir: Path, recordings: dict[str, Path], users: list[V3User]) -> Agent:
    """Serve each recording under its community name (dict key); the first one also as
    `self` (SNMPv3, empty context)."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for community, path in recordings.items():
        shutil.copyfile(path, data / f"{community}.snmprec")
    shutil.copyfile(next(iter(recordings.values())), data / "self.snmprec")
    port = free_udp_port()
    log = workdir / "snmpsim.log"
    argv = [shutil.which("snmpsim-command-responder"), f"--data-dir={data}",
            f"--cache-dir={workdir / 'cache'}", f"--agent-udpv4-endpoint=127.0.0.1:{port}",
            f"--logging-method=file:{log}", "--log-level=info"]
    for u in users:
        argv += [f"--v3-user={u.name}", f"--v3-auth-proto={u.auth or 'NONE'}",
                 f"--v3-priv-proto={u.priv or 'NONE'}"]
        if u.auth:
            argv.append(f"--v3-auth-key={u.auth_key}")
        if u.priv:
            argv.append(f"--v3-priv-key={u.priv_key}")
    env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    agent = Agent("snmpsim", proc, port, workdir, log)
    _wait_ready(agent, ["-v2c", "-c", next(iter(recordings)), f"127.0.0.1:{port}", ".1.3.6.1.2.1.1.5.0"])
    return agent


def read_snmprec(path: Path) -> dict[tuple, tuple[int, object]]:
    """An independent reading of a recording: {oid: (tag, value)}, hex decoded."""
    records = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        oid, tag, value = line.split("|", 2)
        if tag.endswith("x"):
            tag, value = tag[:-1], bytes.fromhex(value)
        tag = int(tag)
        if tag == 4 and isinstance(value, str):
            value = value.encode()
        elif tag not in (4, 6):
            value = int(value)
        records[tuple(int(x) for x in oid.split("."))] = (tag, value)
    return records


# --- a misbehaving agent: BER by hand ------------------------------------------------------

def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the TLV at pos."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, pos, pos + length


def _enc(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


GEN_ERR, TOO_BIG = 5, 1


def error_response(request: bytes, status: int = GEN_ERR) -> bytes | None:
    """An SNMPv2c Response-PDU with this errorStatus for an SNMPv2c request."""
    try:
        _, start, _ = _tlv(request, 0)  # Message SEQUENCE
        tag, vs, ve = _tlv(request, start)  # version
        if tag != 0x02 or request[vs:ve] != b"\x01":
            return None
        tag, cs, ce = _tlv(request, ve)  # community
        _, ps, _ = _tlv(request, ce)  # PDU
        tag, rs, re_ = _tlv(request, ps)  # request-id
    except IndexError:
        return None
    pdu = (_enc(0x02, request[rs:re_]) + _enc(0x02, bytes([status])) + _enc(0x02, b"\x01")
           + _enc(0x30, b""))
    return _enc(0x30, _enc(0x02, b"\x01") + _enc(0x04, request[cs:ce]) + _enc(0xA2, pdu))


class ErrorAgent(asyncio.DatagramProtocol):
    """Answers every SNMPv2c request with one errorStatus; counts the requests."""

    def __init__(self, status: int):
        self.status, self.requests = status, 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.requests += 1
        answer = error_response(data, self.status)
        if answer:
            self.transport.sendto(answer, addr)


async def start_error_agent(status: int = GEN_ERR) -> tuple[asyncio.DatagramTransport, ErrorAgent, int]:
    loop = asyncio.get_running_loop()
    transport, agent = await loop.create_datagram_endpoint(lambda: ErrorAgent(status),
                                                           local_addr=("127.0.0.1", 0))
    return transport, agent, transport.get_extra_info("sockname")[1]


def run(coro, timeout: float = 60):
    """Run a coroutine on a fresh event loop, bounded in time."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())
