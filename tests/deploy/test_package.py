"""scripts/build-deb: the .deb installed into a clean Debian root (debootstrap), and the
service's own command run there as the service's user, receiving a datagram on loopback.

Needs root, debootstrap, dpkg-deb, python3-venv and the Debian mirror apt uses (the root) and
PyPI (imflow's dependencies). The root (Debian 12 minbase with python3, about 1 minute to
make) is cached under the temporary directory between runs, keyed by what it was made from;
each run installs into a fresh copy of it. The build takes 1-2 minutes (pip's cache helps).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SUITE = "bookworm"
INCLUDE = "python3"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (debootstrap, chroot)"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("debootstrap", "dpkg-deb", "chroot", "unshare")),
                       reason="needs debootstrap, dpkg-deb, chroot, unshare (scripts/install-test-deps)"),
    pytest.mark.skipif(subprocess.run(["/usr/bin/python3", "-c", "import ensurepip"],
                                      capture_output=True).returncode != 0,
                       reason="needs python3-venv for the system Python"),
]


def _mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), else "" (debootstrap's own
    default)."""
    for path in [pathlib.Path("/etc/apt/sources.list"), *sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if line.startswith("URIs:") and "security" not in line:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return ""


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory) -> pathlib.Path:
    """A fresh copy of a cached clean Debian root."""
    mirror = _mirror()
    key = hashlib.sha256(f"{SUITE} {mirror} minbase {INCLUDE}".encode()).hexdigest()[:12]
    cache = pathlib.Path(tempfile.gettempdir()) / f"imflow-debootstrap-{SUITE}-{key}"
    if not (cache / ".complete").exists():
        partial = cache.with_name(cache.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        out = subprocess.run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(partial),
                              *([mirror] if mirror else [])],
                             capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            pytest.fail(f"debootstrap failed: {out.stdout[-1500:]}{out.stderr[-1500:]}")
        (partial / ".complete").touch()
        shutil.rmtree(cache, ignore_errors=True)
        partial.rename(cache)
    root = tmp_path_factory.mktemp("debian") / "root"
    subprocess.run(["cp", "-a", str(cache), str(root)], check=True, timeout=300)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> pathlib.Path:
    out_dir = tmp_path_factory.mktemp("deb")
    p = subprocess.run([str(ROOT / "scripts" / "build-deb"), str(out_dir)], capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    (path,) = out_dir.glob("imflow_*.deb")
    return path


def chroot(root: pathlib.Path, *cmd: str, timeout: float = 120, **kw):
    """`cmd` inside `root`, with /proc mounted in a private mount namespace (gone with it)."""
    script = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root), *cmd],
                          capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}, **kw)


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def v5_datagram(now: float) -> bytes:
    """One NetFlow v5 flow: 10.1.2.3:51413 -> 198.51.100.7:6881 TCP (BitTorrent), 5 kB."""
    uptime = 3_600_000
    header = struct.pack("!HHIIIIBBH", 5, 1, uptime, int(now), 0, 1, 0, 0, 0)
    record = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH",
                         socket.inet_aton("10.1.2.3"), socket.inet_aton("198.51.100.7"), bytes(4),
                         1, 2, 7, 5000, uptime - 2000, uptime - 1000, 51413, 6881, 0, 0x18, 6, 0, 0, 0, 24, 0, 0)
    return header + record


@pytest.fixture(scope="module")
def installed(debian_root, deb) -> pathlib.Path:
    shutil.copy(deb, debian_root / "tmp" / "imflow.deb")
    p = chroot(debian_root, "dpkg", "-i", "/tmp/imflow.deb", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return debian_root


def test_package_puts_imflow_and_its_service_in_place(installed):
    root = installed
    assert (root / "opt/imflow/bin/imflow").exists()
    assert os.readlink(root / "usr/bin/imflow") == "/opt/imflow/bin/imflow"
    unit = (root / "lib/systemd/system/imflow.service").read_text()
    assert unit == (ROOT / "deploy/systemd/imflow.service").read_text()
    assert "ExecStart=/opt/imflow/bin/imflow run --config /etc/imflow/imflow.toml" in unit
    assert (root / "etc/imflow/imflow.toml").read_text() == (ROOT / "deploy/imflow.toml.example").read_text()
    env = root / "etc/imflow/imflow.env"
    assert env.stat().st_mode & 0o777 == 0o600 and env.stat().st_uid == 0
    assert (root / "usr/lib/sysusers.d/imflow.conf").exists() and (root / "usr/lib/sysctl.d/90-imflow.conf").exists()
    status = (root / "var/lib/dpkg/status").read_text().split("\n\n")
    (entry,) = [e for e in status if e.startswith("Package: imflow\n")]
    assert "/etc/imflow/imflow.toml" in entry and "/etc/imflow/imflow.env" in entry   # conffiles
    user = chroot(root, "getent", "passwd", "imflow")
    assert user.returncode == 0 and user.stdout.split(":")[5:7] == ["/var/lib/imflow", "/usr/sbin/nologin\n"]
    state = root / "var/lib/imflow"
    assert state.is_dir() and state.stat().st_mode & 0o777 == 0o750
    # nothing of the build machine left in the venv: scripts, pyvenv.cfg
    for path in (root / "opt/imflow/bin").iterdir():
        if path.is_file() and not path.is_symlink():
            assert "/tmp/" not in path.read_text(errors="replace"), path
    assert (root / "opt/imflow/bin/imflow").read_text().startswith("#!/opt/imflow/bin/python")


def test_service_command_checks_the_installed_config(installed):
    p = chroot(installed, "/opt/imflow/bin/imflow", "check-config", "/etc/imflow/imflow.toml")
    assert p.returncode == 0, p.stdout + p.stderr
    v = chroot(installed, "imflow", "--version")
    assert v.returncode == 0 and "0." in v.stdout, v.stdout + v.stderr


def test_service_runs_as_its_user_and_receives_flows(installed):
    """The unit's command (its flags, its user, its config), on loopback ports, with a
    NetFlow v5 datagram sent from outside the root; stopped with SIGTERM as systemd does."""
    port, mport = free_port(), free_port(socket.SOCK_STREAM)
    script = 'mount -t proc proc "$0/proc" && exec chroot --userspec=imflow:imflow "$0" "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(installed),
           "/opt/imflow/bin/imflow", "run", "--config", "/etc/imflow/imflow.toml", "--db", "/var/lib/imflow/imflow.db",
           "--listen", f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{mport}", "--refresh-time", "1s"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/var/lib/imflow"})
    try:
        url = f"http://127.0.0.1:{mport}/metrics"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=5)
                time.sleep(0.2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(v5_datagram(time.time()), ("127.0.0.1", port))
        while b"imflow_flows_total" not in urllib.request.urlopen(url, timeout=2).read() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # a flush (refresh_time 1s) writes the store
    finally:
        proc.send_signal(signal.SIGTERM)  # unshare, sh and chroot exec'd: this pid is imflow's
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "datagrams 1 flows 1 " in err, err[-3000:]
    top = chroot(installed, "/opt/imflow/bin/imflow", "top", "--db", "/var/lib/imflow/imflow.db", "--since", "all",
                 "--by", "host,service", "--format", "json")
    assert top.returncode == 0, top.stderr
    rows = json.loads(top.stdout)
    assert [(r["host"], r["service"], r["bytes"]) for r in rows] == [("10.1.2.3", "bittorrent", 5000)]
    db = installed / "var/lib/imflow/imflow.db"
    owner = chroot(installed, "stat", "-c", "%U", "/var/lib/imflow/imflow.db").stdout.strip()
    assert db.exists() and owner == "imflow"
