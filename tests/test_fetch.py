"""Remote image URLs: off by default, never to private or loopback hosts, size-capped, redirects re-checked."""

import pytest

from gemfuse.config import ServerSettings
from gemfuse.errors import MessageError
from gemfuse.messages import ImagePart, Message
from gemfuse.serve.fetch import fetch_image, resolve_remote_images


def remote(url):
    return [Message("user", [ImagePart(url=url)])]


async def test_off_unless_enabled(upstream):
    with pytest.raises(MessageError, match=r"messages\[0\].content\[0\] \(image_url\): remote image URLs are off"):
        await resolve_remote_images(remote(upstream[0].replace("/v1", "/files/red.png")), ServerSettings())


async def test_loopback_and_private_targets_are_refused(upstream):
    settings = ServerSettings(allow_remote_images=True)
    for url in (upstream[0].replace("/v1", "/files/red.png"), "http://10.1.2.3/x.png", "http://[::1]:9/x.png",
                "http://169.254.169.254/latest/meta-data"):
        with pytest.raises(MessageError, match="private or local address"):
            await fetch_image(url, settings)
    with pytest.raises(MessageError, match="only http"):
        await fetch_image("file:///etc/passwd", settings)


async def test_fetching_with_limits(upstream):
    base = upstream[0].replace("/v1", "/files")
    settings = ServerSettings(allow_remote_images=True, allow_private_image_hosts=True, remote_image_max_mb=1)
    messages = await resolve_remote_images(remote(f"{base}/redirect"), settings)
    image = messages[0].images[0]
    assert image.mime_type == "image/png" and image.to_pil().size == (48, 48)
    with pytest.raises(MessageError, match="over the 1 MB limit"):
        await fetch_image(f"{base}/big.png", settings)
    with pytest.raises(MessageError, match="HTTP 404"):
        await fetch_image(base.replace("/files", "/nothing"), settings)
