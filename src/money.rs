//! Exact money: millionths of a currency unit in an `i64`, since CPM costs are fractions of a cent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount in millionths of a currency unit. Never a float, so sums are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub i64);

const SCALE: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a decimal amount")]
pub struct BadAmount(pub String);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_micros(micros: i64) -> Money {
        Money(micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// Converts a float from configuration (payouts, rates); rounds to the nearest millionth.
    pub fn from_f64(value: f64) -> Option<Money> {
        let scaled = (value * SCALE as f64).round();
        (scaled.is_finite() && scaled.abs() < i64::MAX as f64).then_some(Money(scaled as i64))
    }

    pub fn to_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    /// Parses `1.5`, `-0.25`, `1,50` (decimal comma), `+3`, ` 2 `. Digits past the sixth decimal
    /// are rounded half away from zero. Thousands separators are refused: `1,234.5` is ambiguous.
    pub fn parse(text: &str) -> Result<Money, BadAmount> {
        let bad = || BadAmount(text.to_string());
        let trimmed = text.trim();
        let (negative, unsigned) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            _ => (false, trimmed),
        };
        let mut parts = unsigned.splitn(2, ['.', ',']);
        let whole = parts.next().unwrap_or("");
        let fraction = parts.next().unwrap_or("");
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction)
        {
            return Err(bad());
        }
        if unsigned.ends_with(['.', ',']) && fraction.is_empty() && whole.is_empty() {
            return Err(bad());
        }
        let whole_value: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let mut micros: i64 = 0;
        let mut digits = fraction.bytes();
        for _ in 0..6 {
            micros = micros * 10 + digits.next().map_or(0, |b| i64::from(b - b'0'));
        }
        if digits.next().is_some_and(|b| b >= b'5') {
            micros += 1;
        }
        let total = whole_value
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(micros))
            .ok_or_else(bad)?;
        Ok(Money(if negative { -total } else { total }))
    }

    /// Multiplies by a rate given in millionths (e.g. a currency rate), rounding half away from zero.
    pub fn scale_by(self, rate: Money) -> Money {
        let product = i128::from(self.0) * i128::from(rate.0);
        let half = i128::from(SCALE / 2);
        let rounded = if product >= 0 {
            (product + half) / i128::from(SCALE)
        } else {
            (product - half) / i128::from(SCALE)
        };
        Money(rounded.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// Converts by a currency rate given as a float (units of the target per unit of this
    /// amount's currency); `None` when the rate is not a positive finite number.
    pub fn convert(self, rate: f64) -> Option<Money> {
        let rate = Money::from_f64(rate).filter(|r| rate.is_finite() && *r > Money::ZERO)?;
        Some(self.scale_by(rate))
    }

    /// Divides by a whole number (e.g. a CPM cost by 1000), rounding half away from zero.
    pub fn div_round(self, divisor: i64) -> Money {
        let half = divisor / 2;
        Money(if self.0 >= 0 {
            (self.0 + half) / divisor
        } else {
            (self.0 - half) / divisor
        })
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(self.0.saturating_neg())
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

impl FromStr for Money {
    type Err = BadAmount;
    fn from_str(s: &str) -> Result<Money, BadAmount> {
        Money::parse(s)
    }
}

/// Shortest exact decimal: `2.5`, `0.0036`, `-1`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / SCALE as u64;
        let fraction = abs % SCALE as u64;
        if fraction == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{fraction:06}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// JSON carries money as a number (`77.5`), as reports and APIs show it.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.to_f64())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Money::from_f64(value).ok_or_else(|| serde::de::Error::custom("amount out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_the_decimal_forms_networks_send() {
        let cases = [
            ("1.5", 1_500_000),
            ("1,50", 1_500_000),
            ("-0.25", -250_000),
            ("+3", 3_000_000),
            (" 2 ", 2_000_000),
            (".5", 500_000),
            ("0.0000015", 2),
            ("10.", 10_000_000),
        ];
        for (text, micros) in cases {
            assert_eq!(Money::parse(text), Ok(Money(micros)), "{text}");
        }
    }

    #[test]
    fn parse_refuses_what_is_not_a_plain_decimal() {
        for text in [
            "",
            "-",
            "abc",
            "1.2.3",
            "1,234.5",
            "1e5",
            "NaN",
            "٣",
            "99999999999999999",
        ] {
            assert!(Money::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn display_prints_the_shortest_exact_decimal() {
        assert_eq!(Money(2_500_000).to_string(), "2.5");
        assert_eq!(Money(3_600).to_string(), "0.0036");
        assert_eq!(Money(-1_000_000).to_string(), "-1");
        assert_eq!(Money(0).to_string(), "0");
    }

    #[test]
    fn cpm_cost_divides_to_a_fraction_of_a_cent_per_click() {
        assert_eq!(Money::parse("3.6").unwrap().div_round(1000), Money(3_600));
    }

    #[test]
    fn convert_refuses_rates_that_are_not_positive_and_finite() {
        let ten = Money::parse("10").unwrap();
        assert_eq!(ten.convert(1.08), Some(Money(10_800_000)));
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-9] {
            assert_eq!(ten.convert(rate), None, "{rate}");
        }
    }

    #[test]
    fn scale_by_a_currency_rate_rounds_to_the_millionth() {
        let eur = Money::parse("10").unwrap();
        assert_eq!(
            eur.scale_by(Money::parse("1.08").unwrap()),
            Money(10_800_000)
        );
    }
}
