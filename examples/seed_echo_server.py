"""The seed tutorial's concurrent echo server, running on fastco.

The seed's program with ``from fastco import socket, monkey`` instead of
gevent's, ``fastco.spawn`` for ``gevent.spawn``, and its ``coon`` typo fixed
(``conn.send``).  Each client gets its own task; ``accept`` and ``recv``
("time-consuming operations") suspend only the task that calls them.

    python examples/seed_echo_server.py [port [host]]

(port 7788 and all interfaces by default, as in the seed.)
"""

import sys  # noqa: I001 - the seed's import lines, as they were

import fastco

# 利用协程实现并发服务器
from fastco import socket, monkey

monkey.patch_all()  # 底层修改源代码  实现协程相关功能


def handle_request(conn):
    while True:
        recvData = conn.recv(1024)  # 耗时操作
        if not recvData:
            conn.close()
            print("client was closed")
            break
        print("recv:", recvData)
        conn.send(recvData)


def sever(port, host=""):
    s = socket.socket()
    s.bind((host, port))
    s.listen(5)
    while True:
        cli, addr = s.accept()  # 耗时操作
        print("new client from [%s] " % str(addr))  # noqa: UP031 - the seed's line
        # 遇到耗时操作自动切换协程
        fastco.spawn(handle_request, cli)


if __name__ == '__main__':
    sever(int(sys.argv[1]) if len(sys.argv) > 1 else 7788,
          sys.argv[2] if len(sys.argv) > 2 else "")
