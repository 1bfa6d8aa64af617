"""A TCP proxy on loopback that the test controls: the way to cut Redis off without iptables.

Clients connect to ``proxy.url`` instead of Redis. Three states:

* ``open``: bytes flow both ways.
* ``blackhole()``: a network partition. Connections stay up and new ones are accepted (the
  kernel completes the handshake), but no byte is forwarded in either direction; what was sent
  is held and delivered on ``heal()``, as TCP retransmission would after a short cut. A client
  without a read timeout simply waits.
* ``reset()``: every connection is closed and new ones are closed at once, as when the server
  is gone (connection refused / reset by peer).

Two threads per connection pump the bytes; the threads and sockets are the proxy's own and are
all closed by ``close()``.
"""

from __future__ import annotations

import contextlib
import socket
import threading

CHUNK = 65536
ACCEPT_POLL_S = 0.1


class Proxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(ACCEPT_POLL_S)
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.refusing = False
        self.closed = False
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept_loop, name="chaos-proxy", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def blackhole(self) -> None:
        self.flowing.clear()

    def reset(self) -> None:
        self.refusing = True
        self._close_conns()

    def heal(self) -> None:
        self.refusing = False
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.flowing.set()
        self._close_conns()
        self.listener.close()
        self.thread.join(5)

    def _close_conns(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            self.accepted += 1
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.flowing.wait()
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        with self.lock:
            self.conns += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                self.flowing.wait()
                if self.closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self.lock:
                if src in self.conns:
                    self.conns.remove(src)
            src.close()  # each socket is the source of exactly one pump, so closed once
