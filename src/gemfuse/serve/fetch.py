"""Fetching http(s) image URLs for local models, safely: off unless enabled, a size cap, and no requests to
loopback, private, link-local or otherwise internal addresses (checked for every address the name resolves to,
and again on every redirect)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

from ..config import ServerSettings
from ..errors import MessageError
from ..messages import ImagePart, Message, sniff_image

MAX_REDIRECTS = 3


async def _check_host(url: str, settings: ServerSettings) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MessageError(f"image_url {url[:80]}: only http(s) URLs can be fetched")
    if settings.allow_private_image_hosts:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise MessageError(f"image_url {url[:80]}: host {parts.hostname!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise MessageError(f"image_url {url[:80]}: {parts.hostname} is a private or local address; "
                               "the server does not fetch from those")


async def fetch_image(url: str, settings: ServerSettings) -> ImagePart:
    limit = int(settings.remote_image_max_mb * 1024 * 1024)
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            await _check_host(url, settings)
            async with client.stream("GET", url) as response:
                if response.is_redirect and response.headers.get("location"):
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise MessageError(f"image_url {url[:80]}: fetch failed with HTTP {response.status_code}")
                declared = int(response.headers.get("content-length") or 0)
                if declared > limit:
                    raise MessageError(f"image_url {url[:80]}: {declared} bytes is over the "
                                       f"{settings.remote_image_max_mb:g} MB limit")
                data = bytearray()
                async for piece in response.aiter_bytes():
                    data += piece
                    if len(data) > limit:
                        raise MessageError(f"image_url {url[:80]}: over the {settings.remote_image_max_mb:g} MB limit")
                mime = sniff_image(bytes(data))
                if mime is None:
                    raise MessageError(f"image_url {url[:80]}: the response is not a PNG, JPEG, WebP, GIF or BMP image")
                return ImagePart(data=bytes(data), mime_type=mime)
        raise MessageError(f"image_url {url[:80]}: too many redirects")


async def resolve_remote_images(messages: list[Message], settings: ServerSettings) -> list[Message]:
    """Replace http(s) image parts by their bytes, or refuse them when fetching is off."""
    out = []
    for i, message in enumerate(messages):
        parts = []
        for j, part in enumerate(message.parts):
            if isinstance(part, ImagePart) and part.url:
                if not settings.allow_remote_images:
                    raise MessageError(f"messages[{i}].content[{j}] (image_url): remote image URLs are off on this "
                                       "server; send a data: URL, or set server.allow_remote_images = true")
                part = await fetch_image(part.url, settings)
            parts.append(part)
        out.append(Message(message.role, parts))
    return out
