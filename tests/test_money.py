import pytest
from hypothesis import given
from hypothesis import strategies as st

from paycell.money import (
    CURRENCY_EXPONENT,
    AmountNotPositive,
    AmountTooLarge,
    InvalidAmount,
    Money,
    MoneyError,
    TooManyDecimals,
    UnknownCurrency,
    format_amount,
    parse_amount,
    parse_currency,
)

MAX = 10**12


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12", "USD", 1200),
        ("12.3", "USD", 1230),
        ("12.30", "USD", 1230),
        ("0.01", "USD", 1),
        ("0.5", "EUR", 50),
        ("100", "JPY", 100),
        ("1", "JPY", 1),
        ("1.005", "KWD", 1005),
        ("1.5", "KWD", 1500),
        ("0.001", "KWD", 1),
        ("7", "KWD", 7000),
        ("10000000000", "USD", MAX),
    ],
)
def test_parse_amount_good(text, currency, minor):
    assert parse_amount(text, currency, max_minor=MAX) == minor


@pytest.mark.parametrize(
    ("value", "currency", "error"),
    [
        (12.3, "USD", InvalidAmount),
        (12, "USD", InvalidAmount),
        (True, "USD", InvalidAmount),
        (None, "USD", InvalidAmount),
        (b"12", "USD", InvalidAmount),
        ("NaN", "USD", InvalidAmount),
        ("inf", "USD", InvalidAmount),
        ("Infinity", "USD", InvalidAmount),
        ("1e3", "USD", InvalidAmount),
        ("-1", "USD", InvalidAmount),
        ("+1", "USD", InvalidAmount),
        (" 1", "USD", InvalidAmount),
        ("1 ", "USD", InvalidAmount),
        ("1\n", "USD", InvalidAmount),
        ("", "USD", InvalidAmount),
        ("012", "USD", InvalidAmount),
        ("00.5", "USD", InvalidAmount),
        ("1.", "USD", InvalidAmount),
        (".5", "USD", InvalidAmount),
        (".", "USD", InvalidAmount),
        ("1,00", "USD", InvalidAmount),
        ("1_000", "USD", InvalidAmount),
        ("\u0661\u0662", "USD", InvalidAmount),  # Arabic-Indic "12"
        ("\uff11\uff12", "USD", InvalidAmount),  # full-width "12"
        ("0", "USD", AmountNotPositive),
        ("0.00", "USD", AmountNotPositive),
        ("0.0", "KWD", AmountNotPositive),
        ("0", "JPY", AmountNotPositive),
        ("1.234", "USD", TooManyDecimals),
        ("100.0", "JPY", TooManyDecimals),
        ("1.0001", "KWD", TooManyDecimals),
        ("10000000000.01", "USD", AmountTooLarge),
        ("1000000000001", "JPY", AmountTooLarge),
        ("9" * 5000, "USD", AmountTooLarge),
        ("12", "usd", UnknownCurrency),
        ("12", "XXX", UnknownCurrency),
        ("12", "", UnknownCurrency),
    ],
)
def test_parse_amount_bad(value, currency, error):
    with pytest.raises(error) as info:
        parse_amount(value, currency, max_minor=MAX)
    assert isinstance(info.value, MoneyError)
    assert isinstance(info.value, ValueError)
    shown = currency if error is UnknownCurrency else repr(value)[:50]
    assert shown in str(info.value)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnknownCurrency, "currency_unknown"),
        (InvalidAmount, "amount_invalid"),
        (TooManyDecimals, "amount_too_precise"),
        (AmountNotPositive, "amount_not_positive"),
        (AmountTooLarge, "amount_too_large"),
    ],
)
def test_error_codes(error, code):
    assert issubclass(error, MoneyError)
    assert error.code == code


def test_max_minor_is_inclusive():
    assert parse_amount("5.00", "USD", max_minor=500) == 500
    with pytest.raises(AmountTooLarge):
        parse_amount("5.01", "USD", max_minor=500)


@pytest.mark.parametrize("bad_max", [0, -1, True, 1.5, None])
def test_max_minor_must_be_positive_int(bad_max):
    with pytest.raises(TypeError):
        parse_amount("1", "USD", max_minor=bad_max)


@pytest.mark.parametrize(
    ("code", "error"),
    [("USD", None), ("JPY", None), ("KWD", None), ("usd", UnknownCurrency), ("Usd", UnknownCurrency),
     ("XXX", UnknownCurrency), ("US", UnknownCurrency), (" USD", UnknownCurrency), (None, UnknownCurrency)],
)
def test_parse_currency(code, error):
    if error is None:
        assert parse_currency(code) == code
    else:
        with pytest.raises(error):
            parse_currency(code)


def test_lower_case_message_says_why():
    with pytest.raises(UnknownCurrency, match="upper case"):
        parse_currency("usd")


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("USD", 2), ("HUF", 2), ("CZK", 2), ("ZAR", 2), ("JPY", 0), ("KRW", 0), ("VND", 0), ("CLP", 0),
     ("ISK", 0), ("KWD", 3), ("BHD", 3), ("OMR", 3), ("JOD", 3), ("TND", 3), ("LYD", 3), ("IQD", 3)],
)
def test_exponents(code, exponent):
    assert CURRENCY_EXPONENT[code] == exponent


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1230, "USD", "12.30"),
        (1, "USD", "0.01"),
        (0, "USD", "0.00"),
        (-1230, "USD", "-12.30"),
        (-5, "USD", "-0.05"),
        (100, "JPY", "100"),
        (-100, "JPY", "-100"),
        (1005, "KWD", "1.005"),
        (7000, "KWD", "7.000"),
        (1, "KWD", "0.001"),
    ],
)
def test_format_amount(minor, currency, text):
    assert format_amount(minor, currency) == text


@pytest.mark.parametrize("bad", [True, False, 12.3, "1230", None])
def test_format_amount_rejects_non_int(bad):
    with pytest.raises(TypeError):
        format_amount(bad, "USD")


def test_format_amount_rejects_unknown_currency():
    with pytest.raises(UnknownCurrency):
        format_amount(100, "usd")


@pytest.mark.parametrize("currency", sorted(CURRENCY_EXPONENT))
@pytest.mark.parametrize("minor", [1, 9, 10, 99, 100, 101, 999, 1000, 1001, 123456789, MAX])
def test_round_trip_table(minor, currency):
    assert parse_amount(format_amount(minor, currency), currency, max_minor=MAX) == minor


@given(n=st.integers(min_value=1, max_value=MAX), currency=st.sampled_from(["USD", "JPY", "KWD"]))
def test_round_trip_property(n, currency):
    assert parse_amount(format_amount(n, currency), currency, max_minor=MAX) == n


def test_money_struct():
    assert str(Money(1230, "USD")) == "12.30 USD"
    assert str(Money(100, "JPY")) == "100 JPY"
    assert Money(1, "KWD") == Money(1, "KWD")
    with pytest.raises(UnknownCurrency):
        Money(1, "usd")
    with pytest.raises(TypeError):
        Money(1.5, "USD")
