"""vLLM's multimodal embedding inputs -> (text, image) items.

`/v1/embeddings` takes, besides strings and token ids, inputs made of content
parts as vLLM's pooling server does: `input` items that are lists of parts,
or a whole chat in `messages` (one input). A part is `{"type": "text",
"text": ...}` or `{"type": "image_url", "image_url": {"url": ...}}` (the url
a data: URI, base64, or an http(s) URL under the image fetch rules). Text
parts join with a newline; an input has at most one image. A system message's
text is the instruction for vision-language embedders (GME).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InvalidRequest


@dataclass(frozen=True)
class Item:
    text: str | None
    image: str | None  # the image string as sent: data: URI, base64 or URL


def is_parts(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(part, dict) for part in value)


def parts_item(parts: list, param: str) -> Item:
    texts, images = [], []
    for position, part in enumerate(parts):
        where = f"{param}[{position}]"
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(f"{where}.text must be a string", param=where)
            texts.append(text)
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str) or not url.strip():
                raise InvalidRequest(f"{where}.image_url.url must be a non-empty string", param=where)
            images.append(url)
        else:
            raise InvalidRequest(
                f'{where}: content parts are {{"type": "text"}} or {{"type": "image_url"}}, got type {kind!r}',
                param=where,
            )
    if len(images) > 1:
        raise InvalidRequest(f"{param} has {len(images)} images; an input embeds at most one", param=param)
    text = "\n".join(texts) if texts else None
    if not text and not images:
        raise InvalidRequest(f"{param} has neither text nor an image", param=param)
    return Item(text=text or None, image=images[0] if images else None)


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
