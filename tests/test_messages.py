import base64

import numpy as np
import pytest

from gemfuse.errors import MessageError
from gemfuse.messages import AudioPart, ImagePart, Message, TextPart, parse_messages
from gemfuse.testing.media import png_bytes, wav_bytes


def data_url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_openai_shape_round_trips_text_image_and_audio():
    raw = [{"role": "system", "content": "be brief"},
           {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                        {"type": "image_url", "image_url": {"url": data_url(png_bytes())}},
                                        {"type": "input_audio", "input_audio": {
                                            "data": base64.b64encode(wav_bytes()).decode(), "format": "wav"}}]}]
    messages = parse_messages(raw)
    assert [m.role for m in messages] == ["system", "user"]
    user = messages[1]
    assert isinstance(user.parts[0], TextPart) and user.text == "what is this?"
    assert user.images[0].mime_type == "image/png" and user.images[0].data == png_bytes()
    assert user.audio[0].format == "wav" and user.audio[0].data == wav_bytes()
    assert [m.to_openai() for m in messages] == raw


def test_http_image_urls_are_kept_as_urls():
    part = Message.from_openai({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}]}).images[0]
    assert part.url == "https://example.org/cat.png" and part.data is None
    with pytest.raises(MessageError, match="downloaded"):
        part.to_pil()


@pytest.mark.parametrize("part, message", [
    ({"type": "video", "video": {}}, r"messages\[0\].content\[1\]: unknown part type 'video'"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@"}}, r"content\[1\] \(image_url\).*base64"),
    ({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}, r"unsupported image type 'image/tiff'"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"not a png").decode()}},
     r"not a image/png image"),
    ({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}, r"http\(s\) or a data: URL"),
    ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "aiff"}}, r"unsupported format 'aiff'"),
    ({"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}, r"\(input_audio\).*base64"),
    ({"type": "input_audio", "input_audio": "AAAA"}, r"needs input_audio.data"),
    ({"type": "text", "text": 5}, r"\(text\): 'text' must be a string"),
])
def test_bad_parts_name_the_part(part, message):
    with pytest.raises(MessageError, match=message):
        parse_messages([{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}])


def test_bad_roles_and_shapes():
    with pytest.raises(MessageError, match=r"messages\[1\]: unknown role 'robot'"):
        parse_messages([{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}])
    with pytest.raises(MessageError, match="non-empty list"):
        parse_messages([])
    with pytest.raises(MessageError, match=r"messages\[0\].content: must be a string or a list"):
        parse_messages([{"role": "user", "content": 42}])


def test_local_files_load_and_bad_files_are_named(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(png_bytes())
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav_bytes())
    message = Message.user("look", images=[png], audio=[wav])
    assert [p.type for p in message.parts] == ["image", "audio", "text"]
    with pytest.raises(MessageError, match=r"image file .*missing.png: cannot read"):
        ImagePart.from_file(tmp_path / "missing.png")
    (tmp_path / "fake.png").write_bytes(b"GIF? no")
    with pytest.raises(MessageError, match=r"fake.png: not a PNG"):
        ImagePart.from_file(tmp_path / "fake.png")
    (tmp_path / "song.aiff").write_bytes(b"FORM....AIFF")
    with pytest.raises(MessageError, match=r"song.aiff: unsupported format"):
        AudioPart.from_file(tmp_path / "song.aiff")


def test_decoding_media():
    image = ImagePart(data=png_bytes(size=20), mime_type="image/png").to_pil()
    assert image.size == (20, 20) and image.mode == "RGB"
    wave = AudioPart(data=wav_bytes(seconds=1.0, rate=44_100), format="wav").to_waveform(16_000)
    assert wave.dtype == np.float32 and abs(len(wave) - 16_000) <= 2
    with pytest.raises(MessageError, match="cannot decode"):
        AudioPart(data=b"RIFF\x00\x00\x00\x00WAVEjunk", format="wav").to_waveform(16_000)
