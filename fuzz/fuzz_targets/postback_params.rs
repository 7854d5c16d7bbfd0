//! Postback parameters and bodies: the first byte picks a query string, a form body or a JSON
//! body. Parsing never panics; a refusal carries one of SPEC §9's 400 codes; an accepted report
//! has a bounded click id, a valid event and an ISO 4217-shaped currency.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smartlink::postback::{parse, RawParams, MAX_VALUE_BYTES};

const CODES: &[&str] = &[
    "unreplaced_macro",
    "bad_payout",
    "bad_currency",
    "bad_status",
    "bad_event",
    "missing_clickid",
    "bad_request",
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let raw = match mode % 3 {
        0 => RawParams::from_query(&String::from_utf8_lossy(rest)),
        1 => RawParams::from_form(rest),
        _ => match RawParams::from_json(rest) {
            Ok(raw) => raw,
            Err(e) => {
                assert_eq!(e.code, "bad_request");
                return;
            }
        },
    };
    let rate = |code: &str| match code {
        "EUR" => Some(1.08),
        "JPY" => Some(0.0067),
        "BIG" => Some(1e300),
        _ => None,
    };
    match parse(&raw, "USD", rate) {
        Ok(request) => {
            assert!(!request.click_id.is_empty() && request.click_id.len() <= MAX_VALUE_BYTES);
            assert!(request.txid.len() <= MAX_VALUE_BYTES);
            assert!(
                (1..=32).contains(&request.event.len()),
                "{:?}",
                request.event
            );
            assert!(request
                .event
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'));
            assert!(
                request.currency.len() == 3
                    && request.currency.bytes().all(|b| b.is_ascii_uppercase()),
                "{:?}",
                request.currency
            );
        }
        Err(e) => assert!(CODES.contains(&e.code), "unexpected code {}", e.code),
    }
});
