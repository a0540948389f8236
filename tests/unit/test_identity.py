"""Identity numbers (GB 32100-2015, GB 11714, GB 11643-1999) and subject matching."""

from __future__ import annotations

import string
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.identity import (
    USCC_ALPHABET,
    Subject,
    SubjectMismatch,
    displayed_name,
    is_valid_resident_id,
    is_valid_subject_code,
    is_valid_uscc,
    mask_identifier,
    normalise_code,
    normalise_subject_name,
    organisation_code_check_char,
    resident_id_check_char,
    subject_mismatches,
    uscc_check_char,
)

# -- published vectors ----------------------------------------------------------

# Unified social credit codes:
# - 91350100M000100Y43: the worked example of the GB 32100-2015 check-character
#   calculation (the standard's example feeds "91350100M000100Y4Z" and computes
#   the check character 3), reproduced e.g. at renrendoc.com/p-47802332.html.
# - 914403001922038216: Huawei Technologies Co., Ltd., as published in the
#   National Enterprise Credit Information Publicity System (and widely used as
#   a known-valid vector in public validator test suites).
# - 91110108551385082Q: Xiaomi Technology Co., Ltd., same public register.
VALID_USCC = ["91350100M000100Y43", "914403001922038216", "91110108551385082Q"]

# Resident identity numbers: the two examples of GB 11643-1999, Appendix A
# (zh.wikisource.org/wiki/GB_11643-1999_公民身份号码): a woman born 1949-12-31 in
# Chaoyang, Beijing, and a man born 1880-01-01 in Chaoyang county, Shantou.
VALID_RESIDENT_IDS = ["11010519491231002X", "440524188001010014"]


@pytest.mark.parametrize("code", VALID_USCC)
def test_published_credit_codes_are_valid(code: str) -> None:
    assert is_valid_uscc(code)


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("91350100M000100Y4Z", "the standard's example with a wrong check character"),
        ("914403001922038217", "check character off by one"),
        ("91350100M000100Y4", "17 characters"),
        ("91350100M000100Y430", "19 characters"),
        ("91350100m000100y43", "lower case is not canonical"),
        ("9135010OM000100Y43", "O is outside the alphabet"),
        ("91A50100M000100Y4" + "3", "division code (positions 3-8) not digits"),
        ("", "empty"),
    ],
)
def test_malformed_credit_codes_are_invalid(code: str, why: str) -> None:
    assert not is_valid_uscc(code), why


def test_credit_code_with_a_wrong_organisation_check_is_invalid() -> None:
    # Keep the GB 32100 check character right, break only the GB 11714 one.
    body = "91350100M000100Y" + "5"  # the organisation check is 4
    code = body + uscc_check_char(body)
    assert uscc_check_char(code[:17]) == code[17]
    assert not is_valid_uscc(code)


def test_organisation_code_check_maps_ten_to_x_and_eleven_to_zero() -> None:
    assert organisation_code_check_char("M000100Y") == "4"
    checks = {organisation_code_check_char(f"{n:08d}") for n in range(0, 2000, 7)}
    assert "X" in checks
    assert "0" in checks
    assert checks <= set("0123456789X")


@pytest.mark.parametrize("number", VALID_RESIDENT_IDS)
def test_published_resident_ids_are_valid(number: str) -> None:
    assert is_valid_resident_id(number)
    assert is_valid_resident_id(number, today=date(2025, 1, 1))


def _with_check(body: str) -> str:
    return body + resident_id_check_char(body)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("110105194912310021", "wrong check digit"),
        ("11010519491231002x", "lower-case x is not canonical"),
        ("11010519491231002", "17 characters"),
        (_with_check("11010519490230002"), "February 30th is not a date"),
        (_with_check("11010519491301002"), "month 13"),
        (_with_check("11010520230229002"), "2023 is not a leap year"),
        ("1101051949123100X2", "X inside the body"),
    ],
)
def test_malformed_resident_ids_are_invalid(number: str, why: str) -> None:
    assert not is_valid_resident_id(number), why


def test_resident_id_born_after_today_is_invalid() -> None:
    number = _with_check("11010520300101001")
    assert is_valid_resident_id(number)
    assert not is_valid_resident_id(number, today=date(2025, 6, 1))
    assert is_valid_resident_id(_with_check("11010520000229001"))


def test_individual_subjects_take_a_resident_id_or_a_credit_code() -> None:
    assert is_valid_subject_code("individual", VALID_RESIDENT_IDS[0], None)
    assert is_valid_subject_code("individual", VALID_USCC[0], None)
    assert is_valid_subject_code("enterprise", VALID_USCC[1], None)
    assert not is_valid_subject_code("enterprise", VALID_RESIDENT_IDS[0], None)


# -- properties -----------------------------------------------------------------

_ORG_BODY = st.text(alphabet=USCC_ALPHABET, min_size=8, max_size=8)
_DIVISION = st.text(alphabet=string.digits, min_size=6, max_size=6)
_USCC_CHAR = st.sampled_from(USCC_ALPHABET)


@st.composite
def valid_credit_codes(draw: st.DrawFn) -> str:
    org_body = draw(_ORG_BODY)
    org = org_body + organisation_code_check_char(org_body)
    body = draw(_USCC_CHAR) + draw(_USCC_CHAR) + draw(_DIVISION) + org
    return body + uscc_check_char(body)


@st.composite
def valid_resident_ids(draw: st.DrawFn) -> str:
    region = draw(st.text(alphabet=string.digits, min_size=6, max_size=6))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 12, 31)))
    sequence = draw(st.integers(min_value=0, max_value=999))
    return _with_check(f"{region}{born:%Y%m%d}{sequence:03d}")


# Replacements: the code alphabets plus what people and OCR get wrong.
_REPLACEMENTS = st.sampled_from(USCC_ALPHABET + "IOSVZxa -０")


@st.composite
def one_character_changed(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
    """A value of ``values`` with one character replaced by a different one."""
    value = draw(values)
    position = draw(st.integers(min_value=0, max_value=len(value) - 1))
    replacement = draw(_REPLACEMENTS.filter(lambda r: r != value[position]))
    return value[:position] + replacement + value[position + 1 :]


@given(valid_credit_codes())
def test_computed_credit_codes_are_accepted(code: str) -> None:
    assert is_valid_uscc(code)


@given(one_character_changed(valid_credit_codes()))
def test_any_single_character_change_of_a_credit_code_is_rejected(code: str) -> None:
    assert not is_valid_uscc(code)


@given(valid_resident_ids())
def test_computed_resident_ids_are_accepted(number: str) -> None:
    assert is_valid_resident_id(number, today=date(2025, 1, 1))


@given(one_character_changed(valid_resident_ids()))
def test_any_single_character_change_of_a_resident_id_is_rejected(number: str) -> None:
    assert not is_valid_resident_id(number)


# -- normalisation and matching ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("腾讯科技（深圳）有限公司", "腾讯科技(深圳)有限公司"),
        ("腾讯科技 (深圳) 有限公司", "腾讯科技(深圳)有限公司"),
        ("ＡＢＣ\u3000商贸\t有限公司\n", "ABC商贸有限公司"),
        ("小米科技有限责任公司", "小米科技有限责任公司"),
    ],
)
def test_subject_names_normalise_width_and_whitespace(raw: str, normal: str) -> None:
    assert normalise_subject_name(raw) == normal


def test_codes_normalise_to_canonical_form() -> None:
    assert normalise_code("９１３５ ０１００ｍ０００１００ｙ４３") == VALID_USCC[0]
    assert normalise_code("11010519491231002x") == VALID_RESIDENT_IDS[0]


def test_mask_keeps_only_the_ends() -> None:
    assert mask_identifier("11010519491231002X") == "1101**********002X"
    assert mask_identifier("1234") == "****"


def test_subjects_equal_after_normalising_match() -> None:
    account = Subject(kind="enterprise", name="华为技术有限公司", code=VALID_USCC[1])
    licence = Subject(
        kind="enterprise",
        name="华为技术　有限公司",
        code="９１４４０３００１９２２０３８２１６",
    )
    assert subject_mismatches(account, licence) == []


def test_every_mismatching_field_is_listed_with_personal_data_masked() -> None:
    account = Subject(kind="individual", name="张三", code=VALID_RESIDENT_IDS[0])
    licence = Subject(kind="enterprise", name="李四", code=VALID_USCC[0])
    assert subject_mismatches(account, licence) == [
        SubjectMismatch(
            field="kind", account_value="individual", licence_value="enterprise"
        ),
        SubjectMismatch(field="name", account_value="张*", licence_value="李四"),
        SubjectMismatch(
            field="code",
            account_value="1101**********002X",
            licence_value="9135**********0Y43",
        ),
    ]


# The standards define the weights by formulas; these properties check every
# accepted code against the congruence itself, independently of the tables.


@given(valid_credit_codes())
def test_accepted_credit_codes_satisfy_the_standards_congruences(code: str) -> None:
    values = [USCC_ALPHABET.index(char) for char in code]
    # GB 32100-2015: W_i = 3^(i-1) mod 31, and the check makes the sum 0 mod 31.
    total = sum(v * pow(3, i, 31) for i, v in enumerate(values[:17]))
    assert (total + values[17]) % 31 == 0
    # GB 11714: the organisation code's check makes its weighted sum 0 mod 11.
    org_values = [int(c, 36) for c in code[8:16]]
    org_check = 10 if code[16] == "X" else int(code[16])
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    assert (
        sum(v * w for v, w in zip(org_values, weights, strict=True)) + org_check
    ) % 11 == 0


@given(valid_resident_ids())
def test_accepted_resident_ids_satisfy_iso_7064_mod_11_2(number: str) -> None:
    # ISO 7064 MOD 11-2 (GB 11643-1999 §5.5): with W_i = 2^(18-i) mod 11 over all
    # 18 positions (the check has weight 1, X meaning 10), the sum is 1 mod 11.
    values = [10 if char == "X" else int(char) for char in number]
    total = sum(v * pow(2, 17 - i, 11) for i, v in enumerate(values))
    assert total % 11 == 1


def test_only_enterprise_names_are_shown_in_full() -> None:
    assert displayed_name(Subject(kind="enterprise", name="小米 科技", code="x")) == (
        "小米科技"
    )
    assert displayed_name(Subject(kind="individual", name="王小明", code="x")) == "王**"
