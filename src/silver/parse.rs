//! How silver reads a bronze text field: the SPEC's "Parsing and typing"
//! rules, each a small pure function (no database needed to test them).
//! A parser returns `None` when the text is not of its type.

use olist_model::calendar::{days_from_civil, days_in_month, PG_EPOCH_DAYS, USECS_PER_DAY};

/// Trimming removes space, tab, CR and LF at both ends (and nothing else).
pub fn trim(bytes: &[u8]) -> &[u8] {
    let is_pad = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes.iter().position(|b| !is_pad(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_pad(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// '' and blank-only text are NULL.
pub fn is_blank(bytes: &[u8]) -> bool {
    trim(bytes).is_empty()
}

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn split_sign(s: &[u8]) -> (bool, &[u8]) {
    match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    }
}

/// `[+-]?[0-9]{1,9}`
pub fn integer(s: &[u8]) -> Option<i32> {
    let (negative, digits) = split_sign(s);
    if !all_digits(digits) || digits.len() > 9 {
        return None;
    }
    let value = digits.iter().fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0'));
    Some(if negative { -value } else { value })
}

/// A zip prefix: digits only, leading zeros dropped ('04038' → 4038).
pub fn zip(s: &[u8]) -> Option<i32> {
    let significant = &s[s.iter().position(|&b| b != b'0').unwrap_or(s.len().saturating_sub(1))..];
    if !all_digits(s) || significant.len() > 9 {
        return None;
    }
    integer(significant)
}

/// The largest numeric(10,2): 99,999,999.99.
pub const MAX_MONEY_CENTS: i64 = 9_999_999_999;

/// `[+-]?[0-9]{1,8}(.[0-9]+)?` in cents, rounded half away from zero
/// ('12.345' → 1235, '0.001' → 0, '-0.005' → -1).
pub fn money_cents(s: &[u8]) -> Option<i64> {
    let (negative, rest) = split_sign(s);
    let (whole, fraction) = match rest.iter().position(|&b| b == b'.') {
        Some(dot) => (&rest[..dot], Some(&rest[dot + 1..])),
        None => (rest, None),
    };
    if !all_digits(whole) || whole.len() > 8 || fraction.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    let fraction = fraction.unwrap_or(b"");
    let digit = |i: usize| fraction.get(i).map_or(0, |d| i64::from(d - b'0'));
    let whole = whole.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    let cents = whole * 100 + digit(0) * 10 + digit(1) + i64::from(digit(2) >= 5);
    if cents > MAX_MONEY_CENTS {
        return None; // rounded up past what numeric(10,2) holds
    }
    Some(if negative { -cents } else { cents })
}

/// The date part of a timestamp as PostgreSQL's `::date` gives it (days
/// since 2000-01-01, a DateADT), without time-zone conversion.
pub fn date_of(timestamp: i64) -> i32 {
    timestamp.div_euclid(USECS_PER_DAY) as i32
}

/// `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` (or with a `T`) that is a real
/// calendar date and time, as a PostgreSQL timestamp (µs since 2000-01-01).
pub fn timestamp(s: &[u8]) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        all_digits(part).then(|| part.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    if !(s.len() == 10 || s.len() == 19) || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, m, d) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let (mut hh, mut mm, mut ss) = (0, 0, 0);
    if s.len() == 19 {
        if !matches!(s[10], b' ' | b'T') || s[13] != b':' || s[16] != b':' {
            return None;
        }
        (hh, mm, ss) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if hh > 23 || mm > 59 || ss > 59 {
            return None;
        }
    }
    let days = days_from_civil(y, m, d) - PG_EPOCH_DAYS;
    Some(days * USECS_PER_DAY + ((hh * 60 + mm) * 60 + ss) * 1_000_000)
}

/// A double in decimal or exponent notation (no inf, no NaN, finite).
pub fn double(s: &[u8]) -> Option<f64> {
    let (_, rest) = split_sign(s);
    let mantissa_end = rest.iter().position(|&b| b == b'e' || b == b'E').unwrap_or(rest.len());
    let (mantissa, exponent) = rest.split_at(mantissa_end);
    let mantissa_ok = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let (int, frac) = (&mantissa[..dot], &mantissa[dot + 1..]);
            (int.is_empty() || all_digits(int)) && (frac.is_empty() || all_digits(frac)) && !(int.is_empty() && frac.is_empty())
        }
        None => all_digits(mantissa),
    };
    let exponent_ok = exponent.is_empty() || all_digits(split_sign(&exponent[1..]).1);
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    // SAFETY: the checks above admit only ASCII sign, digits, '.', 'e', 'E'.
    let ascii = unsafe { std::str::from_utf8_unchecked(s) };
    ascii.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// City and state: trimmed, inner runs of spaces and tabs collapsed to one
/// space, upper-cased by Unicode rules whatever the database's locale.
pub fn place(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split([' ', '\t', '\r', '\n']).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_uppercase));
    }
    out
}

/// A code compared against a fixed list (order_status, payment_type):
/// trimmed and lower-cased.
pub fn code(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// A translation-file name: a UTF-8 BOM anywhere at its start stripped, then trimmed.
pub fn without_bom(s: &[u8]) -> &[u8] {
    let mut s = s;
    while let Some(rest) = s.strip_prefix(b"\xEF\xBB\xBF") {
        s = rest;
    }
    trim(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_and_blanks() {
        assert_eq!(trim(b" \t a b \r\n"), b"a b");
        assert_eq!(trim(b"\xC2\xA0a"), b"\xC2\xA0a", "only space, tab, CR, LF are trimmed");
        assert!(is_blank(b" \t\r\n") && is_blank(b""));
        assert!(!is_blank(b" x "));
    }

    #[test]
    fn integers_and_zips() {
        assert_eq!(integer(b"42"), Some(42));
        assert_eq!(integer(b"-7"), Some(-7));
        assert_eq!(integer(b"+7"), Some(7));
        assert_eq!(integer(b"999999999"), Some(999_999_999));
        for bad in [&b"1234567890"[..], b"4.5", b"", b"-", b"1e3", b"cinco", b" 1"] {
            assert_eq!(integer(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(zip(b"04038"), Some(4038));
        assert_eq!(zip(b"4038"), Some(4038));
        assert_eq!(zip(b"00000"), Some(0));
        assert_eq!(zip(b"-4038"), None);
        assert_eq!(zip(b"4038a"), None);
        assert_eq!(zip(b"000000000012"), Some(12), "leading zeros do not count towards the 9 digits");
    }

    #[test]
    fn money_rounds_half_away_from_zero() {
        assert_eq!(money_cents(b"58.9"), Some(5890));
        assert_eq!(money_cents(b"58.90"), Some(5890));
        assert_eq!(money_cents(b"59"), Some(5900));
        assert_eq!(money_cents(b"12.345"), Some(1235));
        assert_eq!(money_cents(b"12.3449"), Some(1234));
        assert_eq!(money_cents(b"0.001"), Some(0));
        assert_eq!(money_cents(b"0.005"), Some(1));
        assert_eq!(money_cents(b"-0.005"), Some(-1));
        assert_eq!(money_cents(b"-12.345"), Some(-1235));
        assert_eq!(money_cents(b"99999999.994"), Some(MAX_MONEY_CENTS));
        assert_eq!(money_cents(b"99999999.995"), None, "would round past numeric(10,2)");
        for bad in [&b"123456789"[..], b".5", b"5.", b"1,5", b"1.2.3", b"", b"R$5", b"1e2"] {
            assert_eq!(money_cents(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn timestamps_are_real_calendar_instants() {
        assert_eq!(timestamp(b"2000-01-01"), Some(0));
        assert_eq!(timestamp(b"2000-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(timestamp(b"2000-01-01T00:00:01"), timestamp(b"2000-01-01 00:00:01"));
        assert_eq!(timestamp(b"1999-12-31 23:59:59"), Some(-1_000_000));
        assert_eq!(timestamp(b"2016-02-29 12:00:00"), Some((5903 * 86_400 + 12 * 3600) * 1_000_000));
        for bad in [
            &b"2018-02-30"[..],
            b"2017-02-29",
            b"2018-13-01",
            b"2018-00-10",
            b"2018-01-01 24:00:00",
            b"2018-01-01 23:60:00",
            b"2018-01-01 23:59:60",
            b"2018-01-01 10:00",
            b"2018/01/01",
            b"18-01-01",
            b"2018-01-01X10:00:00",
            b"2018-01-01 10:00:00.5",
        ] {
            assert_eq!(timestamp(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn doubles_in_decimal_or_exponent_notation() {
        assert_eq!(double(b"-23.545621"), Some(-23.545621));
        assert_eq!(double(b"1e-3"), Some(0.001));
        assert_eq!(double(b"-4.66E+1"), Some(-46.6));
        assert_eq!(double(b".5"), Some(0.5));
        assert_eq!(double(b"5."), Some(5.0));
        for bad in [&b"inf"[..], b"NaN", b"-infinity", b"1e999", b".", b"e5", b"1e", b"1,5", b"0x10", b""] {
            assert_eq!(double(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn places_are_unicode_upper_case_with_single_spaces() {
        assert_eq!(place("são paulo"), "SÃO PAULO");
        assert_eq!(place("  santo \t andré "), "SANTO ANDRÉ");
        assert_eq!(place("mogi das cruzes"), "MOGI DAS CRUZES");
        assert_eq!(place("sp"), "SP");
        assert_eq!(code(" DELIVERED ".trim()), "delivered");
    }

    #[test]
    fn translation_names_lose_their_bom() {
        assert_eq!(without_bom(b"\xEF\xBB\xBFbeleza_saude "), b"beleza_saude");
        assert_eq!(without_bom(b"pet_shop"), b"pet_shop");
    }
}
