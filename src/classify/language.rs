//! The visitor's language (SPEC §6): the primary subtag of the first `Accept-Language` entry.
//!
//! The header is the client's ordered preference list. Browsers always put the user's first
//! choice first, so the first usable entry is taken as given and q-values are not re-sorted;
//! the only q-value honoured is `q=0`, which explicitly means "not acceptable".

/// Bytes of the header looked at. Real headers are well under this; the bound keeps the work
/// per request constant whatever a client sends.
const MAX_HEADER_BYTES: usize = 1024;

/// Entries looked at before giving up, for the same reason.
const MAX_ENTRIES: usize = 16;

/// Primary language subtag of the first entry of an `Accept-Language` header, lower case:
/// `en-US,en;q=0.9` → `en`. The wildcard `*`, empty entries and `q=0` entries are passed over;
/// a first real entry that is not a language tag (`12345`, `en US`) gives `None` rather than a
/// guess from later entries.
pub fn primary_language(accept_language: Option<&str>) -> Option<String> {
    let header = bounded(accept_language?);
    for entry in header.split(',').take(MAX_ENTRIES) {
        let mut params = entry.split(';');
        let range = params.next().unwrap_or("").trim();
        if range.is_empty() || range == "*" {
            continue;
        }
        if params.any(is_q_zero) {
            continue;
        }
        return primary_subtag(range);
    }
    None
}

/// The header cut to `MAX_HEADER_BYTES` on a character boundary. A cut entry at the end can
/// only be reached after `MAX_ENTRIES` earlier ones in practice, so cutting it is harmless.
fn bounded(header: &str) -> &str {
    if header.len() <= MAX_HEADER_BYTES {
        return header;
    }
    let mut end = MAX_HEADER_BYTES;
    while !header.is_char_boundary(end) {
        end -= 1;
    }
    &header[..end]
}

fn is_q_zero(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    if !name.trim().eq_ignore_ascii_case("q") {
        return false;
    }
    let value = value.trim();
    // RFC 9110 qvalue: "0" followed by up to three decimals; any non-zero digit makes it positive.
    value.starts_with('0') && value.bytes().all(|b| b == b'0' || b == b'.')
}

/// The primary subtag of a language range (BCP 47: 2–3 letters, or 4–8 for registered ones).
/// Underscores are accepted as separators because some clients send POSIX locales (`pt_BR`).
fn primary_subtag(range: &str) -> Option<String> {
    let primary = range.split(['-', '_']).next().unwrap_or("");
    let valid =
        (2..=8).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
    if !valid {
        return None;
    }
    // The rest must look like subtags too, so that junk that merely starts with letters is refused.
    let rest_ok = range
        .split(['-', '_'])
        .skip(1)
        .all(|tag| (1..=8).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_alphanumeric()));
    rest_ok.then(|| primary.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::primary_language;

    fn check(header: Option<&str>, expected: Option<&str>) {
        assert_eq!(
            primary_language(header).as_deref(),
            expected,
            "Accept-Language: {header:?}"
        );
    }

    #[test]
    fn the_primary_subtag_of_the_first_entry_is_taken_in_lower_case() {
        let table: &[(&str, Option<&str>)] = &[
            ("en-US,en;q=0.9", Some("en")),
            ("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", Some("de")),
            ("FR", Some("fr")),
            ("pt-BR", Some("pt")),
            ("pt_BR", Some("pt")),
            ("zh-Hant-TW,zh;q=0.9", Some("zh")),
            ("  es-419 , es;q=0.8", Some("es")),
            ("fil-PH", Some("fil")),
            ("ru;q=0.5,en;q=1.0", Some("ru")),
        ];
        for (header, expected) in table {
            check(Some(header), *expected);
        }
    }

    #[test]
    fn wildcards_empty_entries_and_unacceptable_entries_are_passed_over() {
        check(Some("*"), None);
        check(Some("*, it;q=0.5"), Some("it"));
        check(Some(",,en"), Some("en"));
        check(Some("fr;q=0, en"), Some("en"));
        check(Some("fr;q=0.000, en"), Some("en"));
        check(Some("fr;q=0.001, en"), Some("fr"));
    }

    #[test]
    fn a_missing_or_junk_header_gives_no_language() {
        check(None, None);
        check(Some(""), None);
        check(Some("   "), None);
        check(Some("12345"), None);
        check(Some("e"), None);
        check(Some("english language"), None);
        check(Some("en-US!!"), None);
        check(Some("ру-RU"), None);
        check(Some("abcdefghi"), None);
    }

    #[test]
    fn a_huge_header_costs_bounded_work() {
        let huge = format!("{}en", ",".repeat(1_000_000));
        check(Some(&huge), None);
        let long_tail = format!("en-GB,{}", "x-y;q=0.1,".repeat(100_000));
        check(Some(&long_tail), Some("en"));
        let multibyte = "é".repeat(10_000);
        check(Some(&multibyte), None);
    }
}
