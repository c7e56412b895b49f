"""Property-based checks of the protocol layer: hostile bytes give a clear error, never a crash."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import BadRequest, Forbidden
from bot.wechat.crypto import MessageCrypto, parse_xml_fields, sign, signature_ok
from bot.wechat.messages import Inbound, parse_inbound, render_text_reply, strip_control
from tests.fakes.wechat_server import xml_message

KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CRYPTO = MessageCrypto("token", KEY, "wxfuzz")
# LINGBAO_FUZZ_EXAMPLES=5000 for a longer search than CI's.
FAST = settings(max_examples=int(os.environ.get("LINGBAO_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=2000))
def test_parse_arbitrary_bytes(body: bytes) -> None:
    try:
        assert isinstance(parse_inbound(body), Inbound)
    except BadRequest:
        pass


@FAST
@given(st.text(max_size=300), st.sampled_from(["text", "voice", "location", "event", "image", "link", "zzz"]))
def test_parse_message_with_arbitrary_fields(value: str, msg_type: str) -> None:
    xml = xml_message("oFuzz", msg_type, Content=value, Recognition=value, Label=value, Event=value or "click",
                      EventKey=value, Location_X=value, Location_Y=value, Title=value)
    try:
        msg = parse_inbound(xml)
    except BadRequest:
        return
    assert msg.openid == "oFuzz"


@FAST
@given(st.text(max_size=400))
def test_decrypt_arbitrary_ciphertext_with_valid_signature(ciphertext: str) -> None:
    signature = sign("token", "1", "n", ciphertext)
    try:
        CRYPTO.decrypt(ciphertext, signature, "1", "n")
    except (BadRequest, Forbidden):
        pass


@FAST
@given(st.text(max_size=100), st.text(max_size=50))
def test_signature_check_never_raises(expected: str, part: str) -> None:
    assert signature_ok(expected, "token", part, "n") in (True, False)


@FAST
@given(st.text(max_size=2000))
def test_reply_round_trips_any_text(text: str) -> None:
    msg = Inbound(account="gh_x]]>", openid="o]]>user", create_time=1, msg_type="text", text="x")
    rendered = render_text_reply(msg, text)
    fields = parse_xml_fields(rendered)
    assert fields["MsgType"] == "text" and fields["ToUserName"] == "o]]>user"
    assert (fields.get("Content") or "") == expected(text)


@FAST
@given(st.text(max_size=1000))
def test_encrypted_reply_decrypts_to_the_same_text(text: str) -> None:
    msg = Inbound(account="gh_x", openid="oUser", create_time=1, msg_type="text", text="x")
    envelope = parse_xml_fields(CRYPTO.encrypt(render_text_reply(msg, text), "nonce", "1700000000"))
    inner = CRYPTO.decrypt(str(envelope["Encrypt"]), str(envelope["MsgSignature"]), "1700000000", "nonce")
    assert (parse_xml_fields(inner).get("Content") or "") == expected(text)


def expected(text: str) -> str:
    """What an XML reader sees: line ends normalised, outer whitespace trimmed (as xmltodict does)."""
    return strip_control(text).replace("\r\n", "\n").replace("\r", "\n").strip()


def _xmltodict_fields(raw: bytes) -> dict[str, object] | None:
    """What parse_xml_fields gave before its fast path: xmltodict's ``<xml>`` dict (None where it refused)."""
    import xmltodict

    try:
        doc = xmltodict.parse(raw, disable_entities=True)
    except Exception:  # noqa: BLE001 - every refusal is one outcome here
        return None
    root = doc.get("xml") if isinstance(doc, dict) else None
    return root if isinstance(root, dict) else None


_TEXT = st.lists(st.sampled_from(list("ab 中文\n\t&<>]'\"") + ["]]>", "&amp;", "&#x4e2d;", "&lt;"]),
                 max_size=12).map("".join)
_CHILD = st.one_of(
    st.builds(lambda t, v: f"<{t}>{v}</{t}>", st.sampled_from(["A", "B", "Content", "x:y"]), _TEXT),
    st.builds(lambda t, v: f"<{t}><![CDATA[{v}]]></{t}>", st.sampled_from(["A", "B", "Content"]),
              _TEXT.map(lambda v: v.replace("]]>", ""))),
    st.builds(lambda t: f"<{t}/>", st.sampled_from(["A", "Empty"])),
    st.just("<A a='1'>v</A>"), st.just("<N><M>v</M></N>"), st.just("<!-- note -->"), st.just("<A>x<!--c-->y</A>"),
    _TEXT,  # text between the children
)


@FAST
@given(st.sampled_from(["<xml>", "<xml >", " <xml>", '<?xml version="1.0"?><xml>', "<xml a='1'>", "<xmlx>"]),
       st.lists(_CHILD, max_size=6))
def test_wechat_shaped_documents_parse_as_xmltodict_parses_them(start: str, children: list[str]) -> None:
    """The fast path for WeChat-shaped documents gives exactly xmltodict's fields, and anything else (nested,
    attributes, repeated or prefixed names, stray text, another start) goes to xmltodict itself."""
    end = "</xmlx>" if start == "<xmlx>" else "</xml>"
    raw = (start + "".join(children) + end).encode()
    expected = _xmltodict_fields(raw)
    try:
        fields = parse_xml_fields(raw)
    except BadRequest:
        assert expected is None
        return
    assert fields == expected
