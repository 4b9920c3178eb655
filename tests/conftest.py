"""Shared helpers for fastco's tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import pytest

ROOT = Path(__file__).resolve().parent.parent


#: Functions for code run by run_python that measures its own resources.
PROC_STATS = r"""
import os

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def fds():
    return len(os.listdir("/proc/self/fd"))
"""


def frame_chain(frame: FrameType | None) -> list[FrameType]:
    """`frame` and the frames under it (its f_back chain), innermost first."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


def run_python(*args: str, code: str | None = None, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run this interpreter on a script (or `code`) in a fresh process."""
    cmd = [sys.executable]
    cmd += ["-c", code] if code is not None else []
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=full_env, check=False)


@pytest.fixture
def pipe():
    """(read fd, write fd) of a pipe, closed after the test."""
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def free_port() -> int:
    """A loopback port that was free a moment ago (a server binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_when_listening(port: int, deadline: float,
                           proc: subprocess.Popen | None = None) -> socket.socket:
    """A connection to 127.0.0.1:port, retried until a server listens there
    (or the monotonic ``deadline`` passes, or ``proc``, the server, exits)."""
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the server exited with status {proc.returncode}: "
                                     f"{proc.stderr.read() if proc.stderr else ''}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------------------
# The hub: a fresh one per test, and a guard against hangs.

POLLERS = ["epoll", "poll", "select"]


class HungTest(SystemExit):
    """Raised (in the main greenlet, by the hub) when a test runs too long."""


def _alarm(signum, frame):
    raise HungTest("test still running after its time limit: a hang?")


def _fresh_hub(poller):
    import signal

    from fastco import hub as hubmod

    h = hubmod.Hub(poller)
    hubmod.set_hub(h)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 20.0, 1.0)
    try:
        yield h
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        h.destroy()


@pytest.fixture
def hub():
    """A fresh hub for the test ($FASTCO_POLLER, else the default poller),
    destroyed afterwards.  A test that runs longer than 20 s gets HungTest
    raised in it (again every second), rather than hanging the suite."""
    yield from _fresh_hub(None)


@pytest.fixture(params=POLLERS)
def any_hub(request):
    """The `hub` fixture, once per poller backend (epoll, poll, select)."""
    yield from _fresh_hub(request.param)


# ---------------------------------------------------------------------------
# TLS: a throw-away CA and a server certificate for localhost / 127.0.0.1.

class TlsCerts:
    """Paths of the PEM files the TLS tests use: ``ca`` (the CA's
    certificate, to verify with), ``server`` (the server's certificate and
    key, signed by the CA, for localhost and 127.0.0.1), ``other`` (a
    certificate and key for another name, signed by the same CA)."""

    def __init__(self, directory: Path) -> None:
        self.ca = directory / "ca.pem"
        self.server = directory / "server.pem"
        self.other = directory / "other.pem"


def make_tls_certs(directory: Path) -> TlsCerts:
    """Make a CA and two certificates it signs, into ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))

    def builder(subject: str, issuer: str, key):
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(valid[0]).not_valid_after(valid[1]))

    def pem(cert, key=None) -> bytes:
        out = cert.public_bytes(serialization.Encoding.PEM)
        if key is not None:
            out += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return out

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (builder("fastco test CA", "fastco test CA", ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    certs = TlsCerts(directory)
    certs.ca.write_bytes(pem(ca))
    for path, names in ((certs.server, ["localhost", "127.0.0.1"]),
                        (certs.other, ["other.example"])):
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
                for n in names]
        cert = (builder(names[0], "fastco test CA", key)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))
        path.write_bytes(pem(cert, key))
    return certs


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory) -> TlsCerts:
    """A CA and server certificates made for this test session."""
    return make_tls_certs(tmp_path_factory.mktemp("tls"))
