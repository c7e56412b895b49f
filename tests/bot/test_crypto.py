"""Signatures and safe-mode crypto against WeChat's official test vectors."""

from __future__ import annotations

import pytest

from bot.errors import BadRequest, Forbidden
from bot.wechat.crypto import MessageCrypto, check_request, envelope_ciphertext, parse_xml_fields, sign
from bot.wechat.messages import parse_inbound

# (1) Official Tencent sample (Sample.py by jonyqin), verbatim.
T_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
T_TOKEN, T_NONCE, T_APPID, T_TS = "spamtest", "1320562132", "wx2c2769f8efd9abc2", "1409735669"
T_MSG_SIGN = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
T_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2L"
    "dJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6u"
    "x5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJ"
    "pXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCz"
    "pu9GhglF2PE="
)
T_GET_SIGNATURE = "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"

# (2) Official Java sample test (WXBizMsgCryptTest), deterministic encryption.
J_TOKEN, J_TS, J_NONCE, J_APPID = "pamtest", "1409304348", "xxxxxx", "wxb11529c136998cb6"
J_RANDOM = "aaaabbbbccccdddd"
J_REPLY = "我是中文abcd123"
J_ENCRYPTED = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="

# (3) wechatpy v1.8.18 tests/test_crypto.py (same envelope, enterprise ids).
W_TOKEN, W_KEY, W_ID = "123456", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wx49f0ab532d5d035a"
W_SIGNATURE, W_TS, W_NONCE = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294"
W_ENCRYPT = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283d"
    "Gymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwB"
    "iT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54S"
    "NdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91"
    "eBdCRxthuL0="
)
W_REPLY = ("<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
           "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n"
           "<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>")
W_REPLY_ENCRYPT = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURn"
    "AtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oy"
    "KQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkd"
    "Q39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
)
W_REPLY_SIGNATURE = "407518b7649e86ef23978113f92d27afa9296533"


def test_tencent_sample_url_signature() -> None:
    assert sign(T_TOKEN, T_TS, T_NONCE) == T_GET_SIGNATURE


def test_wechatpy_plain_signature_vector() -> None:
    assert sign("test", "1410685589", "test") == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"


def test_tencent_sample_decrypts() -> None:
    crypto = MessageCrypto(T_TOKEN, T_KEY, T_APPID)
    xml = crypto.decrypt(T_ENCRYPT, T_MSG_SIGN, T_TS, T_NONCE)
    msg = parse_inbound(xml)
    assert (msg.openid, msg.text, msg.msg_id) == ("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "abcdteT", "6054768590064713728")
    assert msg.account == "gh_10f6c3c3ac5a" and msg.create_time == 1409735668


def test_java_sample_encrypts_deterministically() -> None:
    crypto = MessageCrypto(J_TOKEN, T_KEY, J_APPID)
    envelope = crypto.encrypt(J_REPLY, J_NONCE, J_TS, random_prefix=J_RANDOM)
    encrypted = envelope_ciphertext(envelope.encode())
    assert encrypted == J_ENCRYPTED
    fields = parse_xml_fields(envelope)
    assert fields["MsgSignature"] == sign(J_TOKEN, J_TS, J_NONCE, J_ENCRYPTED)
    assert crypto.decrypt(encrypted, str(fields["MsgSignature"]), J_TS, J_NONCE) == J_REPLY


def test_wechatpy_vectors_decrypt_and_encrypt() -> None:
    crypto = MessageCrypto(W_TOKEN, W_KEY, W_ID)
    msg = parse_inbound(crypto.decrypt(W_ENCRYPT, W_SIGNATURE, W_TS, W_NONCE))
    assert (msg.text, msg.openid) == ("test", "messense")
    envelope = parse_xml_fields(crypto.encrypt(W_REPLY, W_NONCE, W_TS, random_prefix="1234567890123456"))
    assert envelope["Encrypt"] == W_REPLY_ENCRYPT
    assert envelope["MsgSignature"] == W_REPLY_SIGNATURE


def test_bad_msg_signature_is_forbidden() -> None:
    crypto = MessageCrypto(T_TOKEN, T_KEY, T_APPID)
    with pytest.raises(Forbidden):
        crypto.decrypt(T_ENCRYPT, "0" * 40, T_TS, T_NONCE)
    with pytest.raises(Forbidden):
        crypto.decrypt(T_ENCRYPT, T_MSG_SIGN, T_TS, "other-nonce")


@pytest.mark.parametrize("ciphertext", ["not base64 at all!!", "QUJD", "A" * 64, ""])
def test_bad_ciphertext_is_bad_request(ciphertext: str) -> None:
    crypto = MessageCrypto(T_TOKEN, T_KEY, T_APPID)
    signature = sign(T_TOKEN, T_TS, T_NONCE, ciphertext)
    with pytest.raises((BadRequest, Forbidden)):
        crypto.decrypt(ciphertext, signature, T_TS, T_NONCE)


def test_ciphertext_for_another_app_is_refused() -> None:
    crypto = MessageCrypto(T_TOKEN, T_KEY, "wx_some_other_app")
    with pytest.raises(BadRequest, match="AppID"):
        crypto.decrypt(T_ENCRYPT, T_MSG_SIGN, T_TS, T_NONCE)


def test_timestamp_window() -> None:
    signature = sign(T_TOKEN, T_TS, T_NONCE)
    check_request(T_TOKEN, signature, T_TS, T_NONCE, tolerance=300, now=int(T_TS) + 299)
    with pytest.raises(Forbidden, match="stale"):
        check_request(T_TOKEN, signature, T_TS, T_NONCE, tolerance=300, now=int(T_TS) + 301)
    with pytest.raises(Forbidden, match="signature"):
        check_request(T_TOKEN, "f" * 40, T_TS, T_NONCE, tolerance=300, now=int(T_TS))
