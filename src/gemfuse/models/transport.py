"""HTTP for remote models: one aiohttp connection pool per (event loop, origin), shared by every model that
talks to that origin, so a pool of seven models on one provider opens its connections once.

aiohttp was chosen by measurement: at 64 concurrent fusions its C-parsed client costs a fraction of the CPU
of httpx's pool (see benchmarks/fusion_overhead.py). The models keep their own policy (retries, Retry-After,
typed errors, key scrubbing); this module only moves bytes, with connect and read (between bytes) timeouts.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

MAX_CONNECTIONS_PER_ORIGIN = 256
LINE_LIMIT = 2**22  # a server-sent event line (one JSON delta) may be long; aiohttp's default stops at 128 KiB


class TransportError(Exception):
    """The connection failed or was cut (`kind`: "connect", "cut"); nothing typed about the provider."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


class TransportTimeout(Exception):
    """Connect or read timeout (`phase`: "connect" or "read")."""

    def __init__(self, phase: str):
        super().__init__(phase)
        self.phase = phase


@dataclass
class _Pool:
    session: aiohttp.ClientSession
    users: int = 0


# Per event loop (weakly: a finished loop's pools go with it, and a later loop never finds them), then origin.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Pool]] = weakref.WeakKeyDictionary()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Response:
    """A response whose body has not been read yet: `read()` it whole or iterate `lines()`; then `close()`."""

    def __init__(self, raw: aiohttp.ClientResponse):
        self._raw = raw
        self.status = raw.status
        self.headers = raw.headers

    async def read(self) -> bytes:
        try:
            return await self._raw.read()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise TransportTimeout("read") from None
        except aiohttp.ClientError as exc:
            raise TransportError("cut", type(exc).__name__) from None

    async def lines(self) -> AsyncIterator[str]:
        content = self._raw.content
        while True:
            try:
                line = await content.readuntil(b"\n")
            except (TimeoutError, aiohttp.ServerTimeoutError):
                raise TransportTimeout("read") from None
            except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a line over LINE_LIMIT
                raise TransportError("cut", type(exc).__name__) from None
            if not line:
                return
            yield line.decode("utf-8", "replace").rstrip("\r\n")

    def close(self) -> None:
        self._raw.release()  # back to the pool when the body was read to its end; closed otherwise


class Client:
    """A model's handle on the shared pool of its base URL's origin."""

    def __init__(self, base_url: str, connect_s: float, read_s: float):
        self.base_url = base_url.rstrip("/") + "/"
        self.origin = origin(self.base_url)
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=read_s)
        self._loop: weakref.ref | None = None  # the loop whose pool this client holds a share of

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop() is not loop:
            self.release()
            pools = _pools.setdefault(loop, {})
            pool = pools.get(self.origin)
            if pool is None or pool.session.closed:
                connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS_PER_ORIGIN, ttl_dns_cache=300,
                                                 enable_cleanup_closed=True)
                pool = pools[self.origin] = _Pool(aiohttp.ClientSession(
                    connector=connector, read_bufsize=LINE_LIMIT, max_line_size=LINE_LIMIT,
                    max_field_size=LINE_LIMIT, auto_decompress=True))
            pool.users += 1
            self._loop = weakref.ref(loop)
        return _pools[loop][self.origin].session

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST and return once the status line and headers are in; the body is left to the caller."""
        try:
            raw = await self._session().post(self.base_url + path, data=body, headers=headers, timeout=self.timeout,
                                             allow_redirects=False)
        except (aiohttp.ConnectionTimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise TransportTimeout("connect" if isinstance(exc, aiohttp.ConnectionTimeoutError) else "read") from None
        except TimeoutError:
            raise TransportTimeout("read") from None
        except (aiohttp.ClientConnectorError, aiohttp.ClientOSError) as exc:
            raise TransportError("connect", type(exc).__name__) from None
        except aiohttp.ClientError as exc:  # ServerDisconnectedError, ClientPayloadError, ...
            raise TransportError("cut", type(exc).__name__) from None
        return Response(raw)

    def release(self) -> _Pool | None:
        """Stop using the pool; returns it when this was its last user (the caller may then close it)."""
        loop, self._loop = (self._loop() if self._loop else None), None
        pools = _pools.get(loop) if loop is not None else None
        pool = pools.get(self.origin) if pools else None
        if pool is None or pools is None:
            return None
        pool.users -= 1
        if pool.users > 0:
            return None
        del pools[self.origin]
        return pool

    async def aclose(self) -> None:
        """Stop using the pool; the last user closes it (on its own loop; another loop's sockets go with it)."""
        owner = self._loop() if self._loop else None
        pool = self.release()
        if pool is not None and owner is asyncio.get_running_loop():
            await pool.session.close()
