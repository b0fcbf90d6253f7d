"""A loopback proxy in front of moto that makes it an S3 server which stores request bodies as sent.

Servers such as s3rver (npm), older Ceph and others do not decode the aws-chunked framing that newer AWS SDKs use
for streaming checksums (``6A0\\r\\n{...}\\r\\n0\\r\\nx-amz-checksum-crc32:...``): they store the framing as the
object. moto decodes it when ``x-amz-content-sha256`` says the body is streamed, so this proxy says it is not
(``UNSIGNED-PAYLOAD``; moto checks no signatures) and moto stores what it was sent. Each connection carries one
request (``Connection: close`` is added), so only the first request head on a connection is rewritten and the rest
is piped as it comes. ``streamed`` counts the requests whose framing went through undecoded.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket

from tests.data.faultproxy import LoopbackProxy

_STREAMED = re.compile(rb"(?im)^x-amz-content-sha256:[ \t]*STREAMING-[^\r\n]*\r\n")
_CONNECTION = re.compile(rb"(?im)^connection:[^\r\n]*\r\n")


class RawBodyProxy(LoopbackProxy):
    def __init__(self, target_port: int) -> None:
        self.streamed = 0
        super().__init__(target_port)

    def _head(self, client: socket.socket) -> bytes:
        """The request head (and whatever body bytes came with it), rewritten."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        head += b"\r\n"
        head, streamed = _STREAMED.subn(b"x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n", head)
        if streamed:
            with self._lock:
                self.streamed += 1
        head = _CONNECTION.sub(b"", head) + b"Connection: close\r\n"
        return head + b"\r\n" + rest

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            upstream.sendall(self._head(client))
            while not self._stopped.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (client if sock is upstream else upstream).sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
