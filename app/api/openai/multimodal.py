"""vLLM's multimodal embedding inputs -> (text, image, clip, video) items.

`/v1/embeddings` takes, besides strings and token ids, inputs made of content
parts as vLLM's pooling server does: `input` items that are lists of parts,
or a whole chat in `messages` (one input). A part is `{"type": "text",
"text": ...}`, `{"type": "image_url", "image_url": {"url": ...}}` (the url
a data: URI, base64, or an http(s) URL under the image fetch rules),
`{"type": "audio_url", "audio_url": {"url": ...}}` or OpenAI's
`{"type": "input_audio", "input_audio": {"data": <base64>, "format": ...}}`,
or `{"type": "video_url", "video_url": {"url": ...}}`. Text parts join with a
newline; an input has at most one image, one clip and one video. A system
message's text is the instruction for vision-language embedders (GME).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InvalidRequest


@dataclass(frozen=True)
class Item:
    text: str | None
    image: str | None  # each medium's string as sent: data: URI, base64 or URL
    audio: str | None = None
    video: str | None = None

    def has_audio_or_video(self) -> bool:
        return self.audio is not None or self.video is not None


# A content part's type (also the key of its URL object) -> the medium
MEDIA_PARTS = {"image_url": "image", "audio_url": "audio", "video_url": "video"}


def is_parts(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(part, dict) for part in value)


def parts_item(parts: list, param: str) -> Item:
    texts, media = [], {"image": [], "audio": [], "video": []}
    for position, part in enumerate(parts):
        where = f"{param}[{position}]"
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(f"{where}.text must be a string", param=where)
            texts.append(text)
        elif kind in MEDIA_PARTS:
            medium, key = MEDIA_PARTS[kind], kind
            url = part.get(key)
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str) or not url.strip():
                raise InvalidRequest(f"{where}.{key}.url must be a non-empty string", param=where)
            media[medium].append(url)
        elif kind == "input_audio":
            audio = part.get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            if not isinstance(data, str) or not data.strip():
                raise InvalidRequest(f"{where}.input_audio.data must be base64 audio", param=where)
            media["audio"].append(data)
        else:
            raise InvalidRequest(
                f"{where}: content parts are text, image_url, audio_url, input_audio or video_url, got type {kind!r}",
                param=where,
            )
    for medium, values in media.items():
        if len(values) > 1:
            raise InvalidRequest(f"{param} has {len(values)} {medium} parts; an input embeds at most one", param=param)
    text = "\n".join(texts) if texts else None
    if not text and not any(media.values()):
        raise InvalidRequest(f"{param} has neither text nor an image, clip or video", param=param)
    first = {medium: values[0] if values else None for medium, values in media.items()}
    return Item(text=text or None, **first)


def input_items(values: list, field: str = "input") -> list[Item]:
    """`input` whose items are strings or lists of content parts."""
    items = []
    for index, value in enumerate(values):
        param = f"{field}[{index}]"
        if isinstance(value, str):
            if not value:
                raise InvalidRequest(f"{param} is an empty string", param=param)
            items.append(Item(text=value, image=None))
        elif is_parts(value):
            items.append(parts_item(value, param))
        else:
            raise InvalidRequest(f"{param} must be a string or a list of content parts", param=param)
    return items


def chat_item(messages, field: str = "messages") -> tuple[Item, str | None]:
    """A chat -> one input, and the system message's text (the instruction), if any."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(f"{field} must be a non-empty list of chat messages", param=field)
    parts, system = [], None
    for index, message in enumerate(messages):
        param = f"{field}[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{param} must be an object with role and content", param=param)
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not is_parts(content):
            raise InvalidRequest(f"{param}.content must be a string or a list of content parts", param=param)
        if message.get("role") == "system":
            system = "\n".join(part.get("text", "") for part in content if part.get("type") == "text")
        else:
            parts.extend(content)
    if not parts:
        raise InvalidRequest(f"{field} has no user content", param=field)
    return parts_item(parts, field), system
