"""Monkey patching, each test in a fresh interpreter so that nothing leaks."""

from __future__ import annotations

import textwrap

import pytest

from conftest import run_python


def _run(code: str) -> str:
    proc = run_python(code=textwrap.dedent(code), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_stdlib_http_client_and_server_talk_inside_fastco() -> None:
    out = _run("""
        from fastco import monkey
        monkey.patch_all()

        import http.client
        import http.server
        import time
        import urllib.request

        import fastco

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                time.sleep(0.01)  # patched: only this task waits
                body = ("you asked for " + self.path).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        port = server.server_address[1]
        serving = fastco.spawn(server.serve_forever, 0.05)

        ticks = []
        def ticker():
            while True:
                ticks.append(1)
                time.sleep(0.002)
        tick = fastco.spawn(ticker)

        def fetch(i):
            url = "http://127.0.0.1:%d/page%d" % (port, i)
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()

        clients = [fastco.spawn(fetch, i) for i in range(8)]
        fastco.joinall(clients, timeout=20)
        for i, c in enumerate(clients):
            assert c.get() == (200, "you asked for /page%d" % i), c.exception

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for i in range(3):  # one keep-alive connection, several requests
            conn.request("GET", "/again%d" % i)
            assert conn.getresponse().read() == b"you asked for /again%d" % i
        conn.close()

        assert len(ticks) > 5, len(ticks)  # the loop never blocked
        tick.kill()
        serving.kill()
        server.server_close()
        print("OK", len(ticks))
    """)
    assert out.startswith("OK")


def test_socketserver_echo_serves_clients_concurrently() -> None:
    out = _run("""
        import socketserver   # imported before patching: its selector is patched too
        from fastco import monkey
        monkey.patch_all()

        import socket
        import fastco

        class Echo(socketserver.StreamRequestHandler):
            def handle(self):
                for line in self.rfile:
                    self.wfile.write(line.upper())

        class TaskServer(socketserver.TCPServer):
            allow_reuse_address = True
            def process_request(self, request, client_address):
                fastco.spawn(self.finish_request_and_close, request, client_address)
            def finish_request_and_close(self, request, client_address):
                try:
                    self.finish_request(request, client_address)
                finally:
                    self.shutdown_request(request)

        server = TaskServer(("127.0.0.1", 0), Echo)
        port = server.server_address[1]
        serving = fastco.spawn(server.serve_forever, 0.05)

        conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        files = [c.makefile("rwb") for c in conns]
        for i in reversed(range(5)):  # the last one first: all are served at once
            files[i].write(b"hello %d\\n" % i)
            files[i].flush()
            assert files[i].readline() == b"HELLO %d\\n" % i
        for f, c in zip(files, conns):
            f.close()
            c.close()
        serving.kill()
        server.server_close()
        print("OK")
    """)
    assert out.strip() == "OK"


def test_time_sleep_yields_to_other_tasks() -> None:
    out = _run("""
        from fastco import monkey
        monkey.patch_time()
        import time
        import fastco
        order = []
        def f(name):
            for i in range(3):
                order.append(name)
                time.sleep(0.01)
        start = time.monotonic()
        fastco.joinall([fastco.spawn(f, n) for n in "abc"])
        elapsed = time.monotonic() - start
        assert "".join(order) == "abcabcabc", order
        assert elapsed < 0.09 * 3, elapsed   # the sleeps overlapped
        try:
            time.sleep(-1)
        except ValueError:
            print("OK")
    """)
    assert out.strip() == "OK"


def test_select_and_selectors_are_cooperative() -> None:
    out = _run("""
        from fastco import monkey
        monkey.patch_select()
        import os
        import select
        import selectors
        import fastco

        assert not hasattr(select, "epoll")
        assert selectors.DefaultSelector is fastco.select.FastcoSelector
        assert monkey.is_patched("select") and not monkey.is_patched("socket")
        assert monkey.get_original("select", "select") is not select.select

        r, w = os.pipe()
        fastco.spawn_later(0.02, os.write, w, b"x")
        ticks = []
        t = fastco.spawn(lambda: [ticks.append(fastco.sleep(0.001)) for _ in range(5)])
        assert select.select([r], [], [], 5)[0] == [r]
        assert ticks  # the ticker ran while select waited
        sel = selectors.DefaultSelector()
        sel.register(r, selectors.EVENT_READ)
        assert len(sel.select(1)) == 1
        p = select.poll()
        p.register(r, select.POLLIN)
        assert p.poll(1000) == [(r, select.POLLIN)]
        print("OK")
    """)
    assert out.strip() == "OK"


def test_patched_socket_module_names() -> None:
    out = _run("""
        import socket as before
        original = before.socket
        from fastco import monkey
        monkey.patch_socket()
        import socket
        import fastco.socket
        assert socket.socket is fastco.socket.socket
        assert monkey.get_original("socket", "socket") is original
        assert socket.create_connection is fastco.socket.create_connection
        assert socket.getaddrinfo is fastco.socket.getaddrinfo
        a, b = socket.socketpair()
        assert isinstance(a, fastco.socket.socket)
        t = fastco.spawn(b.recv, 5)
        fastco.sleep(0)
        a.sendall(b"hi")
        assert t.get(timeout=2) == b"hi"
        print(socket.getfqdn("localhost") != "")
    """)
    assert out.strip() == "True"


def test_get_original_of_a_name_that_does_not_exist_says_which() -> None:
    # (get_original only reads: no patching, so in this process.)
    from fastco import monkey
    assert monkey.get_original("ssl.SSLContext", "sslsocket_class") is not None
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        monkey.get_original("no_such_module", "x")
    with pytest.raises(AttributeError, match="NoSuchClass"):
        monkey.get_original("ssl.NoSuchClass", "x")
    with pytest.raises(AttributeError, match="no_such_name"):
        monkey.get_original("threading", "no_such_name")


@pytest.mark.parametrize("backend", ["asm", "ucontext"])
def test_seed_style_server_on_both_backends(backend) -> None:
    proc = run_python(code=textwrap.dedent("""
        import fastco
        from fastco import socket, monkey
        monkey.patch_all()
        print(fastco.backend())
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        port = s.getsockname()[1]
        def handle(conn):
            while True:
                data = conn.recv(1024)
                if not data:
                    conn.close()
                    break
                conn.send(data)
        def serve():
            while True:
                cli, addr = s.accept()
                fastco.spawn(handle, cli)
        fastco.spawn(serve)
        import socket as std
        def client(i):
            c = std.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"%d" % i)
            assert c.recv(10) == b"%d" % i
            c.close()
        fastco.joinall([fastco.spawn(client, i) for i in range(20)], raise_error=True)
        print("OK")
    """), env={"FASTCO_BACKEND": backend}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [backend, "OK"]


def test_multiprocessing_connections_over_patched_sockets() -> None:
    # multiprocessing reads and writes its connections' fds as blocking ones;
    # fastco's sockets are non-blocking underneath.  Listener and Client
    # authenticate both ways between two tasks of one thread (each read
    # waits in the hub while the other task writes), a Manager's server
    # talks over a socket, and from 3.14 on the forkserver start method
    # (the default there) authenticates over one.
    out = _run("""
        from fastco import monkey
        monkey.patch_all()
        import multiprocessing, sys
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing.connection import Client, Connection, Listener
        import fastco

        def main():
            assert monkey.get_original("multiprocessing.connection.Connection", "_recv") \\
                is not Connection._recv
            with Listener(("127.0.0.1", 0), authkey=b"key") as listener:
                def client():
                    with Client(listener.address, authkey=b"key") as c:
                        c.send(c.recv().upper())
                task = fastco.spawn(client)
                with listener.accept() as conn:
                    conn.send("ping")
                    assert conn.recv() == "PING"
                task.join(timeout=30)
            for method in ("fork", "forkserver", "spawn"):
                ctx = multiprocessing.get_context(method)
                with ctx.Manager() as manager:
                    shared = manager.dict()
                    shared["method"] = method
                    assert dict(shared) == {"method": method}
                with ProcessPoolExecutor(2, mp_context=ctx) as pool:
                    assert list(pool.map(abs, [-1, -2, -3])) == [1, 2, 3], method
            print("OK")

        if __name__ == "__main__":
            main()
    """)
    assert out.strip() == "OK"


def test_multiprocessing_connection_patched_whenever_imported() -> None:
    # Imported before patching: patched at once; after: right after its
    # import, by a finder that leaves the module as the stdlib's loader made it.
    out = _run("""
        import multiprocessing.connection as mpc
        std_recv = mpc.Connection._recv
        from fastco import monkey
        from fastco import _mp_connection as co
        monkey.patch_socket()
        assert (mpc.Connection._recv, mpc.Connection._send) == (co._recv, co._send)
        assert monkey.get_original("multiprocessing.connection.Connection", "_recv") is std_recv
        print("OK")
    """)
    assert out.strip() == "OK"
    out = _run("""
        import importlib.machinery, sys
        from fastco import monkey
        monkey.patch_socket()
        assert "multiprocessing.connection" not in sys.modules
        import multiprocessing.connection as mpc
        from fastco import _mp_connection as co
        assert (mpc.Connection._recv, mpc.Connection._send) == (co._recv, co._send)
        std_recv = monkey.get_original("multiprocessing.connection.Connection", "_recv")
        assert std_recv.__module__ == "multiprocessing.connection" and std_recv is not co._recv
        assert isinstance(mpc.__loader__, importlib.machinery.SourceFileLoader)
        assert mpc.__spec__.loader is mpc.__loader__
        print("OK")
    """)
    assert out.strip() == "OK"
