"""A loopback TCP proxy that resets connections in the middle of a response (DATA.md section 5's design).

After ``cut_after`` bytes have gone downstream on a connection it closes both sides with SO_LINGER(1, 0), which
sends a RST: the client sees a connection reset in the middle of an object body. ``max_cuts`` bounds the damage;
``cuts``, ``connections`` and ``downstream`` (bytes sent to clients) count what happened. One thread per
connection, so the cut really resets the socket.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading


class LoopbackProxy:
    """A TCP proxy on 127.0.0.1 to ``target_port``, a thread per connection; :meth:`_serve` handles one."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            ready, _, _ = select.select([self._server], [], [], 0.1)
            if not ready:
                continue
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopped.set()
        self._server.close()
        self._thread.join(timeout=5)


class CutProxy(LoopbackProxy):
    def __init__(self, target_port: int, cut_after: int | None, max_cuts: int = 1_000_000) -> None:
        self.cut_after, self.max_cuts = cut_after, max_cuts
        self.cuts = 0
        self.downstream = 0
        super().__init__(target_port)

    def _should_cut(self, sent: int) -> bool:
        if self.cut_after is None or sent < self.cut_after:
            return False
        with self._lock:
            if self.cuts >= self.max_cuts:
                return False
            self.cuts += 1
            return True

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        sent = 0
        try:
            while not self._stopped.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        if self.cut_after is not None and sent + len(data) >= self.cut_after:
                            data = data[: max(self.cut_after - sent, 0)]
                            self._count(len(data))  # before sending: a reader may finish before we return
                            client.sendall(data)
                            sent += len(data)
                            if self._should_cut(sent):
                                _reset(client)
                                return
                            continue
                        self._count(len(data))
                        client.sendall(data)
                        sent += len(data)
                    else:
                        upstream.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def _count(self, size: int) -> None:
        with self._lock:
            self.downstream += size


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
