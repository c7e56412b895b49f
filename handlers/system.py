"""Handlers for what is not free text: follow, menu clicks, locations, media, silent events."""

from __future__ import annotations

from handlers.base import Outcome, Turn
from handlers.texts import CAPABILITIES_EN, CAPABILITIES_ZH, hotline, pick

WELCOME_ZH = (
    "您好，欢迎关注领保！\n\n" + CAPABILITIES_ZH + "\n\n"
    "遇到危险请先拨打当地报警或急救电话。\n"
    "{hotline}\n\n"
    "直接用文字告诉我您在哪个国家、发生了什么，也可以发送位置。"
)
WELCOME_EN = (
    "Welcome to Lingbao!\n\n" + CAPABILITIES_EN + "\n\n"
    "If you are in danger, call the local police or ambulance first.\n"
    "{hotline}\n\n"
    "Tell me which country you are in and what happened, or send your location."
)

MEDIA_ZH = "收到您发的{kind}，但我目前只能读懂文字和位置。请用文字描述您的情况，或发送位置。\n紧急情况请先拨打当地报警电话。\n{hotline}"
MEDIA_EN = ("I received your {kind}, but I can only read text and locations for now. Please describe your "
            "situation in words, or send your location.\nIn an emergency call local police first.\n{hotline}")
MEDIA_KINDS = {"image": ("图片", "picture"), "video": ("视频", "video"), "shortvideo": ("视频", "video"),
               "link": ("链接", "link"), "unknown": ("消息", "message")}

VOICE_ZH = "抱歉，这条语音我没能识别出文字。请打字告诉我发生了什么、您在哪个国家。\n紧急情况请先拨打当地报警电话。\n{hotline}"
VOICE_EN = ("Sorry, I couldn't make out that voice message. Please type what happened and which country you "
            "are in.\nIn an emergency call local police first.\n{hotline}")


async def welcome(turn: Turn) -> Outcome:
    """A new follower: what Lingbao does and the 12308 numbers."""
    text = pick(turn.english, WELCOME_ZH, WELCOME_EN).format(hotline=hotline(turn.english))
    return Outcome([text], handler="welcome")


async def silent(turn: Turn) -> Outcome:
    """Events that get no reply (unsubscribe, background LOCATION reports, menu links)."""
    return Outcome([], handler="silent")


async def media(turn: Turn) -> Outcome:
    """Pictures, videos, links: acknowledge and say what the bot can do."""
    zh, en = MEDIA_KINDS.get(turn.message.msg_type, MEDIA_KINDS["unknown"])
    text = pick(turn.english, MEDIA_ZH.format(kind=zh, hotline=hotline(False)),
                MEDIA_EN.format(kind=en, hotline=hotline(True)))
    return Outcome([text], handler="media")


async def unrecognised_voice(turn: Turn) -> Outcome:
    """Voice without WeChat's recognition text: ask the person to type."""
    text = pick(turn.english, VOICE_ZH, VOICE_EN).format(hotline=hotline(turn.english))
    return Outcome([text], handler="voice")
