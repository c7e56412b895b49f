"""The /wechat endpoint end to end: verification, modes, hostile input, every message type."""

from __future__ import annotations

import time

import pytest

from bot.settings import Settings
from bot.wechat.crypto import sign
from tests.conftest import TOKEN, Running, StartBot
from tests.fakes.wechat_server import event, text, xml_message

pytestmark = pytest.mark.databases


async def test_url_verification_echoes(bot: Running) -> None:
    params = bot.wechat.signed_params()
    async with bot.wechat.http.get(f"{bot.wechat.base}/wechat", params={**params, "echostr": "hello123"}) as r:
        assert (r.status, await r.text()) == (200, "hello123")


async def test_url_verification_bad_signature(bot: Running) -> None:
    params = {**bot.wechat.signed_params(), "signature": "0" * 40, "echostr": "x"}
    async with bot.wechat.http.get(f"{bot.wechat.base}/wechat", params=params) as r:
        assert r.status == 403


async def test_safe_mode_text_gets_encrypted_reply(bot: Running) -> None:
    reply = await bot.wechat.post(text("oUser1", "你好"))
    assert reply.status == 200
    assert "<Encrypt>" in reply.body
    assert reply.fields["ToUserName"] == "oUser1" and reply.fields["FromUserName"] == "gh_lingbao_test"
    assert "领保" in (reply.text or "")
    assert bot.count("messages", "direction='in' AND status='answered'") == 1


async def test_plaintext_mode(start_bot: StartBot, settings: Settings) -> None:
    running = await start_bot(settings.replace(encoding_aes_key=""))
    reply = await running.wechat.post(text("oPlain", "hello"))
    assert reply.status == 200 and "<Encrypt>" not in reply.body and reply.text


async def test_compatible_mode_body_is_accepted(bot: Running) -> None:
    """Compatible mode: plaintext fields and Encrypt together; the ciphertext is what counts."""
    inner = text("oCompat", "你好")
    crypto = bot.wechat.crypto
    assert crypto is not None
    ts, nonce = str(int(time.time())), "n1"
    envelope = crypto.encrypt(inner, nonce, ts)
    encrypted = envelope.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    body = inner.replace("</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    reply = await bot.wechat.post_raw(body.encode(), bot.wechat.signed_params(timestamp=ts, nonce=nonce,
                                                                            encrypted=encrypted))
    assert reply.status == 200 and reply.fields["ToUserName"] == "oCompat"


@pytest.mark.parametrize("change", ["signature", "msg_signature", "stale", "future", "missing"])
async def test_unverified_requests_are_403_and_store_nothing(bot: Running, change: str) -> None:
    crypto = bot.wechat.crypto
    assert crypto is not None
    ts = str(int(time.time()) + {"stale": -301, "future": 400}.get(change, 0))
    nonce = "abc"
    envelope = crypto.encrypt(text("oEvil", "hi"), nonce, ts)
    encrypted = envelope.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    params = {"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "encrypt_type": "aes",
              "msg_signature": sign(TOKEN, ts, nonce, encrypted)}
    if change == "signature":
        params["signature"] = "0" * 40
    elif change == "msg_signature":
        params["msg_signature"] = "0" * 40
    elif change == "missing":
        params.pop("signature")
    reply = await bot.wechat.post_raw(envelope.encode(), params)
    assert reply.status == 403
    assert bot.count("messages") == 0 and bot.count("users") == 0


async def test_plaintext_body_refused_in_safe_mode(bot: Running) -> None:
    reply = await bot.wechat.post_raw(text("oEvil", "hi").encode(), bot.wechat.signed_params())
    assert reply.status == 403 and bot.count("messages") == 0


async def test_body_over_one_mebibyte_is_413(bot: Running) -> None:
    reply = await bot.wechat.post_raw(b"<xml>" + b"a" * (1024 * 1024 + 10) + b"</xml>", bot.wechat.signed_params())
    assert reply.status == 413 and bot.count("messages") == 0


HOSTILE = {
    "not xml": b"this is not xml",
    "empty": b"",
    "truncated": b"<xml><Encrypt><![CDATA[abc",
    "wrong root": b"<root><Encrypt>abc</Encrypt></root>",
    "billion laughs": (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                       b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><xml>&lol2;</xml>'),
    "xxe": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>',
    "deep nesting": b"<xml>" + b"<a>" * 50000 + b"</a>" * 50000 + b"</xml>",
    "invalid utf-8": b"<xml><Encrypt>\xff\xfe\xfa</Encrypt></xml>",
    "nested Encrypt": b"<xml><Encrypt><a>1</a></Encrypt></xml>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_bodies_are_4xx_never_500(bot: Running, name: str) -> None:
    body = HOSTILE[name]
    encrypted = "abc"
    reply = await bot.wechat.post_raw(body, bot.wechat.signed_params(encrypted=encrypted))
    assert 400 <= reply.status < 500, reply.body
    assert bot.count("messages") == 0


async def test_bad_ciphertext_with_valid_signature_is_400(bot: Running) -> None:
    for encrypted in ("!!!notbase64", "QUJDRA==", "A" * 88):
        body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
        reply = await bot.wechat.post_raw(body, bot.wechat.signed_params(encrypted=encrypted))
        assert reply.status == 400, encrypted
    assert bot.count("messages") == 0


@pytest.mark.parametrize("inner", [
    "<xml><FromUserName>x</FromUserName></xml>",
    "<xml><MsgType>text</MsgType><FromUserName><a>1</a></FromUserName><CreateTime>1</CreateTime></xml>",
    "<xml><MsgType>text</MsgType><FromUserName>x</FromUserName><CreateTime>soon</CreateTime></xml>",
    "<xml><MsgType>location</MsgType><FromUserName>x</FromUserName><CreateTime>1</CreateTime>"
    "<Location_X>999</Location_X><Location_Y>1</Location_Y><MsgId>1</MsgId></xml>",
])
async def test_malformed_inner_message_is_400(bot: Running, inner: str) -> None:
    reply = await bot.wechat.post(inner)
    assert reply.status == 400 and bot.count("messages") == 0


async def test_cdata_terminator_in_reply_is_escaped(start_bot: StartBot, settings: Settings) -> None:
    running = await start_bot(settings.replace(encoding_aes_key=""))
    evil = "x]]><MsgType>news</MsgType><![CDATA["
    reply = await running.wechat.post(xml_message(evil, "text", Content="hi"))
    assert reply.status == 200
    assert reply.fields["ToUserName"] == evil and reply.fields["MsgType"] == "text"


async def test_voice_with_recognition_is_text(bot: Running) -> None:
    reply = await bot.wechat.post(xml_message("oVoice", "voice", MediaId="m", Format="amr", Recognition="你好"))
    assert reply.status == 200 and reply.text
    assert bot.rows("SELECT msg_type, text FROM messages WHERE direction='in'") == [("voice", "你好")]


async def test_voice_without_recognition_asks_to_type(bot: Running) -> None:
    reply = await bot.wechat.post(xml_message("oVoice", "voice", MediaId="m", Format="amr"))
    assert "打字" in (reply.text or "") and "12308" in (reply.text or "")


async def test_location_is_stored(bot: Running) -> None:
    reply = await bot.wechat.post(xml_message("oLoc", "location", Location_X=48.8566, Location_Y=2.3522, Scale=15,
                                              Label="Paris"))
    assert reply.status == 200
    assert bot.rows("SELECT latitude, longitude, location_label FROM users") == [(48.8566, 2.3522, "Paris")]


@pytest.mark.parametrize("kind,fields,word", [
    ("image", {"PicUrl": "http://x/p.jpg", "MediaId": "m"}, "图片"),
    ("video", {"MediaId": "m", "ThumbMediaId": "t"}, "视频"),
    ("shortvideo", {"MediaId": "m", "ThumbMediaId": "t"}, "视频"),
    ("link", {"Title": "t", "Description": "d", "Url": "http://x"}, "链接"),
])
async def test_media_is_acknowledged(bot: Running, kind: str, fields: dict[str, str], word: str) -> None:
    reply = await bot.wechat.post(xml_message("oMedia", kind, **fields))
    assert word in (reply.text or "") and "12308" in (reply.text or "")


async def test_subscribe_welcomes_with_12308(bot: Running) -> None:
    reply = await bot.wechat.post(event("oNew", "subscribe"))
    assert "+86-10-12308" in (reply.text or "") and "+86-10-65612308" in (reply.text or "")


async def test_unsubscribe_is_silent_and_recorded(bot: Running) -> None:
    await bot.wechat.post(event("oBye", "subscribe"))
    reply = await bot.wechat.post(event("oBye", "unsubscribe", create_time=int(time.time()) + 1))
    assert reply.body == "success"
    assert bot.rows("SELECT subscribed FROM users") == [(0,)]


async def test_location_event_is_stored_silently(bot: Running) -> None:
    reply = await bot.wechat.post(event("oLocEv", "LOCATION", Latitude=25.2048, Longitude=55.2708, Precision=30.0))
    assert reply.body == "success"
    assert bot.rows("SELECT latitude, longitude FROM users") == [(25.2048, 55.2708)]


async def test_click_event_is_answered(bot: Running) -> None:
    reply = await bot.wechat.post(event("oClick", "CLICK", EventKey="HUMAN"))
    assert reply.status == 200 and reply.text


async def test_unknown_message_type_is_acknowledged(bot: Running) -> None:
    reply = await bot.wechat.post(xml_message("oOdd", "hologram", Content="?"))
    assert reply.status == 200 and "12308" in (reply.text or "")


async def test_every_inbound_is_stored_before_answer(bot: Running) -> None:
    await bot.wechat.post(text("oStore", "第一条"))
    await bot.wechat.post(text("oStore", "第二条"))
    rows = bot.rows("SELECT text, status FROM messages WHERE direction='in' ORDER BY id")
    assert rows == [("第一条", "answered"), ("第二条", "answered")]
    assert bot.count("messages", "direction='out'") == 2


async def test_healthz(bot: Running) -> None:
    async with bot.wechat.http.get(f"{bot.wechat.base}/healthz") as r:
        data = await r.json()
    assert r.status == 200 and data["database"] == "ok"
