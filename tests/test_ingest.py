"""Reading agency replies: keywords on the first line, signed reply addresses, quoted text.

The officer and leader keywords are the ones the forwarding and approval e-mails document;
a reply is parsed by the real e-mail channel, so quoted history never reaches the result.
"""
from __future__ import annotations

import base64
from datetime import date
from email.message import EmailMessage

import pytest

from channels.email import EmailChannel
from replies.ingest import RECIPIENT_HEADERS, read_reply
from replies.tokens import APPROVAL, RESULT, Token, Tokens

OUR = "phananh@ioc.example.vn"
TOKENS = Tokens("secret", OUR)


@pytest.mark.parametrize("body, kind, text, until", [
    ("Không thuộc thẩm quyền: đường do UBND phường quản lý", "not_ours", "đường do UBND phường quản lý", None),
    ("KHONG THUOC THAM QUYEN - do Điện lực xử lý", "not_ours", "do Điện lực xử lý", None),
    ("Not our jurisdiction: this is a provincial road", "not_ours", "this is a provincial road", None),
    ("Cần thêm thời gian đến 05/12/2026: chờ vật tư", "more_time", "05/12/2026: chờ vật tư", date(2026, 12, 5)),
    ("Need more time until 2026-12-05", "more_time", "2026-12-05", date(2026, 12, 5)),
    ("Đã vá ổ gà xong.\nẢnh đính kèm.", "result", "Đã vá ổ gà xong.\nẢnh đính kèm.", None),
    ("Không có gì bất thường khi kiểm tra", "result", "Không có gì bất thường khi kiểm tra", None),
])
def test_officer_keywords(body, kind, text, until):
    said = read_reply(body, "officer")
    assert (said.kind, said.text, said.until) == (kind, text, until)


@pytest.mark.parametrize("body, kind, text", [
    ("Duyệt", "approve", ""),
    ("approve", "approve", ""),
    ("Trả lại: bổ sung ảnh sau khi vá", "send_back", "bổ sung ảnh sau khi vá"),
    ("SEND BACK\nadd the completion date", "send_back", "add the completion date"),
    ("Sửa và duyệt: Đã vá ổ gà ngày 25/11.", "edit", "Đã vá ổ gà ngày 25/11."),
    ("Edit and approve: Pothole filled on 25/11.", "edit", "Pothole filled on 25/11."),
    ("Tôi sẽ xem lại sau", "unclear", "Tôi sẽ xem lại sau"),
    ("Duyệtxyz", "unclear", "Duyệtxyz"),
])
def test_leader_keywords(body, kind, text):
    said = read_reply(body, "leader")
    assert (said.kind, said.text) == (kind, text)


def test_token_round_trip_and_purpose():
    address = TOKENS.address("PA-2026-000123", RESULT)
    assert address.startswith("phananh+PA-2026-000123.r.") and address.endswith("@ioc.example.vn")
    assert TOKENS.find([f"Phản ánh <{address}>"]) == Token("PA-2026-000123", RESULT)
    assert TOKENS.find([address.lower()]) == Token("PA-2026-000123", RESULT)  # servers may lower-case
    found = TOKENS.find([TOKENS.address("PA-2026-000123", APPROVAL)])
    assert found is not None and found.purpose == APPROVAL


def test_forged_or_foreign_tokens_are_refused():
    good = TOKENS.address("PA-2026-000123", RESULT)
    other_case = good.replace("000123", "000124")
    other_purpose = good.replace(".r.", ".a.")
    other_secret = Tokens("another", OUR).address("PA-2026-000123", RESULT)
    other_domain = good.replace("@ioc.example.vn", "@evil.example.com")
    for address in (other_case, other_purpose, other_secret, other_domain, OUR, ""):
        assert TOKENS.find([address]) is None, address


@pytest.fixture(scope="module")
def channel() -> EmailChannel:
    async def no_media(file_id: str) -> bytes:
        raise LookupError(file_id)
    return EmailChannel(imap_host="unused", imap_port=0, imap_user="", imap_password="", imap_ssl=False,
                        smtp_host="unused", smtp_port=0, smtp_user=None, smtp_password=None,
                        address=OUR, display_name="IOC", media_loader=no_media)


def reply_mail(body: str, to: str) -> dict:
    mail = EmailMessage()
    mail["From"], mail["To"] = "Sở Xây dựng <xaydung@example.gov.vn>", to
    mail["Subject"] = "Re: [PA-2026-000123] Chuyển xử lý phản ánh: Ổ gà lớn"
    mail["Message-ID"], mail["In-Reply-To"] = "<r1@example.gov.vn>", "<fwd1@ioc.example.vn>"
    mail.set_content(body)
    mail.add_attachment(b"%PDF-1.4 cong van", maintype="application", subtype="pdf", filename="cong-van.pdf")
    return {"raw": base64.b64encode(mail.as_bytes()).decode(), "uid": 1}


@pytest.mark.parametrize("quote", [
    "Vào 09:00 Th 3, 24 thg 11, 2026 Trung tâm IOC <phananh@ioc.example.vn> đã viết:\n"
    "> Kính gửi: Sở Xây dựng\n> Nội dung: ổ gà",
    "On Tue, 24 Nov 2026 at 09:00, IOC <phananh@ioc.example.vn> wrote:\n> Kính gửi: Sở Xây dựng",
    "-----Original Message-----\nFrom: IOC\nSent: Tuesday\nKính gửi: Sở Xây dựng",
    "________________________________\nTừ: Trung tâm IOC\nĐã gửi: Thứ Ba\nKính gửi: Sở Xây dựng",
])
def test_reply_keeps_only_the_officers_words_and_its_token(channel, quote):
    address = TOKENS.address("PA-2026-000123", RESULT)
    inbound = channel.parse("<r1@example.gov.vn>", "xaydung@example.gov.vn",
                            reply_mail(f"Không thuộc thẩm quyền: do UBND phường quản lý\n\n{quote}\n", address))
    said = read_reply(inbound.text, "officer")
    assert (said.kind, said.text) == ("not_ours", "do UBND phường quản lý")
    assert TOKENS.find(inbound.context.get(h, "") for h in RECIPIENT_HEADERS) == Token("PA-2026-000123", RESULT)
