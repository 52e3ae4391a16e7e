"""A PostgreSQL-aware TCP proxy on loopback for fault tests.

It forwards the wire protocol between a client and the real server and can:

- cut the next ``COMMIT`` (``arm_commit_cut``): either after the server answered it, so the
  commit is durable and its answer is lost (``after_reply=True``), or before forwarding it, so
  the transaction never commits (``after_reply=False``); the connection is closed both ways;
- stop reaching the database (``go_down``): every connection is closed and new ones are refused
  until ``come_up``.

It answers an SSL request with "no" itself, so the stream it sees is plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    cut_after_reply: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for w in (self.client, self.server):
            with contextlib.suppress(Exception):
                w.transport.abort()


class PgProxy:
    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._armed: bool | None = None  # None: no cut; True: after the reply; False: before
        self.cuts = 0
        self.commits = 0

    async def start(self) -> PgProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        await self.go_down()

    def arm_commit_cut(self, *, after_reply: bool = True) -> None:
        self._armed = after_reply

    async def go_down(self) -> None:
        """The database becomes unreachable: connections cut, new ones refused."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for c in list(self._conns):
            c.close()
        self._conns.clear()

    async def come_up(self) -> None:
        if self._server is None:
            await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            startup = await self._startup(reader, writer)
            if startup is None:
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except Exception:  # noqa: BLE001 - a client that went away during the start-up
            writer.transport.abort()
            return
        conn = _Conn(writer, up_writer)
        self._conns.add(conn)
        up_writer.write(startup)
        conn.tasks = [
            asyncio.create_task(self._client_to_server(conn, reader)),
            asyncio.create_task(self._server_to_client(conn, up_reader)),
        ]
        await asyncio.gather(*conn.tasks, return_exceptions=True)
        conn.close()
        self._conns.discard(conn)

    async def _startup(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
        while True:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            rest = await reader.readexactly(length - 8)
            if code in (_SSL_REQUEST, _GSS_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            return head + rest

    async def _client_to_server(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind = await reader.readexactly(1)
                (length,) = struct.unpack("!i", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if kind == b"Q" and body.lstrip().upper().startswith(b"COMMIT"):
                    self.commits += 1
                    if self._armed is not None:
                        after, self._armed = self._armed, None
                        self.cuts += 1
                        if not after:  # the COMMIT never reaches the server
                            conn.close()
                            return
                        conn.cut_after_reply = True
                conn.server.write(kind + struct.pack("!i", length) + body)
                await conn.server.drain()
        except Exception:  # noqa: BLE001 - either side closed
            conn.close()

    async def _server_to_client(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind = await reader.readexactly(1)
                (length,) = struct.unpack("!i", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                if conn.cut_after_reply:
                    if kind == b"Z":  # the server finished answering the COMMIT: it is durable
                        conn.close()
                        return
                    continue  # the answer is lost
                conn.client.write(kind + struct.pack("!i", length) + body)
                await conn.client.drain()
        except Exception:  # noqa: BLE001 - either side closed
            conn.close()
