//! Incoming postbacks (SPEC §9, §11): reads the parameters a network sends, under any of their
//! aliases, and validates them into a [`PostbackRequest`]. Pure: no store, no clock, no config
//! beyond the base currency and a rate lookup, so every network style is tested in isolation.
//!
//! Reading rules, in the order they are applied:
//!
//! - Parameter names are case-insensitive. A field takes the first non-empty value in the order
//!   of its aliases ([`CLICK_ID_ALIASES`], ...), then in the order of the parameters; a value that
//!   is only whitespace is empty. `clickid=a&cid=b` reads `a` wherever each stands in the URL.
//! - Values are trimmed. Any value read that is longer than [`MAX_VALUE_BYTES`] is refused with
//!   the code of its field (`bad_request` for `txid`, which has none).
//! - An unreplaced macro (`{aff_sub}`, `#s2#`, ...) in any field that is read refuses the whole
//!   postback with `unreplaced_macro`, naming every such field: recording it would credit a click
//!   or an amount nobody sent. Parameters that are not read (`sub2={sub2}`) are ignored, because
//!   networks append their whole macro set and one unfilled extra must not lose a conversion.
//!   The secret is not checked for macros: an unfilled one simply does not match.

use std::fmt;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::conversion::{ConversionKey, ConversionStatus};
use crate::money::Money;
use crate::tokens;

/// Longest value accepted in a field that is read. Far above any real id or amount, low enough
/// that a hostile request cannot make the store or the logs carry megabytes.
pub const MAX_VALUE_BYTES: usize = 1024;

/// `cnv_id` is Binom's name for the click id in its postback format.
pub const CLICK_ID_ALIASES: &[&str] = &["clickid", "cid", "click_id", "subid", "sub_id", "cnv_id"];
pub const PAYOUT_ALIASES: &[&str] = &["payout", "amount", "revenue", "sum", "value"];
pub const CURRENCY_ALIASES: &[&str] = &["currency"];
pub const TXID_ALIASES: &[&str] = &["txid", "tid", "transaction_id", "order_id"];
pub const EVENT_ALIASES: &[&str] = &["event", "et", "type", "goal", "event_name"];
/// `cnv_status` is Binom's name for the status in its postback format.
pub const STATUS_ALIASES: &[&str] = &["status", "cnv_status"];
pub const SECRET_ALIASES: &[&str] = &["secret", "key"];

/// The event recorded when the network names none.
pub const DEFAULT_EVENT: &str = "conversion";

/// Status words networks send, after lower-casing and turning `-` and spaces into `_`.
///
/// `0` is pending: networks that number statuses use 0 / 1 / 2 for pending / approved /
/// rejected, and 1 and 2 are fixed by SPEC §9. Reading a meant rejection as pending is also the
/// safe mistake: pending counts no revenue and a later report still moves the identity on.
/// `rebill` (Keitaro) is a further approved sale, told apart by its own txid.
pub const STATUS_SYNONYMS: &[(&str, ConversionStatus)] = &[
    ("approved", ConversionStatus::Approved),
    ("approve", ConversionStatus::Approved),
    ("sale", ConversionStatus::Approved),
    ("confirmed", ConversionStatus::Approved),
    ("confirm", ConversionStatus::Approved),
    ("paid", ConversionStatus::Approved),
    ("success", ConversionStatus::Approved),
    ("rebill", ConversionStatus::Approved),
    ("1", ConversionStatus::Approved),
    ("pending", ConversionStatus::Pending),
    ("pend", ConversionStatus::Pending),
    ("hold", ConversionStatus::Pending),
    ("on_hold", ConversionStatus::Pending),
    ("lead", ConversionStatus::Pending),
    ("0", ConversionStatus::Pending),
    ("rejected", ConversionStatus::Rejected),
    ("reject", ConversionStatus::Rejected),
    ("declined", ConversionStatus::Rejected),
    ("decline", ConversionStatus::Rejected),
    ("fraud", ConversionStatus::Rejected),
    ("invalid", ConversionStatus::Rejected),
    ("cancelled", ConversionStatus::Rejected),
    ("canceled", ConversionStatus::Rejected),
    ("trash", ConversionStatus::Rejected),
    ("2", ConversionStatus::Rejected),
    ("chargeback", ConversionStatus::Chargeback),
    ("charged_back", ConversionStatus::Chargeback),
    ("refund", ConversionStatus::Chargeback),
    ("refunded", ConversionStatus::Chargeback),
    ("reversal", ConversionStatus::Chargeback),
    ("reversed", ConversionStatus::Chargeback),
];

/// Parameters as received, in order, from the query string, a form body or a flat JSON object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawParams(pub Vec<(String, String)>);

impl RawParams {
    /// Lenient like the networks that send it: `+` is a space, a `%` not followed by two hex
    /// digits stays as it is, invalid UTF-8 becomes U+FFFD, a leading `?` is ignored.
    pub fn from_query(query: &str) -> RawParams {
        RawParams::from_form(query.strip_prefix('?').unwrap_or(query).as_bytes())
    }

    pub fn from_form(body: &[u8]) -> RawParams {
        RawParams(
            url::form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// A flat JSON object, in document order. Numbers and booleans become their text, `null`
    /// an empty value (absent); arrays and objects are refused, since no field could mean them.
    pub fn from_json(body: &[u8]) -> Result<RawParams, PostbackError> {
        serde_json::from_slice::<FlatObject>(body)
            .map(|flat| RawParams(flat.0))
            .map_err(|e| {
                PostbackError::new(
                    "bad_request",
                    format!("the body is not a flat JSON object of fields: {e}"),
                )
            })
    }

    /// The query's parameters with a body's. The body wins for the same name, as it is what the
    /// network composed for this report (the query may carry only the secret). Across aliases
    /// the alias order still decides: `?clickid=a` with a body `cid=b` reads `a`.
    pub fn merged(self, other: RawParams) -> RawParams {
        let mut all = other.0;
        all.extend(self.0);
        RawParams(all)
    }

    /// True when any click id alias carries a non-empty value, even an unreplaced macro, so that
    /// a caller with another source of the click id (the pixel's cookie) does not paper over a
    /// network that was misconfigured: [`parse`] then refuses it with `unreplaced_macro`.
    pub fn has_click_id(&self) -> bool {
        find(self, CLICK_ID_ALIASES).is_some()
    }
}

/// The secret sent as a parameter (`secret` or `key`), exactly as sent.
pub fn secret_of(params: &RawParams) -> Option<&str> {
    find(params, SECRET_ALIASES).map(|(_, value)| value)
}

/// A validated postback. Amounts are exact; `payout` is in the base currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostbackRequest {
    pub click_id: String,
    /// Converted to the base currency; `None` when absent (the caller uses the offer's payout).
    pub payout: Option<Money>,
    /// As sent, before conversion.
    pub sent_payout: Option<Money>,
    /// Upper-case ISO 4217 as sent, or the base currency.
    pub currency: String,
    /// Empty when absent.
    pub txid: String,
    /// Lower-case `[a-z0-9_-]{1,32}`; [`DEFAULT_EVENT`] when absent.
    pub event: String,
    /// Approved when absent.
    pub status: ConversionStatus,
    /// From `secret` / `key`, exactly as sent.
    pub secret: Option<String>,
}

impl PostbackRequest {
    pub fn key(&self) -> ConversionKey {
        ConversionKey {
            click_id: self.click_id.clone(),
            event: self.event.clone(),
            txid: self.txid.clone(),
        }
    }
}

/// A refused postback: `400 {"error": code, "message": message}`. Codes are those of SPEC §9
/// plus `bad_request` for a body that is not a flat JSON object and for an oversized `txid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostbackError {
    pub code: &'static str,
    pub message: String,
}

impl PostbackError {
    fn new(code: &'static str, message: impl Into<String>) -> PostbackError {
        PostbackError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for PostbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for PostbackError {}

/// A field that is read, its aliases, and the code that refuses a value too long for it.
struct Field {
    name: &'static str,
    aliases: &'static [&'static str],
    too_long: &'static str,
}

static FIELDS: [Field; 6] = [
    Field {
        name: "clickid",
        aliases: CLICK_ID_ALIASES,
        too_long: "missing_clickid",
    },
    Field {
        name: "payout",
        aliases: PAYOUT_ALIASES,
        too_long: "bad_payout",
    },
    Field {
        name: "currency",
        aliases: CURRENCY_ALIASES,
        too_long: "bad_currency",
    },
    Field {
        name: "txid",
        aliases: TXID_ALIASES,
        too_long: "bad_request",
    },
    Field {
        name: "event",
        aliases: EVENT_ALIASES,
        too_long: "bad_event",
    },
    Field {
        name: "status",
        aliases: STATUS_ALIASES,
        too_long: "bad_status",
    },
];

/// One field's value as sent, with the parameter name it came under for messages.
struct Sent<'a> {
    field: &'static Field,
    param: &'a str,
    value: &'a str,
}

impl Sent<'_> {
    /// `payout` or, when it came under an alias, `payout (sent as amount)`.
    fn described(&self) -> String {
        if self.param.eq_ignore_ascii_case(self.field.name) {
            self.field.name.to_string()
        } else {
            format!("{} (sent as `{}`)", self.field.name, shown(self.param))
        }
    }
}

/// Validates a postback. `rate(code)` gives units of `base_currency` for one unit of `code`
/// (`Settings::currency_rate`); it is only asked when a payout must be converted.
pub fn parse(
    params: &RawParams,
    base_currency: &str,
    rate: impl Fn(&str) -> Option<f64>,
) -> Result<PostbackRequest, PostbackError> {
    let sent = FIELDS.each_ref().map(|field| {
        find(params, field.aliases).map(|(param, value)| Sent {
            field,
            param,
            value: value.trim(),
        })
    });

    for s in sent.iter().flatten() {
        if s.value.len() > MAX_VALUE_BYTES {
            return Err(PostbackError::new(
                s.field.too_long,
                format!(
                    "{} is {} bytes long; at most {MAX_VALUE_BYTES} are accepted",
                    s.described(),
                    s.value.len()
                ),
            ));
        }
    }

    let unreplaced: Vec<String> = sent
        .iter()
        .flatten()
        .filter(|s| is_unreplaced(s.value))
        .map(|s| format!("{} = `{}`", s.described(), shown(s.value)))
        .collect();
    if !unreplaced.is_empty() {
        return Err(PostbackError::new(
            "unreplaced_macro",
            format!(
                "unreplaced macro in {}: the network sent its placeholder instead of a value; \
                 check the postback URL configured at the network",
                unreplaced.join(", ")
            ),
        ));
    }

    let [click, payout, currency, txid, event, status] = sent;

    let click_id = click.map(|s| s.value.to_string()).ok_or_else(|| {
        PostbackError::new(
            "missing_clickid",
            format!(
                "no click id: send it as `clickid` (or {})",
                CLICK_ID_ALIASES[1..].join(", ")
            ),
        )
    })?;

    let sent_payout = payout
        .map(|s| {
            Money::parse(s.value).map_err(|_| {
                PostbackError::new(
                    "bad_payout",
                    format!(
                        "{} = `{}` is not a decimal amount (e.g. `1.5` or `1,50`)",
                        s.described(),
                        shown(s.value)
                    ),
                )
            })
        })
        .transpose()?;

    let base = base_currency.to_ascii_uppercase();
    let currency = match currency {
        None => base.clone(),
        Some(s) if s.value.len() == 3 && s.value.bytes().all(|b| b.is_ascii_alphabetic()) => {
            s.value.to_ascii_uppercase()
        }
        Some(s) => {
            return Err(PostbackError::new(
                "bad_currency",
                format!(
                    "currency = `{}` is not a three-letter ISO 4217 code",
                    shown(s.value)
                ),
            ))
        }
    };

    // A currency whose rate is unknown only matters when there is an amount to convert: with no
    // payout the offer's configured one is used, and refusing would lose the conversion.
    let payout = match sent_payout {
        Some(amount) if currency != base => {
            let converted = rate(&currency)
                .and_then(|rate| amount.convert(rate))
                .ok_or_else(|| {
                    PostbackError::new(
                        "bad_currency",
                        format!(
                            "no rate for {currency} in [currency_rates]; add one to convert \
                             payouts into {base}"
                        ),
                    )
                })?;
            Some(converted)
        }
        other => other,
    };

    let txid = txid.map_or_else(String::new, |s| s.value.to_string());

    let event = match event {
        None => DEFAULT_EVENT.to_string(),
        Some(s) => {
            let lower = s.value.to_ascii_lowercase();
            if !is_event_name(&lower) {
                return Err(PostbackError::new(
                    "bad_event",
                    format!(
                        "{} = `{}` is not 1 to 32 of a-z, 0-9, `_`, `-`",
                        s.described(),
                        shown(s.value)
                    ),
                ));
            }
            lower
        }
    };

    let status = match status {
        None => ConversionStatus::Approved,
        Some(s) => parse_status(s.value).ok_or_else(|| {
            PostbackError::new(
                "bad_status",
                format!(
                    "{} = `{}` is not a known status; send approved, pending, rejected or \
                     chargeback (or a synonym listed in the README)",
                    s.described(),
                    shown(s.value)
                ),
            )
        })?,
    };

    Ok(PostbackRequest {
        click_id,
        payout,
        sent_payout,
        currency,
        txid,
        event,
        status,
        secret: secret_of(params).map(str::to_string),
    })
}

/// The canonical status names and the synonyms in [`STATUS_SYNONYMS`], case-insensitive;
/// `charged-back`, `charged back` and `charged_back` are the same word.
pub fn parse_status(text: &str) -> Option<ConversionStatus> {
    let word: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    STATUS_SYNONYMS
        .iter()
        .find(|(name, _)| *name == word)
        .map(|(_, status)| *status)
}

/// Compares a secret in time that depends only on the length of `given`, which the sender
/// knows anyway, so timing reveals nothing of `expected`. An empty `expected` matches nothing:
/// an unset secret must never authenticate.
pub fn secret_matches(expected: &str, given: &str) -> bool {
    let (expected, given) = (expected.as_bytes(), given.as_bytes());
    if expected.is_empty() {
        return false;
    }
    let mut difference = expected.len() ^ given.len();
    for (i, byte) in given.iter().enumerate() {
        difference |= usize::from(byte ^ expected[i % expected.len()]);
    }
    std::hint::black_box(difference) == 0
}

/// The first non-empty value under any of `aliases`, alias order first, with the name it came
/// under.
fn find<'a>(params: &'a RawParams, aliases: &[&str]) -> Option<(&'a str, &'a str)> {
    aliases.iter().find_map(|alias| {
        params
            .0
            .iter()
            .find(|(name, value)| name.eq_ignore_ascii_case(alias) && !value.trim().is_empty())
            .map(|(name, value)| (name.as_str(), value.as_str()))
    })
}

/// [`tokens::is_unreplaced`], plus the forms networks produce around it: doubled wrappers
/// (`[[clickid]]`, `{{{sub1}}}`, `%%sub%%`) and a macro percent-encoded once more than the
/// transport decodes (`%7Baff_sub%7D`, from a network that encodes its own template).
fn is_unreplaced(value: &str) -> bool {
    fn check(value: &str, depth: u8) -> bool {
        let value = value.trim();
        if tokens::is_unreplaced(value) {
            return true;
        }
        if depth == 0 {
            return false;
        }
        const PAIRS: [(char, char); 5] =
            [('{', '}'), ('[', ']'), ('<', '>'), ('%', '%'), ('#', '#')];
        let unwrapped = PAIRS.iter().any(|&(open, close)| {
            value
                .strip_prefix(open)
                .and_then(|v| v.strip_suffix(close))
                .is_some_and(|inner| check(inner, depth - 1))
        });
        unwrapped
            || (value.contains('%') && {
                let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                decoded != value && check(&decoded, depth - 1)
            })
    }
    check(value, 3)
}

fn is_event_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A value fit for a message: escaped, and cut so that a refused request cannot flood the log.
fn shown(value: &str) -> String {
    const LIMIT: usize = 64;
    let mut out: String = value.chars().take(LIMIT).collect::<String>();
    if value.chars().nth(LIMIT).is_some() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

/// A JSON object read in document order, so [`RawParams`] keeps the order it was sent in.
struct FlatObject(Vec<(String, String)>);

impl<'de> Deserialize<'de> for FlatObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FlatObject, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = FlatObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlatObject, A::Error> {
                let mut fields = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                    let text = match value {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                            return Err(A::Error::custom(format!(
                                "`{}` is a nested value; fields must be strings, numbers or \
                                 booleans",
                                shown(&name)
                            )))
                        }
                    };
                    fields.push((name, text));
                }
                Ok(FlatObject(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConversionStatus::*;

    /// What a case expects: the listed fields of the request, or the error code.
    enum Want {
        Fields(&'static [(&'static str, &'static str)]),
        Error(&'static str),
    }
    use Want::{Error, Fields};

    fn rate(code: &str) -> Option<f64> {
        match code {
            "EUR" => Some(1.08),
            "GBP" => Some(1.27),
            "ZZZ" => Some(0.0),
            _ => None,
        }
    }

    fn money(value: Option<Money>) -> String {
        value.map_or_else(|| "absent".to_string(), |m| m.to_string())
    }

    /// Parses `params` against a USD base with EUR 1.08 and GBP 1.27, and compares.
    fn check(name: &str, params: RawParams, want: Want) {
        let got = parse(&params, "USD", rate);
        match (want, got) {
            (Fields(fields), Ok(request)) => {
                for (field, expected) in fields {
                    let actual = match *field {
                        "clickid" => request.click_id.clone(),
                        "payout" => money(request.payout),
                        "sent_payout" => money(request.sent_payout),
                        "currency" => request.currency.clone(),
                        "txid" => request.txid.clone(),
                        "event" => request.event.clone(),
                        "status" => request.status.as_str().to_string(),
                        "secret" => request.secret.clone().unwrap_or_else(|| "absent".into()),
                        other => panic!("{name}: no field {other}"),
                    };
                    assert_eq!(actual, *expected, "{name}: {field}");
                }
            }
            (Error(code), Err(error)) => {
                assert_eq!(error.code, code, "{name}: {}", error.message)
            }
            (Fields(_), Err(error)) => panic!("{name}: refused with {error}"),
            (Error(code), Ok(request)) => panic!("{name}: expected {code}, got {request:?}"),
        }
    }

    fn query(text: &str) -> RawParams {
        RawParams::from_query(text)
    }

    #[test]
    fn every_alias_names_its_field() {
        let cases: &[(&str, &str, Want)] = &[
            (
                "clickid names the click",
                "clickid=a",
                Fields(&[("clickid", "a")]),
            ),
            ("cid names the click", "cid=a", Fields(&[("clickid", "a")])),
            (
                "click_id names the click",
                "click_id=a",
                Fields(&[("clickid", "a")]),
            ),
            (
                "subid names the click",
                "subid=a",
                Fields(&[("clickid", "a")]),
            ),
            (
                "sub_id names the click",
                "sub_id=a",
                Fields(&[("clickid", "a")]),
            ),
            (
                "Binom's cnv_id names the click",
                "cnv_id=a",
                Fields(&[("clickid", "a")]),
            ),
            (
                "payout is the payout",
                "cid=a&payout=2",
                Fields(&[("payout", "2")]),
            ),
            (
                "amount is the payout",
                "cid=a&amount=2",
                Fields(&[("payout", "2")]),
            ),
            (
                "revenue is the payout",
                "cid=a&revenue=2",
                Fields(&[("payout", "2")]),
            ),
            (
                "sum is the payout",
                "cid=a&sum=2",
                Fields(&[("payout", "2")]),
            ),
            (
                "value is the payout",
                "cid=a&value=2",
                Fields(&[("payout", "2")]),
            ),
            (
                "currency is the currency",
                "cid=a&currency=GBP",
                Fields(&[("currency", "GBP")]),
            ),
            (
                "txid is the transaction",
                "cid=a&txid=t",
                Fields(&[("txid", "t")]),
            ),
            (
                "tid is the transaction",
                "cid=a&tid=t",
                Fields(&[("txid", "t")]),
            ),
            (
                "transaction_id is the transaction",
                "cid=a&transaction_id=t",
                Fields(&[("txid", "t")]),
            ),
            (
                "order_id is the transaction",
                "cid=a&order_id=t",
                Fields(&[("txid", "t")]),
            ),
            (
                "event is the event",
                "cid=a&event=reg",
                Fields(&[("event", "reg")]),
            ),
            (
                "et is the event",
                "cid=a&et=reg",
                Fields(&[("event", "reg")]),
            ),
            (
                "type is the event",
                "cid=a&type=reg",
                Fields(&[("event", "reg")]),
            ),
            (
                "goal is the event",
                "cid=a&goal=reg",
                Fields(&[("event", "reg")]),
            ),
            (
                "event_name is the event",
                "cid=a&event_name=reg",
                Fields(&[("event", "reg")]),
            ),
            (
                "status is the status",
                "cid=a&status=hold",
                Fields(&[("status", "pending")]),
            ),
            (
                "Binom's cnv_status is the status",
                "cid=a&cnv_status=hold",
                Fields(&[("status", "pending")]),
            ),
            (
                "secret is the secret",
                "cid=a&secret=s3",
                Fields(&[("secret", "s3")]),
            ),
            (
                "key is the secret",
                "cid=a&key=s3",
                Fields(&[("secret", "s3")]),
            ),
            (
                "names are case-insensitive",
                "ClickID=a&PAYOUT=2&Status=Sale",
                Fields(&[("clickid", "a"), ("payout", "2"), ("status", "approved")]),
            ),
            (
                "the alias order wins over the order in the URL",
                "subid=b&clickid=a",
                Fields(&[("clickid", "a")]),
            ),
            (
                "an empty alias gives way to the next",
                "clickid=&cid=b",
                Fields(&[("clickid", "b")]),
            ),
            (
                "a blank alias gives way to the next",
                "clickid=+&cid=b",
                Fields(&[("clickid", "b")]),
            ),
            (
                "the first of a repeated name wins",
                "clickid=a&clickid=b",
                Fields(&[("clickid", "a")]),
            ),
            (
                "values are trimmed",
                "clickid=+a+&txid=%20t%20",
                Fields(&[("clickid", "a"), ("txid", "t")]),
            ),
            (
                "absent fields take their defaults",
                "clickid=a",
                Fields(&[
                    ("payout", "absent"),
                    ("sent_payout", "absent"),
                    ("currency", "USD"),
                    ("txid", ""),
                    ("event", "conversion"),
                    ("status", "approved"),
                    ("secret", "absent"),
                ]),
            ),
        ];
        for (name, text, want) in cases {
            check(name, query(text), clone(want));
        }
    }

    fn clone(want: &Want) -> Want {
        match want {
            Fields(f) => Fields(f),
            Error(c) => Error(c),
        }
    }

    fn run(cases: &[(&str, &str, Want)]) {
        for (name, text, want) in cases {
            check(name, query(text), clone(want));
        }
    }

    #[test]
    fn payouts_are_exact_decimals_converted_to_the_base_currency() {
        run(&[
            (
                "a dot decimal reads",
                "cid=a&payout=1.5",
                Fields(&[("payout", "1.5"), ("sent_payout", "1.5")]),
            ),
            (
                "a decimal comma reads",
                "cid=a&payout=1,50",
                Fields(&[("payout", "1.5")]),
            ),
            (
                "a negative payout is a reversal",
                "cid=a&payout=-2.25",
                Fields(&[("payout", "-2.25")]),
            ),
            (
                "an explicit plus reads",
                "cid=a&payout=%2B3",
                Fields(&[("payout", "3")]),
            ),
            (
                "an empty payout is absent",
                "cid=a&payout=",
                Fields(&[("payout", "absent"), ("sent_payout", "absent")]),
            ),
            (
                "a blank payout is absent",
                "cid=a&payout=++",
                Fields(&[("payout", "absent")]),
            ),
            (
                "an empty payout gives way to amount",
                "cid=a&payout=&amount=4",
                Fields(&[("payout", "4")]),
            ),
            (
                "EUR converts at 1.08",
                "cid=a&payout=10&currency=EUR",
                Fields(&[
                    ("payout", "10.8"),
                    ("sent_payout", "10"),
                    ("currency", "EUR"),
                ]),
            ),
            (
                "a comma EUR amount converts exactly",
                "cid=a&payout=1,99&currency=EUR",
                Fields(&[("payout", "2.1492"), ("sent_payout", "1.99")]),
            ),
            (
                "a negative EUR amount converts",
                "cid=a&payout=-10&currency=EUR",
                Fields(&[("payout", "-10.8")]),
            ),
            (
                "conversion rounds to the millionth",
                "cid=a&payout=0.000001&currency=EUR",
                Fields(&[("payout", "0.000001")]),
            ),
            (
                "a lower-case currency is upper-cased",
                "cid=a&payout=10&currency=eur",
                Fields(&[("payout", "10.8"), ("currency", "EUR")]),
            ),
            (
                "the base currency is not converted",
                "cid=a&payout=10&currency=usd",
                Fields(&[("payout", "10"), ("currency", "USD")]),
            ),
            (
                "without a payout an unknown rate does not matter",
                "cid=a&currency=JPY",
                Fields(&[("payout", "absent"), ("currency", "JPY")]),
            ),
            (
                "with a payout an unknown rate is refused",
                "cid=a&payout=100&currency=JPY",
                Error("bad_currency"),
            ),
            (
                "a zero rate is no rate",
                "cid=a&payout=1&currency=ZZZ",
                Error("bad_currency"),
            ),
            (
                "a four-letter currency is refused",
                "cid=a&currency=EURO",
                Error("bad_currency"),
            ),
            (
                "a currency with a digit is refused",
                "cid=a&currency=E1R",
                Error("bad_currency"),
            ),
            (
                "thousands separators are refused",
                "cid=a&payout=1,234.5",
                Error("bad_payout"),
            ),
            (
                "words are not amounts",
                "cid=a&payout=free",
                Error("bad_payout"),
            ),
            (
                "exponents are not amounts",
                "cid=a&amount=1e3",
                Error("bad_payout"),
            ),
        ]);
    }

    #[test]
    fn every_status_synonym_reads_in_any_case() {
        let expected: &[(&str, ConversionStatus)] = &[
            ("approved", Approved),
            ("approve", Approved),
            ("sale", Approved),
            ("confirmed", Approved),
            ("confirm", Approved),
            ("1", Approved),
            ("paid", Approved),
            ("success", Approved),
            ("rebill", Approved),
            ("pending", Pending),
            ("hold", Pending),
            ("on_hold", Pending),
            ("on-hold", Pending),
            ("lead", Pending),
            ("pend", Pending),
            ("0", Pending),
            ("rejected", Rejected),
            ("reject", Rejected),
            ("declined", Rejected),
            ("decline", Rejected),
            ("fraud", Rejected),
            ("2", Rejected),
            ("invalid", Rejected),
            ("cancelled", Rejected),
            ("canceled", Rejected),
            ("trash", Rejected),
            ("chargeback", Chargeback),
            ("charged_back", Chargeback),
            ("Charged-Back", Chargeback),
            ("charged back", Chargeback),
            ("refund", Chargeback),
            ("refunded", Chargeback),
            ("reversal", Chargeback),
            ("reversed", Chargeback),
        ];
        for (text, status) in expected {
            for variant in [text.to_string(), text.to_uppercase(), format!(" {text} ")] {
                assert_eq!(parse_status(&variant), Some(*status), "{variant:?}");
            }
        }
        for (word, status) in STATUS_SYNONYMS {
            assert!(
                expected.iter().any(|(t, s)| t == word && s == status),
                "{word} is tested"
            );
        }
        for unknown in ["", "3", "-1", "ok", "approvedd", "yes"] {
            assert_eq!(parse_status(unknown), None, "{unknown:?}");
        }
        run(&[
            (
                "a status word reaches the request",
                "cid=a&status=DECLINED",
                Fields(&[("status", "rejected")]),
            ),
            (
                "an unknown status is refused",
                "cid=a&status=maybe",
                Error("bad_status"),
            ),
        ]);
    }

    #[test]
    fn events_are_lower_case_names() {
        run(&[
            (
                "an event is lower-cased",
                "cid=a&event=Deposit",
                Fields(&[("event", "deposit")]),
            ),
            (
                "digits, dashes and underscores are allowed",
                "cid=a&event=ftd_2-x",
                Fields(&[("event", "ftd_2-x")]),
            ),
            (
                "32 characters are allowed",
                "cid=a&event=abcdefghijabcdefghijabcdefghijab",
                Fields(&[("event", "abcdefghijabcdefghijabcdefghijab")]),
            ),
            (
                "an empty event is the default",
                "cid=a&event=",
                Fields(&[("event", "conversion")]),
            ),
            (
                "33 characters are refused",
                "cid=a&event=abcdefghijabcdefghijabcdefghijabc",
                Error("bad_event"),
            ),
            (
                "a space is refused",
                "cid=a&event=sign+up",
                Error("bad_event"),
            ),
            ("a dot is refused", "cid=a&goal=a.b", Error("bad_event")),
            (
                "non-ASCII is refused",
                "cid=a&event=d%C3%A9p%C3%B4t",
                Error("bad_event"),
            ),
        ]);
    }

    #[test]
    fn every_error_code_is_reachable() {
        run(&[
            (
                "a macro in the click id is refused",
                "clickid={aff_sub}",
                Error("unreplaced_macro"),
            ),
            (
                "a macro in the payout is refused",
                "clickid=a&payout={payout}",
                Error("unreplaced_macro"),
            ),
            (
                "a macro in the currency is refused",
                "clickid=a&currency={currency}",
                Error("unreplaced_macro"),
            ),
            (
                "a macro in the txid is refused",
                "clickid=a&txid={transaction_id}",
                Error("unreplaced_macro"),
            ),
            (
                "a macro in the event is refused",
                "clickid=a&event={event_name}",
                Error("unreplaced_macro"),
            ),
            (
                "a macro in the status is refused",
                "clickid=a&status={status}",
                Error("unreplaced_macro"),
            ),
            (
                "a bad payout is refused",
                "clickid=a&payout=1.2.3",
                Error("bad_payout"),
            ),
            (
                "a bad currency is refused",
                "clickid=a&currency=$$",
                Error("bad_currency"),
            ),
            (
                "a bad status is refused",
                "clickid=a&status=meh",
                Error("bad_status"),
            ),
            (
                "a bad event is refused",
                "clickid=a&event=a/b",
                Error("bad_event"),
            ),
            (
                "no click id is refused",
                "payout=1",
                Error("missing_clickid"),
            ),
            (
                "an empty click id is refused",
                "clickid=&cid=",
                Error("missing_clickid"),
            ),
            ("an empty query is refused", "", Error("missing_clickid")),
        ]);
        let error = RawParams::from_json(b"{").unwrap_err();
        assert_eq!(error.code, "bad_request", "bad JSON: {}", error.message);
    }

    #[test]
    fn a_refusal_names_the_field_and_the_value() {
        let error = parse(
            &query("cid={aff_sub}&amount=%23price%23&payout=&sub2={sub2}"),
            "USD",
            rate,
        )
        .unwrap_err();
        assert_eq!(error.code, "unreplaced_macro");
        for part in [
            "clickid (sent as `cid`) = `{aff_sub}`",
            "payout (sent as `amount`) = `#price#`",
        ] {
            assert!(error.message.contains(part), "{part} in {}", error.message);
        }
        assert!(!error.message.contains("sub2"), "{}", error.message);
        let error = parse(&query("cid=a&payout=abc"), "USD", rate).unwrap_err();
        assert!(
            error.message.contains("payout = `abc`"),
            "{}",
            error.message
        );
        let error = parse(&query("cid=a&status=nope"), "USD", rate).unwrap_err();
        assert!(
            error.message.contains("status = `nope`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn real_network_styles_record_when_filled_and_are_refused_when_not() {
        run(&[
            (
                "TUNE / HasOffers filled",
                "clickid=Xy9_abcDEF012345678901&payout=2.50&txid=102a3f",
                Fields(&[
                    ("clickid", "Xy9_abcDEF012345678901"),
                    ("payout", "2.5"),
                    ("txid", "102a3f"),
                    ("status", "approved"),
                ]),
            ),
            (
                "TUNE / HasOffers unreplaced",
                "clickid={aff_sub}&payout={payout}&txid={transaction_id}",
                Error("unreplaced_macro"),
            ),
            (
                "Everflow filled",
                "clickid=abc123&event=Purchase&payout=12.00",
                Fields(&[
                    ("clickid", "abc123"),
                    ("event", "purchase"),
                    ("payout", "12"),
                ]),
            ),
            (
                "Everflow unreplaced",
                "clickid={sub1}&event={event_name}&payout={payout}",
                Error("unreplaced_macro"),
            ),
            (
                "CAKE filled",
                "clickid=abc123&payout=1.75",
                Fields(&[("clickid", "abc123"), ("payout", "1.75")]),
            ),
            (
                "CAKE unreplaced",
                "clickid=%23s2%23&payout=%23price%23",
                Error("unreplaced_macro"),
            ),
            (
                "Voluum style filled",
                "cid=abc123&payout=0.8&txid=T-1&et=install",
                Fields(&[
                    ("clickid", "abc123"),
                    ("payout", "0.8"),
                    ("txid", "T-1"),
                    ("event", "install"),
                ]),
            ),
            (
                "Voluum style unreplaced",
                "cid={clickid}&payout={payout}&txid={txid}&et={et}",
                Error("unreplaced_macro"),
            ),
            (
                "Keitaro style filled",
                "subid=abc123&status=lead&payout=3&tid=77",
                Fields(&[
                    ("clickid", "abc123"),
                    ("status", "pending"),
                    ("payout", "3"),
                    ("txid", "77"),
                ]),
            ),
            (
                "Keitaro style rebill",
                "subid=abc123&status=rebill&payout=3&tid=78",
                Fields(&[("status", "approved")]),
            ),
            (
                "Keitaro style unreplaced",
                "subid={subid}&status={status}&payout={payout}&tid={tid}",
                Error("unreplaced_macro"),
            ),
            (
                "Binom style filled",
                "cnv_id=abc123&cnv_status=approved&payout=4,20",
                Fields(&[
                    ("clickid", "abc123"),
                    ("status", "approved"),
                    ("payout", "4.2"),
                ]),
            ),
            (
                "Binom style unreplaced",
                "cnv_id={cnv_id}&cnv_status={cnv_status}&payout={payout}",
                Error("unreplaced_macro"),
            ),
            (
                "a source's own token left in is refused",
                "clickid=%23%23SUB_ID_SHORT(action)%23%23",
                Error("unreplaced_macro"),
            ),
            (
                "a dollar token left in is refused",
                "clickid=${SUBID}",
                Error("unreplaced_macro"),
            ),
        ]);
    }

    #[test]
    fn macro_forms_beyond_the_common_ones_are_caught_and_empty_brackets_are_not_macros() {
        run(&[
            (
                "doubled brackets are a macro",
                "clickid=[[clickid]]",
                Error("unreplaced_macro"),
            ),
            (
                "triple braces are a macro",
                "clickid={{{sub1}}}",
                Error("unreplaced_macro"),
            ),
            (
                "doubled percents are a macro",
                "clickid=%25%25sub%25%25",
                Error("unreplaced_macro"),
            ),
            (
                "a macro encoded twice is a macro",
                "clickid=%257Baff_sub%257D",
                Error("unreplaced_macro"),
            ),
            (
                "REPLACE is a macro",
                "clickid=REPLACE",
                Error("unreplaced_macro"),
            ),
            (
                "empty braces are a value",
                "clickid={}",
                Fields(&[("clickid", "{}")]),
            ),
            (
                "empty brackets are a value",
                "clickid=[]",
                Fields(&[("clickid", "[]")]),
            ),
            (
                "doubled empty brackets are a value",
                "clickid=[[]]",
                Fields(&[("clickid", "[[]]")]),
            ),
            (
                "a bracketed number is a value",
                "txid=[12345]&cid=a",
                Fields(&[("txid", "[12345]")]),
            ),
            (
                "a percent sign in a value is a value",
                "cid=a&txid=50%25",
                Fields(&[("txid", "50%")]),
            ),
            (
                "an unfilled extra parameter is ignored",
                "clickid=a&sub2={sub2}&aff_sub3=%23s3%23",
                Fields(&[("clickid", "a")]),
            ),
            (
                "an unfilled secret is left to the secret check",
                "clickid=a&secret={secret}",
                Fields(&[("secret", "{secret}")]),
            ),
        ]);
    }

    #[test]
    fn values_are_bounded_in_size() {
        let long = "9".repeat(MAX_VALUE_BYTES + 1);
        let at_limit = "a".repeat(MAX_VALUE_BYTES);
        let cases = [
            (
                "a huge click id is refused",
                format!("clickid={long}"),
                Error("missing_clickid"),
            ),
            (
                "a huge payout is refused",
                format!("cid=a&payout={long}"),
                Error("bad_payout"),
            ),
            (
                "a huge currency is refused",
                format!("cid=a&currency={long}"),
                Error("bad_currency"),
            ),
            (
                "a huge txid is refused",
                format!("cid=a&txid={long}"),
                Error("bad_request"),
            ),
            (
                "a huge event is refused",
                format!("cid=a&event={long}"),
                Error("bad_event"),
            ),
            (
                "a huge status is refused",
                format!("cid=a&status={long}"),
                Error("bad_status"),
            ),
            (
                "a long click id is left to the lookup",
                format!("clickid={at_limit}"),
                Fields(&[]),
            ),
            (
                "a huge unread parameter is ignored",
                format!("cid=a&sub9={long}"),
                Fields(&[]),
            ),
        ];
        for (name, text, want) in cases {
            check(name, query(&text), want);
        }
        let error = parse(&query(&format!("cid=a&txid={long}")), "USD", rate).unwrap_err();
        assert!(error.message.len() < 200, "{}", error.message);
    }

    #[test]
    fn bodies_read_as_queries_do() {
        let json = br#"{"clickid":"abc","payout":1.5,"currency":"eur","status":1,"txid":12345,"goal":"FTD","test":true,"note":null}"#;
        check(
            "a JSON body with numbers reads",
            RawParams::from_json(json).unwrap(),
            Fields(&[
                ("clickid", "abc"),
                ("payout", "1.62"),
                ("sent_payout", "1.5"),
                ("currency", "EUR"),
                ("status", "approved"),
                ("txid", "12345"),
                ("event", "ftd"),
            ]),
        );
        assert_eq!(
            RawParams::from_json(br#"{"b":"2","a":true,"c":null,"d":-0.5}"#).unwrap(),
            RawParams(vec![
                ("b".into(), "2".into()),
                ("a".into(), "true".into()),
                ("c".into(), "".into()),
                ("d".into(), "-0.5".into()),
            ]),
            "JSON keeps document order and turns scalars into text"
        );
        check(
            "a JSON null payout is absent",
            RawParams::from_json(br#"{"cid":"a","payout":null,"amount":"3"}"#).unwrap(),
            Fields(&[("payout", "3")]),
        );
        check(
            "a JSON macro is refused",
            RawParams::from_json(br#"{"cid":"{aff_sub}"}"#).unwrap(),
            Error("unreplaced_macro"),
        );
        for (name, body) in [
            (
                "a nested object is refused",
                &br#"{"clickid":"a","extra":{"x":1}}"#[..],
            ),
            ("a nested array is refused", br#"{"clickid":["a"]}"#),
            ("a top-level array is refused", br#"[{"clickid":"a"}]"#),
            ("a string is refused", br#""clickid""#),
            ("truncated JSON is refused", br#"{"clickid":"a""#),
            ("an empty body is refused", b""),
        ] {
            let error = RawParams::from_json(body).unwrap_err();
            assert_eq!(error.code, "bad_request", "{name}");
        }
        let error = RawParams::from_json(br#"{"clickid":"a","extra":{"x":1}}"#).unwrap_err();
        assert!(
            error.message.contains("`extra` is a nested value"),
            "{}",
            error.message
        );

        check(
            "a form body reads",
            RawParams::from_form(b"clickid=abc&payout=2%2C5&status=pending&event=Sign_Up"),
            Fields(&[
                ("clickid", "abc"),
                ("payout", "2.5"),
                ("status", "pending"),
                ("event", "sign_up"),
            ]),
        );
    }

    #[test]
    fn a_merged_query_and_body_prefer_the_body() {
        let merged = |q: &str, body: &[u8]| query(q).merged(RawParams::from_form(body));
        check(
            "the body wins for the same name",
            merged("clickid=a&payout=1", b"payout=2"),
            Fields(&[("clickid", "a"), ("payout", "2")]),
        );
        check(
            "the query fills what the body lacks",
            merged("secret=s&status=hold", b"clickid=b"),
            Fields(&[("clickid", "b"), ("secret", "s"), ("status", "pending")]),
        );
        check(
            "the alias order still decides across query and body",
            merged("clickid=a", b"cid=b"),
            Fields(&[("clickid", "a")]),
        );
        check(
            "an empty body value gives way to the query's",
            merged("payout=1&cid=a", b"payout="),
            Fields(&[("payout", "1")]),
        );
        assert!(query("cid={aff_sub}").has_click_id());
        assert!(!query("cid=&clickid=+").has_click_id());
        assert_eq!(secret_of(&query("key=&secret=s+1")), Some("s 1"));
        assert_eq!(secret_of(&query("clickid=a")), None);
    }

    #[test]
    fn the_query_is_decoded_leniently() {
        assert_eq!(
            query("?a=1+2&b=%zz&c=%E2%82%AC&d&=e&f=%FF"),
            RawParams(vec![
                ("a".into(), "1 2".into()),
                ("b".into(), "%zz".into()),
                ("c".into(), "€".into()),
                ("d".into(), "".into()),
                ("".into(), "e".into()),
                ("f".into(), "\u{FFFD}".into()),
            ])
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        let cases = [
            ("the same secret matches", "s3cret", "s3cret", true),
            ("a different last byte does not", "s3cret", "s3creT", false),
            ("a prefix does not", "s3cret", "s3cre", false),
            ("a longer one does not", "s3cret", "s3crets", false),
            ("a repetition does not", "ab", "abab", false),
            ("empty given does not", "s3cret", "", false),
            ("an unset secret matches nothing", "", "", false),
            ("an unset secret matches nothing given", "", "x", false),
            ("case matters", "Secret", "secret", false),
            ("non-ASCII matches itself", "ключ", "ключ", true),
        ];
        for (name, expected, given, matches) in cases {
            assert_eq!(secret_matches(expected, given), matches, "{name}");
        }
    }

    #[test]
    fn the_request_yields_its_conversion_identity() {
        let request = parse(&query("cid=a&et=FTD&tid=9"), "USD", rate).unwrap();
        assert_eq!(
            request.key(),
            ConversionKey {
                click_id: "a".into(),
                event: "ftd".into(),
                txid: "9".into()
            }
        );
    }
}
