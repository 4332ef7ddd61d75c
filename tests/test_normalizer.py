"""The normalizer's text understanding, as the intake bot and the IOC clerk experience it."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cases.gazetteer import Commune
from normalizer.classify import classify
from normalizer.extract import (
    extract_address,
    extract_email,
    extract_name,
    extract_report_codes,
    match_commune,
)
from normalizer.phones import find_phones, parse_phone, phone_problem
from normalizer.signals import (
    Command,
    abusive,
    command,
    emergency,
    language,
    out_of_scope,
    parse_command,
)
from normalizer.text import clean, expand_abbreviations, fold, fold_aligned, title_case_name
from normalizer.understand import evaluate, understand

FIXTURES = Path(__file__).parent / "fixtures"
CASES = yaml.safe_load((FIXTURES / "messages_vi.yaml").read_text(encoding="utf-8"))
KEYWORDS = yaml.safe_load((FIXTURES / "field_keywords.yaml").read_text(encoding="utf-8"))
COMMUNES = [
    Commune("26734", "Phường Tân Phú", "Tỉnh Đồng Nai", aliases=("Phường Tân Phú cũ",)),
    Commune("26740", "Xã Tân Phú Trung", "Tỉnh Đồng Nai"),
    Commune("26750", "Phường Hòa Khánh", "Thành phố Đà Nẵng", aliases=("Phường Hòa Khánh Bắc",)),
    Commune("26760", "Phường 3", "Tỉnh Đồng Nai"),
]


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:40] for c in CASES])
def test_labelled_message(case):
    got = understand(case["text"], KEYWORDS).model_dump()
    wrong = {k: (got[k], want) for k, want in case["expect"].items() if got[k] != want}
    assert not wrong, f"(got, expected): {wrong}"


def test_accuracy_on_labelled_set(capsys):
    scores = evaluate(CASES, KEYWORDS)
    with capsys.disabled():
        print("\nnormalizer accuracy:", scores)
    assert scores["cases"] >= 60
    assert all(v >= 0.9 for k, v in scores.items() if k != "cases"), scores


def test_understand_splits_the_brief_example():
    u = understand("Tôi là Nguyễn Văn An, 0912 345 678, ổ gà lớn trước số 12 Hùng Vương, "
                   "phường Tân Phú", KEYWORDS, COMMUNES)
    assert (u.name, u.phone, u.field) == ("Nguyễn Văn An", "+84912345678", "transport")
    assert u.address == "số 12 Hùng Vương, phường Tân Phú"
    assert (u.commune, u.commune_code) == ("Phường Tân Phú", "26734")
    assert u.content == "ổ gà lớn trước số 12 Hùng Vương, phường Tân Phú"
    assert set(u.model_dump()) == {
        "name", "phone", "email", "address", "commune", "commune_code", "field",
        "field_confidence", "urgent", "emergency_number", "out_of_scope", "abusive",
        "language", "content"}


def test_content_drops_greetings_contacts_and_signature():
    u = understand("Kính gửi IOC,\nRác tồn đọng ở chợ Tân Phú.\nTrân trọng,\nLê Minh Tuấn\n"
                   "email: tuan.le@gmail.com", KEYWORDS)
    assert (u.name, u.email, u.content) == ("Lê Minh Tuấn", "tuan.le@gmail.com",
                                            "Rác tồn đọng ở chợ Tân Phú")
    assert understand("Xin chào ad", KEYWORDS).content is None


def test_urgent_follows_emergency():
    u = understand("Cháy nhà ở số 5 Lê Lợi, có người mắc kẹt", KEYWORDS)
    assert u.urgent and u.emergency_number == "114"


def test_fold_strips_marks_whatever_the_normal_form():
    nfd = unicodedata.normalize("NFD", "Đường  Trần PHÚ, Hoà")
    assert fold(nfd) == fold("Đường Trần Phú, hoà") == "duong tran phu, hoa"


def test_expand_abbreviations_spells_out_chat_shorthand():
    assert expand_abbreviations("sđt 0912345678, đc: đg Lê Lợi P.Tân Phú Q. 1 ko có đèn") == (
        "số điện thoại 0912345678, địa chỉ: đường Lê Lợi phường Tân Phú quận 1 không có đèn")
    assert expand_abbreviations("giá 5k") == "giá 5k"


def test_title_case_name():
    assert title_case_name("nguyễn văn an") == "Nguyễn Văn An"
    assert title_case_name("TRẦN THỊ BÍCH") == "Trần Thị Bích"


@pytest.mark.parametrize("typed", ["0912345678", "0912 345 678", "+84 912 345 678",
                                   "84912345678", "091.234.5678", "091-234-5678"])
def test_mobile_formats_parse_to_e164(typed):
    assert parse_phone(typed) == "+84912345678"


def test_landlines_parse():
    assert parse_phone("0236 3822 123") == "+842363822123"
    assert parse_phone("(028) 3829 1234") == "+842838291234"


@pytest.mark.parametrize("typed, reason", [
    ("+1 650 253 0000", "not_vietnamese"), ("+44 20 7946 0958", "not_vietnamese"),
    ("0912 345 67", "too_short"), ("091234567890123", "too_long"), ("0000000000", "invalid"),
    ("không có", "not_a_number"), ("", "empty")])
def test_bad_phones_are_refused_with_a_reason(typed, reason):
    assert parse_phone(typed) is None
    assert phone_problem(typed) == reason


def test_find_phones_ignores_codes_dates_and_house_numbers():
    text = ("Mã PA-2026-000123, ngày 12/05/2026 lúc 14:30, nhà số 123/4 đường 30 tháng 4, "
            "giá 1.200.000đ. Gọi 0912 345 678 hoặc 028 3829 1234")
    assert find_phones(text) == ["+84912345678", "+842838291234"]


@pytest.mark.parametrize("text, name", [
    ("toi la nguyen van an, o ga o duong tran phu", "Nguyen Van An"),
    ("Em tên Lê Thị Hoa sđt 0987654321", "Lê Thị Hoa"),
    ("Họ và tên: TRẦN VĂN BÌNH", "Trần Văn Bình"),
    ("Tôi là Dương Văn Minh, cây đổ ở đường Lê Lợi", "Dương Văn Minh"),
    ("Trân trọng,\nNguyễn Văn An", "Nguyễn Văn An"),
    ("Đèn hỏng.\nTrân trọng,\nNguyễn Văn An", "Nguyễn Văn An"),
    ("tôi là người dân phường Tân Phú", None), ("mình là hàng xóm", None),
    ("Em là Lan", None), ("ten days ago the road broke", None)])
def test_extract_name(text, name):
    assert extract_name(text) == name


def test_extract_email_and_report_codes():
    assert extract_email("mail: an.nguyen@gmail.com nhé") == "an.nguyen@gmail.com"
    assert extract_report_codes("PA-2026-000123, pa 2026 45 và pa2025-7") == [
        "PA-2026-000123", "PA-2026-000045", "PA-2025-000007"]


@pytest.mark.parametrize("text, address", [
    ("ổ gà ngõ 5 Lê Lợi, P. Tân Phú", "ngõ 5 Lê Lợi, phường Tân Phú"),
    ("rác ở đường Trần Phú thuộc xã Tân Lập", "đường Trần Phú thuộc xã Tân Lập"),
    ("o ga lon tren duong tran phu bi ngap", "duong tran phu"),
    ("đường xuống cấp nghiêm trọng", None)])
def test_extract_address_keeps_the_citizens_words(text, address):
    assert extract_address(text) == address


@pytest.mark.parametrize("text, code", [
    ("ổ gà ở P. Tân Phú", "26734"), ("rac o tan phu trung", "26740"),
    ("đèn hỏng ở Hòa Khánh Bắc", "26750"), ("ngập ở phường 3", "26760"),
    ("Tân Phụ", None), ("ở số 3 Lê Lợi", None)])
def test_match_commune_prefers_longest_name(text, code):
    found = match_commune(text, COMMUNES)
    assert (found.code if found else None) == code


def test_classify_weighs_phrases_and_folds_accents():
    assert classify("den duong hong ca tuan", KEYWORDS)[0] == "transport"
    assert classify("hôm nay trời đẹp", KEYWORDS) == ("other", 0.0)
    field, confidence = classify("rác thải đổ bừa bãi, mùi hôi thối", KEYWORDS)
    assert field == "environment" and 0.5 < confidence <= 1


@pytest.mark.parametrize("text, number", [
    ("nước thải chảy ra đường", None), ("bóng đèn bị cháy 3 hôm nay", None),
    ("ổ gà dễ gây tai nạn", None), ("cây đổ, không ai bị thương", None),
    ("đánh nhau, có người bị thương chảy máu", "115"), ("có trộm vào nhà", "113"),
    ("there is a fire near my hotel", "114"), ("người đuối nước ở hồ", "114")])
def test_emergency_number(text, number):
    assert emergency(text) == number


def test_out_of_scope_documented_choice():
    assert out_of_scope("tố cáo hàng xóm đổ rác")
    assert not out_of_scope("phản ánh và tố cáo việc đổ trộm phế thải")
    assert out_of_scope("I need legal advice about my lease")


@pytest.mark.parametrize("text, rude", [
    ("đ.m lũ ăn hại", True), ("bọn mày ngu vãi", True), ("v*c*l rác", True),
    ("ổ gà lớn quá", False), ("o ga lon qua", False), ("tối qua đi ngủ sớm", False),
    ("khách du lịch bị chèo kéo", False), ("đêm qua mất điện", False),
    ("buổi sáng các hộ dân đổ cho nhau", False)])
def test_abusive_keeps_precision(text, rude):
    assert abusive(text) is rude


@pytest.mark.parametrize("text, lang", [
    ("There is a broken street light near my hotel", "en"), ("den duong bi hong", "vi"),
    ("ok", "vi"), ("Đèn đường hỏng", "vi"), ("toi muon to cao can bo", "vi")])
def test_language(text, lang):
    assert language(text) == lang


@pytest.mark.parametrize("text, short", [
    ("bắt đầu lại", "restart"), ("/start", "restart"), ("start over", "restart"),
    ("huỷ giúp em ạ", "cancel"), ("thôi", "cancel"), ("/cancel", "cancel"),
    ("hướng dẫn", "help"), ("/help", "help"), ("ok gửi đi", "confirm"), ("Đồng ý", "confirm"),
    ("yes", "confirm"), ("không đúng", None), ("có ổ gà ở đây", None),
    ("giữ bí mật tên tôi giúp", "confidential"), ("keep my identity confidential", "confidential"),
    ("hài lòng", "rating:satisfied"), ("không hài lòng", "rating:not_satisfied"),
    ("chấp nhận được", "rating:acceptable"), ("not satisfied", "rating:not_satisfied"),
    ("sửa tên: Trần Văn Bình", "edit:name"), ("sửa lại địa chỉ số 5 Lê Lợi", "edit:address"),
    ("kiểm tra giúp em đèn đường hỏng ở Trần Phú", None)])
def test_command(text, short):
    assert command(text) == short


def test_parse_command_carries_values_and_codes():
    assert parse_command("sửa số điện thoại: 0987 654 321") == Command(
        "edit", field="phone", value="0987 654 321")
    assert parse_command("change my phone number to +84 912 345 678") == Command(
        "edit", field="phone", value="+84 912 345 678")
    assert parse_command("tra cứu pa 2026 123") == Command("status", code="PA-2026-000123")
    assert parse_command("/status") == Command("status")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_nothing_crashes_on_arbitrary_text(text):
    assert fold(fold(text)) == fold(text)
    assert len(fold_aligned(text)) == len(clean(text))
    understand(text, KEYWORDS, COMMUNES)
    for fn in (parse_phone, phone_problem, find_phones, extract_name, extract_address,
               extract_report_codes, parse_command, command, expand_abbreviations):
        fn(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("aăâeêioôơuưyđĐÁÀẢÃẠáàảãạ̣́̀ NnGg0123.,-+")))
def test_vietnamese_like_text_folds_idempotently(text):
    assert fold(fold(text)) == fold(text)
    assert fold(text).isascii(), "Vietnamese letters must fold to plain ASCII"
