"""Ingest benchmark: loss-free receive rate of imflow, nfcapd and nfacctd over UDP loopback,
side by side in one run, for NetFlow v5, v9 and IPFIX (see bench/README.md).

    python bench/ingest/run.py                 # full run (~10-15 minutes)
    python bench/ingest/run.py --quick         # short smoke run
    python bench/ingest/run.py --collectors imflow --versions v9 --rate 2000 --duration 1
    python bench/ingest/run.py --senders 64 --imflow-workers 2      # 64 exporters, two imflow workers
    python bench/ingest/run.py --template-sessions 10000             # 10,000 further template sessions alive
    python bench/ingest/run.py --abuse templates
    python bench/ingest/run.py --abuse hosts

A trial: start a collector on a fresh port and folder, replay prebuilt datagrams to it with
`sender.c` at a target datagram rate for `--duration` seconds, wait until the collector is
idle again, stop it with SIGTERM and count the flow records it stored. A trial passes when
every record sent was counted, the kernel dropped nothing on its socket, the sender had no
errors, and the collector was idle within 10 % of the send time after the sender stopped
(so a big receive buffer cannot hide a collector slower than the rate). The loss-free rate
is found by a bounded search over rates, then confirmed by repetitions (median reported).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import datagrams as D
import procs as P

from collector.config import default

VERSIONS = ("v5", "v9", "ipfix")
SUSTAIN = 0.10  # the collector must be idle within this share of the send time
IDLE_WINDOW = 0.2  # seconds of near-zero CPU (and an empty socket queue) that count as idle
IDLE_CPU = 0.10  # "near zero": below this share of one core
QUIET_CORES = 0.3  # before a trial, wait (bounded) until other programs use less than this
DISTURBED = 0.5  # a failed trial during which other programs used more cores than this is rerun once


@dataclass
class Trial:
    collector: str
    version: str
    target: float  # datagrams/s asked of the sender; 0 = unpaced
    sent: int = 0  # datagrams
    records: int = 0  # flow records sent
    errors: int = 0  # sender errors
    seconds: float = 0.0  # send time
    counted: int = 0  # flow records the collector stored
    drops: int = 0  # kernel drops on the collector's socket
    drain: float = 0.0  # seconds from the sender's end until the collector was idle
    cpu: float = 0.0  # collector CPU seconds, sender start .. idle
    peak_rss: int = 0  # bytes (VmHWM, summed over the collector's processes)
    stop_seconds: float = 0.0  # SIGTERM .. exit
    sender_cpu: float = 0.0  # CPU seconds of the sender
    others: float = 0.0  # cores busy with other programs on the machine while sending
    sessions_sent: int = 0  # template datagrams of the --template-sessions keeper (announce + refresh)
    audit_dropped: int = 0  # imflow: watched flows its audit log dropped at audit.max_pending (rollups keep them)
    error: str = ""

    @property
    def lost(self) -> int:
        return self.records - self.counted

    @property
    def sustained(self) -> bool:
        return self.drain <= SUSTAIN * max(self.seconds, 0.001)

    @property
    def ok(self) -> bool:
        return (not self.error and self.records > 0 and self.lost == 0 and self.drops == 0
                and self.errors == 0 and self.sustained)

    @property
    def rate(self) -> float:
        """Datagrams/s actually sent."""
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def flow_rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def why(self) -> str:
        if self.error:
            return self.error
        out = []
        if self.drops:
            out.append(f"kernel drops {self.drops}")
        if self.lost > 0:
            out.append(f"lost {self.lost} records" + ("" if self.drops else " (none dropped by the kernel)"))
        if self.lost < 0:
            out.append(f"counted {-self.lost} records MORE than sent")
        if self.errors:
            out.append(f"sender errors {self.errors}")
        if not self.sustained:
            out.append(f"busy {self.drain:.2f} s after the sender stopped")
        return ", ".join(out) or "ok"

    def line(self) -> str:
        tgt = f"{self.target:>9,.0f}/s" if self.target else "  unpaced  "
        return (f"  {self.collector:8} {self.version:5} target {tgt} sent {self.rate:>9,.0f} dg/s "
                f"{self.flow_rate:>11,.0f} flows/s  counted {self.counted:>10,}/{self.records:<10,} "
                f"drops {self.drops:<6} idle after {self.drain:5.2f} s  cpu {self.cpu:5.2f} s  "
                f"rss {self.peak_rss / 2**20:6.1f} MiB  others {self.others:4.2f}  "
                + (f"audit-dropped {self.audit_dropped:,}  " if self.audit_dropped else "")
                + ("PASS" if self.ok else "FAIL: " + self.why()))


@dataclass
class Result:
    collector: str
    version: str
    flows_per_s: float = 0.0  # median of the confirmation trials (0 = none passed)
    datagrams_per_s: float = 0.0
    cpu: float = 0.0  # median CPU seconds per trial
    cpu_per_flow_us: float = 0.0
    peak_rss: int = 0
    others: float = 0.0  # max cores other programs used during the confirmation trials
    sender_bound: bool = False  # passed at the sender's top speed: the rate is a lower bound
    limit: str = ""  # what failed just above the loss-free rate
    trials: list = field(default_factory=list)
    note: str = ""

    def summarise(self, passed: list[Trial]) -> None:
        """The figures of a rate from its passing trials: medians, and maxima of RSS and noise."""
        self.flows_per_s = statistics.median(t.flow_rate for t in passed)
        self.datagrams_per_s = statistics.median(t.rate for t in passed)
        self.cpu = statistics.median(t.cpu for t in passed)
        self.cpu_per_flow_us = statistics.median(t.cpu / t.records * 1e6 for t in passed)
        self.peak_rss = max(t.peak_rss for t in passed)
        self.others = max(t.others for t in passed)


class Bench:
    def __init__(self, args, workdir: Path, sender: Path):
        self.args = args
        self.workdir = workdir
        self.sender = sender
        self.files: dict[str, Path] = {}
        self.n = 0
        self.log = []

    def datagram_file(self, version: str) -> Path:
        if version not in self.files:
            built = D.build(version, self.args.records)
            path = self.workdir / f"{version}.bin"
            D.write(str(path), built)
            self.files[version] = path
            print(f"# {version}: {len(built.datagrams)} datagrams, {built.total_records} flow records "
                  f"({built.total_records / len(built.datagrams):.1f}/datagram, "
                  f"{sum(map(len, built.datagrams)) / len(built.datagrams):.0f} octets)", flush=True)
        return self.files[version]

    def wait_quiet(self, seconds: float | None = None) -> None:
        """Wait (at most --quiet-wait seconds) until other programs use less than
        QUIET_CORES of the machine, so trials measure the collector rather than the neighbours."""
        deadline = time.monotonic() + (self.args.quiet_wait if seconds is None else seconds)
        while time.monotonic() < deadline:
            b0, t0 = P.machine_busy(), time.monotonic()
            time.sleep(0.25)
            if (P.machine_busy() - b0) / (time.monotonic() - t0) < QUIET_CORES:
                return

    def trial(self, coll: P.Collector, version: str, target: float) -> Trial:
        """One judged trial. A failure while other programs kept more than DISTURBED cores
        busy is not a verdict: it is run once more (after waiting for calm) and that counts."""
        t = self._trial(coll, version, target)
        if not t.ok and not t.error and t.others > DISTURBED:
            print(f"    (disturbed: others used {t.others:.2f} cores; once more)", flush=True)
            self.wait_quiet(3 * self.args.quiet_wait)
            t = self._trial(coll, version, target)
        return t

    def _trial(self, coll: P.Collector, version: str, target: float) -> Trial:
        args = self.args
        self.n += 1
        self.wait_quiet()
        t = Trial(coll.name, version, target)
        wd = self.workdir / f"trial-{self.n:03d}-{coll.name}-{version}"
        port = P.free_port()
        try:
            run = coll.start(wd, port)
        except P.CollectorError as exc:
            t.error = str(exc)
            return t
        keeper = None
        try:
            if args.template_sessions:
                keeper = self.start_sessions(run, version)
            cpu0, kcpu0 = P.cpu_seconds(run.pid), P.cpu_seconds(keeper.pid) if keeper else 0.0
            count = int(target * args.duration) if target else 10**9
            busy0, child0 = P.machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
            w0 = time.monotonic()
            out = subprocess.run([str(self.sender), str(self.datagram_file(version)), str(port),
                                  f"{target:.3f}", str(max(count, 1)), f"{args.duration:.3f}",
                                  str(args.senders)],
                                 check=False, capture_output=True, text=True, timeout=args.duration + 30)
            end = time.monotonic()
            child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t.sender_cpu = child1.ru_utime + child1.ru_stime - child0.ru_utime - child0.ru_stime
            if keeper:  # the keeper is the trial's traffic, not another program
                t.sender_cpu += P.cpu_seconds(keeper.pid) - kcpu0
                t.sessions_sent = self.stop_sessions(keeper)
                keeper = None
            t.others = max(0.0, (P.machine_busy() - busy0 - t.sender_cpu - (P.cpu_seconds(run.pid) - cpu0))
                           / (end - w0))
            fields = dict(kv.split("=") for kv in out.stdout.split())
            if out.returncode != 0 or "sent" not in fields:
                raise P.CollectorError(f"sender failed: {out.stderr.strip()}")
            t.sent, t.records, t.errors = int(fields["sent"]), int(fields["records"]), int(fields["errors"])
            t.seconds = float(fields["seconds"])
            t.drain, cpu_idle = self.wait_idle(run, end, t.seconds)
            t.cpu = cpu_idle - cpu0
            sock = P.udp_socket(port)
            t.drops = sock[1] if sock else 0
            t.peak_rss = P.peak_rss(run.pid)
            t0 = time.monotonic()
            coll.stop(run)
            t.stop_seconds = time.monotonic() - t0
            t.counted = coll.count(run)
            t.audit_dropped = coll.audit_dropped(run) if hasattr(coll, "audit_dropped") else 0
        except (P.CollectorError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
            t.error = str(exc)[:500]
            coll.kill(run)
        finally:
            if keeper is not None and keeper.poll() is None:
                keeper.kill()
                keeper.wait(10)
            if run.proc.poll() is None:
                coll.kill(run)
            if not args.keep:
                shutil.rmtree(wd, ignore_errors=True)
        self.log.append(t)
        print(t.line(), flush=True)
        return t

    def start_sessions(self, run: P.Running, version: str) -> subprocess.Popen:
        """Start the --template-sessions keeper (sessions.py) and wait (bounded) until every
        session has announced its templates. It refreshes them until stop_sessions."""
        args = self.args
        keeper = subprocess.Popen([sys.executable, str(HERE / "sessions.py"), str(run.port), version,
                                   str(args.template_sessions), f"{args.template_refresh:g}",
                                   f"{args.duration + 60 + args.template_sessions / args.template_announce_rate:.0f}",
                                   f"{args.template_announce_rate:g}", str(args.template_sockets)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60 + args.template_sessions / args.template_announce_rate
        line = ""
        while not line.startswith("ready"):
            line = keeper.stdout.readline()
            if not line or time.monotonic() > deadline:  # the keeper died (EOF); bounded by its MAX_SECONDS
                keeper.kill()
                _, err = keeper.communicate(timeout=10)
                raise P.CollectorError(f"template sessions did not start: {err.strip()[-300:]}")
        # "alive" before the trial: the collector has taken every announcement in (it may
        # queue new sessions' templates behind a budget) and is idle again; bounded
        drain, _ = self.wait_idle(run, time.monotonic(), 10.0)
        if not math.isfinite(drain):
            print("    (the collector was not idle within 30 s of the announcements)", flush=True)
        return keeper

    @staticmethod
    def stop_sessions(keeper: subprocess.Popen) -> int:
        """SIGTERM the keeper (by its pid) and return the template datagrams it sent."""
        keeper.send_signal(signal.SIGTERM)
        out, err = keeper.communicate(timeout=30)
        fields = dict(kv.split("=") for kv in out.split() if "=" in kv and kv.startswith("sent="))
        if "sent" not in fields:
            raise P.CollectorError(f"template sessions: no count at exit: {err.strip()[-300:]}")
        return int(fields["sent"])

    def wait_idle(self, run: P.Running, end: float, seconds: float) -> tuple[float, float]:
        """Seconds after `end` until the collector's socket queue is empty and its CPU stays
        below IDLE_CPU for IDLE_WINDOW; and its CPU time at that point. Bounded."""
        limit = end + max(10.0, 3 * seconds)
        samples: list[tuple[float, float, bool]] = []  # (time, cpu, queue empty)
        while True:
            now = time.monotonic()
            sock = P.udp_socket(run.port)
            samples.append((now, P.cpu_seconds(run.pid), sock is not None and sock[0] == 0))
            for t0, c0, empty in samples:
                if now - t0 < IDLE_WINDOW:
                    break
                if now - t0 < IDLE_WINDOW * 2 and empty and (samples[-1][1] - c0) / (now - t0) < IDLE_CPU:
                    return max(0.0, t0 - end), c0
            samples = [s for s in samples if now - s[0] < IDLE_WINDOW * 2]
            if now > limit or run.proc.poll() is not None:
                return math.inf, samples[-1][1]
            time.sleep(0.02)

    # --- the loss-free rate -----------------------------------------------------------------

    def search_together(self, colls: list, version: str, budget: float) -> list[Result]:
        """Every collector's search for one version in lockstep: one trial of each in turn, so
        the machine's drift (this VM's speed moves by tens of percent over minutes) weighs on
        all of them alike instead of on whichever happened to search during a slow spell."""
        steps = {c.name: self._search(c, version, budget) for c in colls}
        rates = {name: next(gen) for name, gen in steps.items()}
        results: dict[str, Result] = {}
        while rates:
            for coll in colls:
                if coll.name not in rates:
                    continue
                trial = self.trial(coll, version, rates[coll.name])
                try:
                    rates[coll.name] = steps[coll.name].send(trial)
                except StopIteration as done:
                    results[coll.name] = done.value
                    del rates[coll.name]
        return [results[c.name] for c in colls]

    def _search(self, coll: P.Collector, version: str, budget: float):
        """Highest passing rate: one unpaced trial (the sender's top speed), then halving down
        to a passing rate and geometric bisection, bounded in trials and time; then `reps`
        confirmation trials at the rate found (stepping down if one fails). A generator: it
        gives the rate of each trial it wants (0: unpaced), is sent the trial, and returns
        the Result."""
        args = self.args
        res = Result(coll.name, version)
        deadline = time.monotonic() + budget
        top = yield 0
        res.trials.append(top)
        if top.error:
            res.note = top.error
            return res
        passing: Trial | None = None
        failing: Trial | None = None
        if top.ok:
            passing, res.sender_bound = top, True
        else:
            failing = top
            hi, lo = top.rate, 0.0
            for _ in range(args.search_trials):
                if time.monotonic() > deadline:
                    res.note = "search stopped by the time budget"
                    break
                if lo and hi / lo <= 1 + args.tolerance:
                    break
                if lo:
                    rate = math.sqrt(lo * hi)
                else:  # no passing rate yet: halve, or go straight to what it processed
                    processed = failing.counted / (failing.seconds + min(failing.drain, 10.0)) / \
                        max(failing.records / max(failing.sent, 1), 1)
                    rate = max(hi / 8, min(hi / 2, 0.9 * processed)) if processed > 0 else hi / 2
                t = yield rate
                res.trials.append(t)
                if t.error:
                    res.note = t.error
                    return res
                if t.ok:
                    lo, passing = rate, t
                else:
                    hi, failing = rate, t
            if passing is None:
                res.note = res.note or "no passing rate found"
                res.limit = failing.why()
                return res
        res.limit = failing.why() if failing is not None else "the sender (it passed at full speed)"
        # confirm: `reps` passing trials at one rate, stepping down 15 % when one fails
        # (an unpaced pass is confirmed paced at the rate it reached: unpaced rates vary)
        rate, reps = passing.target or passing.rate, []
        for _ in range(4):
            reps = [passing] if args.reps == 1 and rate == passing.target else []
            failed = None
            while len(reps) < args.reps:
                t = yield rate
                res.trials.append(t)
                if not t.ok:
                    failed = t
                    break
                reps.append(t)
            if failed is None:
                break
            reps, res.limit, res.sender_bound = [], failed.why(), False
            rate *= 0.85
            if time.monotonic() > deadline + budget / 2:
                break
        if not reps:
            res.note = "no rate passed every repetition"
            return res
        res.summarise(reps)
        return res

    def fixed(self, coll: P.Collector, version: str) -> Result:
        """--rate: trials at one rate only (no search)."""
        res = Result(coll.name, version)
        for _ in range(self.args.reps):
            res.trials.append(self.trial(coll, version, self.args.rate))
        good = [t for t in res.trials if t.ok]
        if good and len(good) == len(res.trials):
            res.summarise(good)
        else:
            res.note = "; ".join(t.why() for t in res.trials if not t.ok)
        return res


def table(results: list[Result], duration: float) -> str:
    head = (f"{'collector':9} {'version':7} {'loss-free flows/s':>18} {'datagrams/s':>12} "
            f"{'CPU s/trial':>11} {'CPU us/flow':>11} {'peak RSS':>9} {'others':>6}  {'imflow ratio':>12}  "
            "limit just above it")
    lines = [head, "-" * len(head)]
    by = {(r.collector, r.version): r for r in results}
    for r in results:
        fr = f"{'>=' if r.sender_bound else ''}{r.flows_per_s:,.0f}" if r.flows_per_s else "-"
        ratio = ""
        im = by.get(("imflow", r.version))
        if r.collector != "imflow" and im and im.flows_per_s and r.flows_per_s:
            ratio = f"{im.flows_per_s / r.flows_per_s:.2f}x"
        lines.append(f"{r.collector:9} {r.version:7} {fr:>18} {r.datagrams_per_s:>12,.0f} {r.cpu:>11.2f} "
                     f"{r.cpu_per_flow_us:>11.2f} {r.peak_rss / 2**20:>7.1f}Mi {r.others:>6.2f}  {ratio:>12}  "
                     f"{r.limit or r.note}")
    for r in results:  # the audit log's own ceiling: its flows are counted in the rollups all the same
        passing = [t for t in r.trials if t.ok]
        dropped = sum(t.audit_dropped for t in passing)
        if dropped:
            lines.append(f"# {r.collector} {r.version}: its audit log dropped {dropped:,} watched flows in "
                         f"{sum(t.audit_dropped > 0 for t in passing)} of {len(passing)} passing trials (more "
                         f"waiting for the store than audit.max_pending; the rollups counted them)")
    return "\n".join(lines)


def _jsonable(x):
    """inf (a collector never idle again) -> None, so the file is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def build_sender(dest: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("a C compiler (cc) is needed to build bench/ingest/sender.c")
    exe = dest / "sender"
    subprocess.run([cc, "-O2", "-Wall", "-o", str(exe), str(HERE / "sender.c")], check=True)
    return exe


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short run: 1 s trials, fewer search steps, one confirmation")
    p.add_argument("--collectors", default="imflow,nfcapd,nfacctd", help="comma list (default all three)")
    p.add_argument("--versions", default="v5,v9,ipfix", help="comma list of v5, v9, ipfix")
    p.add_argument("--duration", type=float, help="seconds of sending per trial (default 3; quick 1)")
    p.add_argument("--rate", type=float, help="datagrams/s: trials at this rate only, no search")
    p.add_argument("--reps", type=int, help="confirmation trials at the rate found (default 3; quick 1)")
    p.add_argument("--search-trials", type=int, help="search trials after the unpaced one (default 7; quick 3)")
    p.add_argument("--tolerance", type=float, help="stop the search when hi/lo <= 1 + this (default 0.1; quick 0.3)")
    p.add_argument("--budget", type=float, default=840.0, help="seconds for the whole search run (default 840)")
    p.add_argument("--records", type=int, default=100_000, help="flow records in each datagram file")
    p.add_argument("--json", metavar="FILE", help="write every trial and result as JSON")
    p.add_argument("--senders", "--exporters", dest="senders", type=int, default=1, metavar="N",
                   help="exporters the sender plays: sockets (source ports) and observation domains of "
                        "their own, each with its own templates and sequence numbers (1-256; default 1)")
    p.add_argument("--template-sessions", type=int, default=0, metavar="N",
                   help="keep N further template sessions alive during every trial (sessions.py: one "
                        "source port and observation domain each, templates only; default 0)")
    p.add_argument("--template-refresh", type=float, default=10.0, metavar="SECONDS",
                   help="--template-sessions: each session re-announces its templates this often "
                        "(default 10: N/10 datagrams/s)")
    p.add_argument("--template-sockets", type=int, default=100, metavar="N",
                   help="--template-sessions: sockets the sessions share, each session its own observation "
                        "domain (default 100; a socket each puts N lines in /proc/net/udp)")
    p.add_argument("--template-announce-rate", type=float, default=500.0, metavar="PER_S",
                   help="--template-sessions: the sessions' first announcements, datagrams/s before each "
                        "trial (default 500: 20 s for 10,000 sessions; imflow sheds new sessions' "
                        "templates past a queue of 4,096 datagrams, see bench/ingest/README.md)")
    p.add_argument("--imflow-refresh", type=float, default=1.0, metavar="SECONDS",
                   help="imflow's --refresh-time (default 1: a flush to SQLite every second of the trial; "
                        "imflow's own default is 60, which leaves only the final flush in a trial)")
    p.add_argument("--imflow-workers", type=int, default=1, metavar="N",
                   help="run imflow with --workers N (default 1); CPU and RSS cover all its processes")
    p.add_argument("--imflow-toml", default="", metavar="TOML",
                   help="more imflow configuration, e.g. '[collector]\\nbatch_size = 1024' (\\n for newlines)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders")
    p.add_argument("--quiet-wait", type=float, default=3.0, metavar="SECONDS",
                   help="before each trial wait up to this long for other programs to calm down (default 3)")
    p.add_argument("--no-sysctl", action="store_true",
                   help="leave net.core.rmem_max alone (buffers may then be smaller than asked)")
    p.add_argument("--abuse", choices=("templates", "hosts"), help="an abuse scenario instead (imflow only)")
    p.add_argument("--sessions", type=int, default=10_000, help="--abuse templates: source sessions")
    p.add_argument("--templates-per-session", type=int, default=64, help="--abuse templates")
    p.add_argument("--flood-rate", type=float, default=20_000.0,
                   help="--abuse templates: flood datagrams/s (default 20000)")
    p.add_argument("--hosts", type=int, default=1_000_000, help="--abuse hosts: distinct internal hosts")
    args = p.parse_args(argv)
    q = args.quick
    args.duration = args.duration or (1.0 if q else 3.0)
    args.reps = args.reps or (1 if q else 3)
    args.search_trials = args.search_trials if args.search_trials is not None else (3 if q else 7)
    args.tolerance = args.tolerance or (0.3 if q else 0.1)
    if args.quick and args.records == 100_000:
        args.records = 30_000
    args.collectors = [c.strip() for c in args.collectors.split(",") if c.strip()]
    args.versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    for c in args.collectors:
        if c not in P.COLLECTORS:
            p.error(f"--collectors: unknown {c!r} (known: {', '.join(P.COLLECTORS)})")
    for v in args.versions:
        if v not in VERSIONS:
            p.error(f"--versions: unknown {v!r} (known: {', '.join(VERSIONS)})")
    if not 0 < args.duration <= 60:
        p.error("--duration: 0 < seconds <= 60")
    if args.rate is not None and not 0 < args.rate <= 2_000_000:
        p.error("--rate: 0 < datagrams/s <= 2000000")
    if not 0 < args.flood_rate <= 200_000:
        p.error("--flood-rate: 0 < datagrams/s <= 200000")
    if not 1 <= args.sessions <= 60_000 or not 1 <= args.templates_per_session <= 4096:
        p.error("--sessions 1-60000, --templates-per-session 1-4096")
    if not 1 <= args.hosts <= 16_000_000:
        p.error("--hosts: 1-16000000")
    if not 1 <= args.senders <= 256:
        p.error("--senders: 1-256")
    if not 0 <= args.template_sessions <= 50_000:
        p.error("--template-sessions: 0-50000")
    if not 0.1 <= args.template_refresh <= 3600:
        p.error("--template-refresh: 0.1-3600 seconds")
    if not 1 <= args.template_sockets <= 50_000:
        p.error("--template-sockets: 1-50000")
    if not 1 <= args.template_announce_rate <= 100_000:
        p.error("--template-announce-rate: 1-100000 datagrams/s")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    P.Imflow.workers = args.imflow_workers
    P.Imflow.refresh = args.imflow_refresh
    sessions = args.template_sessions + args.senders
    if sessions > default("limits.max_sessions"):  # room for every session: "alive", not evicted and re-learnt
        P.Imflow.extra_toml = f"[limits]\nmax_sessions = {sessions + 100}\n"
    if args.imflow_toml:
        extra = args.imflow_toml.replace("\\n", "\n") + "\n"
        if P.Imflow.extra_toml and "[limits]" in extra:  # one TOML document defines a table once
            raise SystemExit(f"--imflow-toml: its [limits] table would repeat the harness's "
                             f"({P.Imflow.extra_toml.strip()!r} for the sessions): put that key in yours")
        P.Imflow.extra_toml += extra
    rmem = P.RmemMax(P.RCVBUF)
    workdir = Path(tempfile.mkdtemp(prefix="imflow-ingest-"))
    try:
        if args.no_sysctl:
            rmem.note = f"net.core.rmem_max {Path(P.RmemMax.PATH).read_text().strip()} (not touched)"
        else:
            rmem.raise_()
        sender = build_sender(workdir)
        if args.abuse:
            import abuse
            return abuse.main(args, workdir, sender, rmem.note)
        return bench_main(args, workdir, sender, rmem.note)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"# kept {workdir}")


def bench_main(args, workdir: Path, sender: Path, rmem_note: str) -> int:
    print(f"# imflow ingest benchmark: {os.cpu_count()} CPUs, {rmem_note}; trials of {args.duration:g} s, "
          f"receive buffer {P.RCVBUF >> 20} MiB asked by every collector; imflow flushes every "
          f"{P.Imflow.refresh:g} s with {P.Imflow.workers} worker(s); {args.senders} sender(s)"
          + (f"; {args.template_sessions:,} further template sessions alive (refresh every "
             f"{args.template_refresh:g} s){'; imflow ' + P.Imflow.extra_toml.strip().replace(chr(10), ' ') if P.Imflow.extra_toml else ''}"
             if args.template_sessions else ""), flush=True)
    bench = Bench(args, workdir, sender)
    colls = []
    for name in args.collectors:
        c = P.COLLECTORS[name]()
        why = c.available()
        if why:
            print(f"# {name}: skipped: {why}")
        else:
            colls.append(c)
    results: list[Result] = []
    start = time.monotonic()
    for i, version in enumerate(args.versions):
        bench.datagram_file(version)
        if args.rate is not None:
            results += [bench.fixed(coll, version) for coll in colls]
            continue
        if not colls:
            continue
        left = args.budget - (time.monotonic() - start)
        budget = max(left / (len(args.versions) - i), 10.0 * len(colls))
        print(f"# {version}: searching {', '.join(c.name for c in colls)} in turn (budget {budget:.0f} s)",
              flush=True)
        results += bench.search_together(colls, version, budget)
    print()
    print(table(results, args.duration))
    print(f"\n# {len(bench.log)} trials in {time.monotonic() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable({
            "duration": args.duration, "rate": args.rate,
            "results": [dict(asdict(r), trials=[dict(asdict(t), ok=t.ok, lost=t.lost, why=t.why())
                                                for t in r.trials]) for r in results]}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
