//! Macro expansion into URLs (`{clickid}`, `{country}`, `{param.zone}`, ...). Every value is
//! percent-encoded for its position, so no value can change a URL's scheme, host or path
//! structure, or inject CR/LF.
//!
//! A template is checked and split into literal and macro parts once, when the rules load, so
//! rendering on the click path is a plain concatenation that cannot fail.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Which macros a template may use; unknown macros are a validation error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacroSet {
    /// Offer URLs, backlinks, bot URLs (SPEC §7).
    Click,
    /// Traffic-source postback URLs (SPEC §10).
    SourcePostback,
}

const CLICK_MACROS: &[&str] = &[
    "clickid",
    "campaign",
    "offer",
    "source",
    "external_id",
    "cost",
    "country",
    "region",
    "city",
    "asn",
    "isp",
    "carrier",
    "connection",
    "os",
    "os_version",
    "browser",
    "browser_version",
    "device",
    "language",
    "ip",
];

const SOURCE_POSTBACK_MACROS: &[&str] = &[
    "external_id",
    "clickid",
    "payout",
    "currency",
    "event",
    "status",
    "txid",
    "campaign",
    "offer",
    "cost",
    "country",
];

impl MacroSet {
    /// The fixed macro names of this set; `param.NAME` is allowed in both sets besides these.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            MacroSet::Click => CLICK_MACROS,
            MacroSet::SourcePostback => SOURCE_POSTBACK_MACROS,
        }
    }

    /// Whether `{name}` may appear in a template of this set.
    pub fn allows(self, name: &str) -> bool {
        match name.strip_prefix("param.") {
            Some(param) => valid_param_name(param),
            None => self.names().contains(&name),
        }
    }
}

/// Query parameter names as sources send them; braces and whitespace would make the template
/// ambiguous to read, so they are the only characters refused.
fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '{' && c != '}')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("not an http(s) URL: {0}")]
    NotHttp(String),
    #[error("unknown macro {{{0}}}")]
    UnknownMacro(String),
    #[error("{0}")]
    Malformed(String),
}

/// Supplies macro values by name (`clickid`, `country`, `param.zone`, ...); `None` renders empty.
pub trait MacroValues {
    fn value(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// No values at all: every macro renders empty.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoValues;

impl MacroValues for NoValues {
    fn value(&self, _name: &str) -> Option<Cow<'_, str>> {
        None
    }
}

impl<S: BuildHasher> MacroValues for HashMap<String, String, S> {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

/// Name–value pairs; the first pair with the name wins.
impl<K: AsRef<str>, V: AsRef<str>> MacroValues for [(K, V)] {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        self.iter()
            .find(|(key, _)| key.as_ref() == name)
            .map(|(_, v)| Cow::Borrowed(v.as_ref()))
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> MacroValues for [(K, V); N] {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        self[..].value(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> MacroValues for Vec<(K, V)> {
    fn value(&self, name: &str) -> Option<Cow<'_, str>> {
        self[..].value(name)
    }
}

/// Everything but the RFC 3986 unreserved characters, so a value is inert in any URL position:
/// it cannot close a query pair (`&`, `=`), start a fragment (`#`), add a path level (`/`),
/// or smuggle a header line (CR, LF).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Non-ASCII characters in a template's literal text, so the rendered URL is plain ASCII and
/// safe in a `Location` header. Reserved ASCII stays as written: it is the URL's structure.
const LITERAL_NON_ASCII: &AsciiSet = percent_encoding::CONTROLS;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    Macro(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Macro(Box<str>),
    /// A path segment with macros and nothing but dots around them. Browsers resolve a segment
    /// that comes out as `.` or `..` (also spelled `%2e`) as a directory step, so when a value
    /// would produce one the segment is rendered as if its macros were empty.
    DotGuarded(Box<[Piece]>),
}

/// A parsed URL with macros, validated once at rule load so rendering cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    text: String,
    parts: Box<[Part]>,
    /// Bytes of literal text, to size the output buffer once.
    literal_len: usize,
}

impl UrlTemplate {
    /// Checks `text` is an absolute `http`/`https` URL with a host, whose macros all belong to
    /// `allowed` and sit after the authority (a macro in the host could send the visitor to any
    /// site), and splits it for rendering.
    pub fn parse(text: &str, allowed: MacroSet) -> Result<UrlTemplate, TemplateError> {
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(TemplateError::Malformed(format!(
                "contains {}; percent-encode it",
                describe_char(c)
            )));
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| TemplateError::NotHttp(text.to_string()))?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(TemplateError::NotHttp(text.to_string()));
        }
        let authority_len = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        if authority.contains(['{', '}']) {
            return Err(TemplateError::Malformed(
                "macros are not allowed in the host, port or user part".to_string(),
            ));
        }
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host_only = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.split(':').next().unwrap_or(""),
        };
        if host_only.is_empty() {
            return Err(TemplateError::Malformed("no host".to_string()));
        }
        if !authority.is_ascii() {
            return Err(TemplateError::Malformed(
                "host is not ASCII; write it in its punycode (xn--) form".to_string(),
            ));
        }

        let head_len = scheme.len() + 3 + authority_len;
        let tail = &text[head_len..];
        let mut parts = vec![Part::Literal(text[..head_len].into())];
        let path_len = tail.find(['?', '#']).unwrap_or(tail.len());
        split_path(&tail[..path_len], allowed, &mut parts)?;
        for piece in split_macros(&tail[path_len..], allowed)? {
            parts.push(match piece {
                Piece::Literal(l) => Part::Literal(l),
                Piece::Macro(m) => Part::Macro(m),
            });
        }
        let parts = merge_literals(parts);
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.len(),
                Part::Macro(_) => 0,
                Part::DotGuarded(pieces) => pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Literal(l) => l.len(),
                        Piece::Macro(_) => 0,
                    })
                    .sum(),
            })
            .sum();
        let template = UrlTemplate {
            text: text.to_string(),
            parts: parts.into_boxed_slice(),
            literal_len,
        };

        // The url crate has the final word on what browsers will accept as a URL.
        let empty = template.render(&NoValues);
        let parsed = url::Url::parse(&empty)
            .map_err(|e| TemplateError::Malformed(format!("not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(TemplateError::NotHttp(text.to_string()));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(TemplateError::Malformed("no host".to_string()));
        }
        Ok(template)
    }

    /// The template as written in the rules.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The macro names the template uses, in order of appearance (repeats included).
    pub fn macros(&self) -> impl Iterator<Item = &str> + '_ {
        self.parts.iter().flat_map(|part| {
            let names: Box<dyn Iterator<Item = &str>> = match part {
                Part::Literal(_) => Box::new(std::iter::empty()),
                Part::Macro(name) => Box::new(std::iter::once(&**name)),
                Part::DotGuarded(pieces) => Box::new(pieces.iter().filter_map(|p| match p {
                    Piece::Macro(name) => Some(&**name),
                    Piece::Literal(_) => None,
                })),
            };
            names
        })
    }

    /// Whether the template has any macro at all (a constant URL can be cached by callers).
    pub fn has_macros(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    pub fn render(&self, values: &dyn MacroValues) -> String {
        let mut out = String::with_capacity(self.literal_len + 32);
        for part in self.parts.iter() {
            match part {
                Part::Literal(literal) => out.push_str(literal),
                Part::Macro(name) => push_value(&mut out, values, name),
                Part::DotGuarded(pieces) => {
                    let start = out.len();
                    for piece in pieces.iter() {
                        match piece {
                            Piece::Literal(literal) => out.push_str(literal),
                            Piece::Macro(name) => push_value(&mut out, values, name),
                        }
                    }
                    if is_dot_segment(&out[start..]) {
                        out.truncate(start);
                        for piece in pieces.iter() {
                            if let Piece::Literal(literal) = piece {
                                out.push_str(literal);
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

impl serde::Serialize for UrlTemplate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl std::fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn push_value(out: &mut String, values: &dyn MacroValues, name: &str) {
    if let Some(value) = values.value(name) {
        out.extend(utf8_percent_encode(&value, VALUE));
    }
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\r' => "a carriage return".to_string(),
        '\n' => "a line feed".to_string(),
        '\t' => "a tab".to_string(),
        c => format!("the character U+{:04X}", u32::from(c)),
    }
}

/// Splits the path into segments so a segment that a value could turn into `.`/`..` is guarded.
fn split_path(path: &str, allowed: MacroSet, parts: &mut Vec<Part>) -> Result<(), TemplateError> {
    // A literal `.` or `..` segment in a path with macros would step over the segments values
    // fill, so the path a visitor reaches would depend on them.
    if path.contains('{') {
        if let Some(dots) = path
            .split(['/', '\\'])
            .find(|segment| is_dot_segment(segment))
        {
            return Err(TemplateError::Malformed(format!(
                "path has a directory step `{dots}` next to macros; write the path it resolves to"
            )));
        }
    }
    let mut rest = path;
    while !rest.is_empty() {
        let sep = rest.find(['/', '\\']);
        let (segment, after) = match sep {
            Some(0) => {
                parts.push(Part::Literal(rest[..1].into()));
                rest = &rest[1..];
                continue;
            }
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let pieces = split_macros(segment, allowed)?;
        let has_macro = pieces.iter().any(|p| matches!(p, Piece::Macro(_)));
        let only_dots = pieces.iter().all(|p| match p {
            Piece::Literal(l) => is_dotlike(l),
            Piece::Macro(_) => true,
        });
        if has_macro && only_dots {
            let literal: String = pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Literal(l) => Some(&**l),
                    Piece::Macro(_) => None,
                })
                .collect();
            if is_dot_segment(&literal) {
                return Err(TemplateError::Malformed(format!(
                    "path segment `{segment}` is a directory step (`{literal}`) when its values \
                     are empty; put other text next to the macro"
                )));
            }
            parts.push(Part::DotGuarded(pieces.into_boxed_slice()));
        } else {
            parts.extend(pieces.into_iter().map(|p| match p {
                Piece::Literal(l) => Part::Literal(l),
                Piece::Macro(m) => Part::Macro(m),
            }));
        }
        rest = after;
    }
    Ok(())
}

/// Literal text that could be part of a dot segment once values are placed next to it.
fn is_dotlike(literal: &str) -> bool {
    literal
        .bytes()
        .all(|b| matches!(b, b'.' | b'%' | b'2' | b'e' | b'E'))
}

/// `.` and `..` in any of the spellings the WHATWG URL parser resolves.
fn is_dot_segment(segment: &str) -> bool {
    let mut dots = 0;
    let mut rest = segment.as_bytes();
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

fn split_macros(text: &str, allowed: MacroSet) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    loop {
        let open = rest.find('{');
        let close = rest.find('}');
        match (open, close) {
            (None, None) => break,
            (None, Some(_)) => {
                return Err(TemplateError::Malformed(
                    "`}` without a matching `{`".to_string(),
                ))
            }
            (Some(o), Some(c)) if c < o => {
                return Err(TemplateError::Malformed(
                    "`}` without a matching `{`".to_string(),
                ))
            }
            (Some(_), None) => {
                return Err(TemplateError::Malformed(
                    "`{` without a closing `}`".to_string(),
                ))
            }
            (Some(o), Some(c)) => {
                let name = &rest[o + 1..c];
                if name.contains('{') {
                    return Err(TemplateError::Malformed(
                        "`{` without a closing `}`".to_string(),
                    ));
                }
                if !allowed.allows(name) {
                    return Err(TemplateError::UnknownMacro(name.to_string()));
                }
                if o > 0 {
                    pieces.push(Piece::Literal(encode_literal(&rest[..o])));
                }
                pieces.push(Piece::Macro(name.into()));
                rest = &rest[c + 1..];
            }
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(encode_literal(rest)));
    }
    Ok(pieces)
}

fn encode_literal(text: &str) -> Box<str> {
    utf8_percent_encode(text, LITERAL_NON_ASCII)
        .collect::<String>()
        .into_boxed_str()
}

fn merge_literals(parts: Vec<Part>) -> Vec<Part> {
    let mut merged: Vec<Part> = Vec::with_capacity(parts.len());
    for part in parts {
        match (merged.last_mut(), part) {
            (Some(Part::Literal(prev)), Part::Literal(next)) => {
                let mut joined = String::from(std::mem::take(prev));
                joined.push_str(&next);
                *prev = joined.into_boxed_str();
            }
            (_, part) => merged.push(part),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_are_percent_encoded_as_query_components() {
        let t = UrlTemplate::parse(
            "https://net.example/click?aff=12&sub1={clickid}&sub2={param.zone}",
            MacroSet::Click,
        )
        .unwrap();
        let url = t.render(&[
            ("clickid", "abc-123_x.y~z"),
            ("param.zone", "a b&c=d#e/f?g\r\nh%"),
        ]);
        assert_eq!(
            url,
            "https://net.example/click?aff=12&sub1=abc-123_x.y~z&sub2=a%20b%26c%3Dd%23e%2Ff%3Fg%0D%0Ah%25"
        );
    }

    #[test]
    fn a_missing_value_renders_empty() {
        let t =
            UrlTemplate::parse("https://a.example/?c={country}&x={city}", MacroSet::Click).unwrap();
        assert_eq!(t.render(&[("country", "US")]), "https://a.example/?c=US&x=");
        assert_eq!(t.render(&NoValues), "https://a.example/?c=&x=");
    }

    #[test]
    fn unicode_values_are_utf8_percent_encoded() {
        let t = UrlTemplate::parse("https://a.example/?city={city}", MacroSet::Click).unwrap();
        assert_eq!(
            t.render(&[("city", "München")]),
            "https://a.example/?city=M%C3%BCnchen"
        );
    }

    #[test]
    fn as_str_gives_the_template_as_written() {
        let text = "https://a.example/p/{offer}?q={param.sub id}";
        let err = UrlTemplate::parse(text, MacroSet::Click).unwrap_err();
        assert!(matches!(err, TemplateError::Malformed(_)), "{err}");
        let text = "https://a.example/p/{offer}?q={param.s2}";
        assert_eq!(
            UrlTemplate::parse(text, MacroSet::Click).unwrap().as_str(),
            text
        );
    }

    #[test]
    fn macros_lists_the_names_in_order() {
        let t = UrlTemplate::parse(
            "https://a.example/{offer}/x?a={clickid}&b={param.zone}",
            MacroSet::Click,
        )
        .unwrap();
        assert_eq!(
            t.macros().collect::<Vec<_>>(),
            ["offer", "clickid", "param.zone"]
        );
        assert!(t.has_macros());
        assert!(!UrlTemplate::parse("https://a.example/", MacroSet::Click)
            .unwrap()
            .has_macros());
    }

    #[test]
    fn other_schemes_and_relative_urls_are_refused() {
        for text in [
            "ftp://a.example/",
            "javascript:alert(1)",
            "//a.example/",
            "/path",
            "a.example/x",
            "",
            "https:/a.example/",
            "{clickid}://a.example/",
            "data:text/html,hi",
        ] {
            let err = UrlTemplate::parse(text, MacroSet::Click).unwrap_err();
            assert!(matches!(err, TemplateError::NotHttp(_)), "{text}: {err:?}");
        }
    }

    #[test]
    fn an_empty_host_is_refused() {
        for text in [
            "https:///path",
            "http://",
            "https://?q=1",
            "https://user@/x",
        ] {
            let err = UrlTemplate::parse(text, MacroSet::Click).unwrap_err();
            assert_eq!(err, TemplateError::Malformed("no host".into()), "{text}");
        }
    }

    #[test]
    fn macros_in_the_authority_are_refused() {
        for text in [
            "https://{country}.example/",
            "https://a.example:{cost}/",
            "https://{clickid}@a.example/",
            "https://a{param.x}/",
        ] {
            let err = UrlTemplate::parse(text, MacroSet::Click).unwrap_err();
            assert!(
                matches!(err, TemplateError::Malformed(_)),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn unknown_macros_are_refused_per_set() {
        let err = UrlTemplate::parse("https://a.example/?p={payout}", MacroSet::Click).unwrap_err();
        assert_eq!(err, TemplateError::UnknownMacro("payout".into()));
        assert_eq!(err.to_string(), "unknown macro {payout}");
        assert!(
            UrlTemplate::parse("https://a.example/?p={payout}", MacroSet::SourcePostback).is_ok()
        );
        let err =
            UrlTemplate::parse("https://a.example/?o={os}", MacroSet::SourcePostback).unwrap_err();
        assert_eq!(err, TemplateError::UnknownMacro("os".into()));
        for name in ["param.", "Clickid", "click id", ""] {
            let text = format!("https://a.example/?x={{{name}}}");
            assert!(
                matches!(
                    UrlTemplate::parse(&text, MacroSet::Click),
                    Err(TemplateError::UnknownMacro(_) | TemplateError::Malformed(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn every_documented_macro_is_accepted() {
        for set in [MacroSet::Click, MacroSet::SourcePostback] {
            let mut text = String::from("https://a.example/?");
            for name in set.names() {
                text.push_str(&format!("{name}={{{name}}}&"));
            }
            text.push_str("z={param.zone}");
            assert!(UrlTemplate::parse(&text, set).is_ok(), "{text}");
        }
    }

    #[test]
    fn unbalanced_braces_are_refused() {
        for text in [
            "https://a.example/?x={clickid",
            "https://a.example/?x=clickid}",
            "https://a.example/?x={{clickid}}",
        ] {
            let err = UrlTemplate::parse(text, MacroSet::Click).unwrap_err();
            assert!(
                matches!(err, TemplateError::Malformed(_)),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn whitespace_and_control_characters_in_the_template_are_refused() {
        for text in [
            " https://a.example/",
            "https://a.example/ x",
            "https://a.example/\r\nX-Evil: 1",
            "https://a.example/\t",
        ] {
            let err = UrlTemplate::parse(text, MacroSet::Click).unwrap_err();
            assert!(
                matches!(err, TemplateError::Malformed(_)),
                "{text:?}: {err:?}"
            );
        }
    }

    #[test]
    fn non_ascii_literal_text_is_percent_encoded_and_non_ascii_hosts_refused() {
        let t = UrlTemplate::parse("https://a.example/café?x={clickid}", MacroSet::Click).unwrap();
        assert_eq!(t.render(&NoValues), "https://a.example/caf%C3%A9?x=");
        assert!(UrlTemplate::parse("https://café.example/", MacroSet::Click).is_err());
    }

    #[test]
    fn a_value_cannot_turn_a_path_segment_into_a_directory_step() {
        let t = UrlTemplate::parse("https://a.example/a/{param.x}/b?q=1", MacroSet::Click).unwrap();
        for evil in ["..", ".", "%2e%2E", ".%2e"] {
            let rendered = t.render(&[("param.x", evil)]);
            let parsed = url::Url::parse(&rendered).unwrap();
            assert_eq!(
                parsed.path_segments().unwrap().count(),
                3,
                "{evil}: {rendered}"
            );
        }
        assert!(UrlTemplate::parse("https://a.example/a/.{param.x}/b", MacroSet::Click).is_err());
        assert!(
            UrlTemplate::parse("https://a.example/a/{offer}.{param.x}/b", MacroSet::Click).is_err()
        );
        // A segment with other literal text around the value cannot become a dot segment.
        let t = UrlTemplate::parse("https://a.example/a/x{param.x}/b", MacroSet::Click).unwrap();
        assert_eq!(t.render(&[("param.x", "..")]), "https://a.example/a/x../b");
    }

    #[test]
    fn the_template_serializes_as_written() {
        let t = UrlTemplate::parse("https://a.example/?c={clickid}", MacroSet::Click).unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"https://a.example/?c={clickid}\""
        );
    }

    const PROPERTY_TEMPLATES: &[&str] = &[
        "https://net.example/click?aff=12&sub1={clickid}&sub2={param.zone}",
        "http://net.example:8080/{offer}/{param.zone}/x?c={country}#{clickid}",
        "https://user:pw@net.example/p/{param.a}{param.b}/q?{param.a}={param.b}",
        "https://net.example/{param.a}",
        "https://net.example/{param.a}{param.b}/{param.b}/x{param.a}/%2{param.a}/{param.a}...",
        "https://[2001:db8::1]/{param.a}?x={ip}&y={isp}",
        "https://net.example?only={param.a}",
        "https://net.example#{param.a}",
    ];

    fn arbitrary_value() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "[./:@#?%\\\\\r\n &=+{}\\[\\]]{0,6}",
            Just("..".to_string()),
            Just("%2e%2e".to_string()),
            Just("//evil.example".to_string()),
            Just("@evil.example".to_string()),
            Just("\r\nLocation: https://evil.example".to_string()),
            "\\PC{0,8}",
        ]
    }

    #[test]
    fn a_directory_step_next_to_macros_is_refused() {
        // Found by fuzzing: `..` after a segment a value fills let the value decide the path.
        for text in [
            "http://5/{param.p}J:/..",
            "https://a.example/{clickid}/../x",
            "https://a.example/./{clickid}",
            "https://a.example/{clickid}/%2e",
        ] {
            assert!(
                matches!(
                    UrlTemplate::parse(text, MacroSet::Click),
                    Err(TemplateError::Malformed(_))
                ),
                "{text}"
            );
        }
        // Without macros the URL is what it is.
        assert!(UrlTemplate::parse("https://a.example/x/../y", MacroSet::Click).is_ok());
    }

    proptest! {
        #[test]
        fn no_value_changes_scheme_host_port_or_path_structure(
            template_index in 0..PROPERTY_TEMPLATES.len(),
            a in arbitrary_value(),
            b in arbitrary_value(),
            c in arbitrary_value(),
        ) {
            let t = UrlTemplate::parse(PROPERTY_TEMPLATES[template_index], MacroSet::Click).unwrap();
            let pairs = [
                ("clickid", a.as_str()), ("offer", b.as_str()), ("country", c.as_str()),
                ("param.zone", a.as_str()), ("param.a", b.as_str()), ("param.b", c.as_str()),
                ("ip", a.as_str()), ("isp", c.as_str()),
            ];
            let rendered = t.render(&pairs);
            let baseline = url::Url::parse(&t.render(&NoValues)).unwrap();
            let parsed = url::Url::parse(&rendered);
            prop_assert!(parsed.is_ok(), "{rendered}");
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.scheme(), baseline.scheme());
            prop_assert_eq!(parsed.host_str(), baseline.host_str());
            prop_assert_eq!(parsed.port(), baseline.port());
            prop_assert_eq!(parsed.username(), baseline.username());
            prop_assert_eq!(
                parsed.path_segments().map(Iterator::count),
                baseline.path_segments().map(Iterator::count),
                "{}", rendered
            );
            prop_assert!(!rendered.contains(['\r', '\n', ' ']), "{rendered}");
            prop_assert!(rendered.is_ascii());
        }

        #[test]
        fn a_location_header_never_contains_cr_or_lf_whatever_the_template_and_values(
            template in "https?://[a-z]{1,6}\\.example(:[0-9]{1,4})?\
                (/([a-z.]{0,3}|%2[eE]|\\{(clickid|country|param\\.[a-z])\\}[.a-z]{0,2})){0,4}\
                (\\?([a-z]{1,3}=(\\{(clickid|isp|param\\.[a-z])\\}|[a-z0-9%.]{0,4})&?){0,4})?\
                (#[a-z]{0,3}(\\{country\\})?)?",
            a in arbitrary_value(),
            b in arbitrary_value(),
        ) {
            let Ok(t) = UrlTemplate::parse(&template, MacroSet::Click) else {
                return Ok(());
            };
            let pairs = [
                ("clickid", a.as_str()), ("country", b.as_str()), ("isp", a.as_str()),
                ("param.a", b.as_str()), ("param.b", a.as_str()), ("param.z", b.as_str()),
            ];
            let rendered = t.render(&pairs);
            prop_assert!(!rendered.contains(['\r', '\n', '\0']), "{rendered}");
            prop_assert!(
                actix_web::http::header::HeaderValue::from_str(&rendered).is_ok(),
                "{rendered}"
            );
            let baseline = url::Url::parse(&t.render(&NoValues)).unwrap();
            let parsed = url::Url::parse(&rendered).unwrap();
            prop_assert_eq!(parsed.scheme(), baseline.scheme());
            prop_assert_eq!(parsed.host_str(), baseline.host_str());
            prop_assert_eq!(parsed.port(), baseline.port());
            prop_assert_eq!(
                parsed.path_segments().map(Iterator::count),
                baseline.path_segments().map(Iterator::count),
                "{} from {}", rendered, template
            );
        }

        #[test]
        fn every_macro_in_both_sets_is_inert(value in arbitrary_value()) {
            for set in [MacroSet::Click, MacroSet::SourcePostback] {
                let mut text = String::from("https://pb.example/a/{param.p}?");
                for name in set.names() {
                    text.push_str(&format!("{name}={{{name}}}&"));
                }
                let t = UrlTemplate::parse(&text, set).unwrap();
                let all: Vec<(&str, &str)> = set.names().iter().map(|n| (*n, value.as_str()))
                    .chain([("param.p", value.as_str())]).collect();
                let rendered = t.render(&all);
                let parsed = url::Url::parse(&rendered).unwrap();
                prop_assert_eq!(parsed.host_str(), Some("pb.example"));
                prop_assert_eq!(parsed.path_segments().map(Iterator::count), Some(2));
                prop_assert_eq!(parsed.query_pairs().count(), set.names().len());
                prop_assert!(parsed.fragment().is_none());
                for (name, got) in parsed.query_pairs() {
                    prop_assert_eq!(got.as_ref(), value.as_str(), "{}", name);
                }
            }
        }
    }
}
