"""Inbound WeChat messages as frozen dataclasses, and passive text replies."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from wechatpy.replies import TextReply

from bot.errors import BadRequest
from bot.wechat.crypto import cdata_safe, parse_xml_fields

MAX_TEXT = 4000
KNOWN_TYPES = frozenset({"text", "voice", "location", "image", "video", "shortvideo", "link", "event"})


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message or event pushed by WeChat, with fields checked for type."""

    account: str
    openid: str
    create_time: int
    msg_type: str
    msg_id: str | None = None
    text: str | None = None
    event: str | None = None
    event_key: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    label: str | None = None
    media_id: str | None = None
    url: str | None = None

    @property
    def channel_key(self) -> str:
        """Dedup key: ``MsgId``; for events the sender, time and event name."""
        if self.msg_id:
            return f"m:{self.msg_id}"
        return f"e:{self.openid}:{self.create_time}:{self.event or ''}"

    @property
    def kind(self) -> str:
        """``text``/``voice``/… or ``event:<name>``."""
        return f"event:{self.event}" if self.msg_type == "event" else self.msg_type


def parse_inbound(xml: bytes | str) -> Inbound:
    """Parse and type-check a plaintext WeChat message; BadRequest if it is not one."""
    fields = parse_xml_fields(xml)
    msg_type = _text(fields, "MsgType", required=True).lower()
    openid = _text(fields, "FromUserName", required=True)
    if len(openid) > 128:
        raise BadRequest("FromUserName too long")
    try:
        create_time = int(_text(fields, "CreateTime", required=True))
    except ValueError:
        raise BadRequest("CreateTime is not an integer") from None
    base = {
        "account": _text(fields, "ToUserName") or "",
        "openid": openid,
        "create_time": create_time,
        "msg_type": msg_type if msg_type in KNOWN_TYPES else "unknown",
        "msg_id": _text(fields, "MsgId") or _text(fields, "MsgID") or None,
        "media_id": _text(fields, "MediaId") or None,
    }
    if msg_type == "text":
        return Inbound(**base, text=_clip(_text(fields, "Content") or ""))
    if msg_type == "voice":
        return Inbound(**base, text=_clip(_text(fields, "Recognition") or "") or None)
    if msg_type == "location":
        return Inbound(**base, latitude=_coord(fields, "Location_X", 90), longitude=_coord(fields, "Location_Y", 180),
                       label=_clip(_text(fields, "Label") or "") or None)
    if msg_type == "link":
        return Inbound(**base, text=_clip(_text(fields, "Title") or "") or None, url=_text(fields, "Url") or None)
    if msg_type == "event":
        event = (_text(fields, "Event", required=True)).lower()
        if event == "location":
            return Inbound(**base, event=event, latitude=_coord(fields, "Latitude", 90),
                           longitude=_coord(fields, "Longitude", 180))
        return Inbound(**base, event=event, event_key=_text(fields, "EventKey") or None)
    return Inbound(**base)


def render_text_reply(message: Inbound, text: str, now: int | None = None) -> str:
    """A passive text reply to ``message``; ``]]>`` in the text cannot break out of CDATA."""
    reply = TextReply(
        source=cdata_safe(message.account),
        target=cdata_safe(message.openid),
        content=cdata_safe(strip_control(text)),
        time=now if now is not None else int(time.time()),
    )
    return reply.render()


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def strip_control(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (C0 controls except tab/newline, lone surrogates)."""
    return _NOT_XML.sub("", text)


def _text(fields: dict[str, object], name: str, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if value is None:
        if required:
            raise BadRequest(f"missing {name}")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be text")
    return value


def _coord(fields: dict[str, object], name: str, limit: float) -> float | None:
    raw = _text(fields, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} is not a number") from None
    if not -limit <= value <= limit:
        raise BadRequest(f"{name} out of range")
    return value


def _clip(text: str) -> str:
    return strip_control(text.replace("\x00", ""))[:MAX_TEXT]
