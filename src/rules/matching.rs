//! Match conditions over the dimensions of SPEC §5, evaluated against a visitor and the click's
//! query parameters. Pure: no I/O.
//!
//! Lists are folded to lower case when the rules compile, so a check on the click path compares
//! in place and allocates nothing; only the explain reasons build strings.

use std::cmp::Ordering;
use std::fmt::Write as _;

use ipnet::IpNet;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::visitor::{Connection, Device, Os, QueryParams, Visitor};

/// The dimension names of SPEC §5 besides `param.NAME`, in the order conditions are checked and
/// explained.
pub const DIMENSIONS: &[&str] = &[
    "country",
    "region",
    "city",
    "asn",
    "isp",
    "carrier",
    "connection",
    "os",
    "os_version_min",
    "os_version_max",
    "browser",
    "device",
    "language",
    "ip",
];

/// A set of dimension conditions (`[x.match]` or `[x.exclude]`). Empty = no condition.
#[derive(Debug, Default, Clone)]
pub struct Conditions {
    /// In `DIMENSIONS` order, then `param.NAME` by name, so explain output is stable.
    tests: Vec<Condition>,
}

/// One dimension's condition, already validated and normalised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    Text {
        dim: TextDim,
        list: TextList,
    },
    Param {
        name: Box<str>,
        list: TextList,
    },
    Asn(Box<[u32]>),
    Connection(Box<[Connection]>),
    Os(Box<[Os]>),
    Device(Box<[Device]>),
    OsVersion {
        bound: Bound,
        version: Version,
    },
    /// Networks with their spelling in the rules, for explain and the API.
    Ip(Box<[(IpNet, Box<str>)]>),
}

/// Free-text dimensions of the visitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextDim {
    Country,
    Region,
    City,
    Isp,
    Carrier,
    Browser,
    Language,
}

impl TextDim {
    fn name(self) -> &'static str {
        match self {
            TextDim::Country => "country",
            TextDim::Region => "region",
            TextDim::City => "city",
            TextDim::Isp => "isp",
            TextDim::Carrier => "carrier",
            TextDim::Browser => "browser",
            TextDim::Language => "language",
        }
    }

    fn of(self, visitor: &Visitor) -> Option<&str> {
        match self {
            TextDim::Country => visitor.country.as_deref(),
            TextDim::Region => visitor.region.as_deref(),
            TextDim::City => visitor.city.as_deref(),
            TextDim::Isp => visitor.isp.as_deref(),
            TextDim::Carrier => visitor.carrier.as_deref(),
            TextDim::Browser => visitor.browser.as_deref(),
            TextDim::Language => visitor.language.as_deref(),
        }
    }
}

/// Values as written (for explain and the API) and case-folded (for matching).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TextList {
    written: Box<[Box<str>]>,
    folded: Box<[Box<str>]>,
}

impl TextList {
    pub(crate) fn new(values: Vec<String>) -> TextList {
        let folded = values.iter().map(|v| fold(v).into_boxed_str()).collect();
        TextList {
            written: values.into_iter().map(String::into_boxed_str).collect(),
            folded,
        }
    }

    fn contains(&self, candidate: &str) -> bool {
        if candidate.is_ascii() {
            self.folded
                .iter()
                .any(|f| candidate.eq_ignore_ascii_case(f))
        } else {
            self.folded.iter().any(|f| eq_folded(candidate, f))
        }
    }
}

/// Per-character lower case: unlike `str::to_lowercase` it has no context rules (final sigma),
/// so `eq_folded` can compare character by character without allocating.
fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

fn eq_folded(candidate: &str, folded: &str) -> bool {
    if candidate.is_ascii() {
        candidate.eq_ignore_ascii_case(folded)
    } else {
        candidate
            .chars()
            .flat_map(char::to_lowercase)
            .eq(folded.chars())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    Min,
    Max,
}

const VERSION_PARTS: usize = 4;

/// A dotted numeric version (`12`, `14.4.1`), compared on as many components as the rule gives,
/// so `os_version_max = "12"` includes 12.4 and `os_version_min = "12.1"` excludes 12.0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    parts: [u32; VERSION_PARTS],
    len: usize,
    text: Box<str>,
}

impl Version {
    /// Strict, for rules: one to four dot-separated numbers.
    pub(crate) fn parse_rule(text: &str) -> Option<Version> {
        let mut parts = [0; VERSION_PARTS];
        let mut len = 0;
        for component in text.split('.') {
            if len == VERSION_PARTS
                || component.is_empty()
                || !component.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            parts[len] = component.parse().ok()?;
            len += 1;
        }
        Some(Version {
            parts,
            len,
            text: text.into(),
        })
    }

    /// Compares the visitor's version (lenient: `10_15_7`, `13.1.x`) with this one. `None` when
    /// the visitor's version has no leading number.
    fn compare_visitor(&self, visitor: &str) -> Option<Ordering> {
        let mut components = visitor.split(['.', '_']);
        let mut seen_any = false;
        for &want in &self.parts[..self.len] {
            let have = match components.next().and_then(leading_number) {
                Some(n) => {
                    seen_any = true;
                    n
                }
                None if seen_any => 0,
                None => return None,
            };
            match have.cmp(&want) {
                Ordering::Equal => {}
                other => return Some(other),
            }
        }
        Some(Ordering::Equal)
    }
}

fn leading_number(component: &str) -> Option<u32> {
    let digits = component.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    // Absurdly long numbers saturate rather than making the version unknown.
    Some(component[..digits].parse().unwrap_or(u32::MAX))
}

impl Condition {
    fn rank(&self) -> (usize, &str) {
        let name = match self {
            Condition::Text { dim, .. } => dim.name(),
            Condition::Param { name, .. } => return (DIMENSIONS.len(), name),
            Condition::Asn(_) => "asn",
            Condition::Connection(_) => "connection",
            Condition::Os(_) => "os",
            Condition::Device(_) => "device",
            Condition::OsVersion {
                bound: Bound::Min, ..
            } => "os_version_min",
            Condition::OsVersion {
                bound: Bound::Max, ..
            } => "os_version_max",
            Condition::Ip(_) => "ip",
        };
        let index = DIMENSIONS.iter().position(|d| *d == name).unwrap_or(0);
        (index, "")
    }

    /// The key as written in the rules.
    fn key(&self) -> String {
        match self {
            Condition::Param { name, .. } => format!("param.{name}"),
            other => DIMENSIONS[other.rank().0].to_string(),
        }
    }

    /// The visitor dimension named in reasons (`os_version` for both bounds).
    fn label(&self) -> String {
        match self {
            Condition::OsVersion { .. } => "os_version".to_string(),
            other => other.key(),
        }
    }

    fn matches(&self, visitor: &Visitor, params: &QueryParams) -> bool {
        match self {
            Condition::Text { dim, list } => dim.of(visitor).is_some_and(|v| list.contains(v)),
            Condition::Param { name, list } => params.get(name).is_some_and(|v| list.contains(v)),
            Condition::Asn(list) => visitor.asn.is_some_and(|asn| list.contains(&asn)),
            Condition::Connection(list) => list.contains(&visitor.connection),
            Condition::Os(list) => list.contains(&visitor.os),
            Condition::Device(list) => list.contains(&visitor.device),
            Condition::OsVersion { bound, version } => visitor
                .os_version
                .as_deref()
                .and_then(|v| version.compare_visitor(v))
                .is_some_and(|ord| match bound {
                    Bound::Min => ord != Ordering::Less,
                    Bound::Max => ord != Ordering::Greater,
                }),
            Condition::Ip(nets) => {
                let ip = visitor.ip.to_canonical();
                nets.iter().any(|(net, _)| net.contains(&ip))
            }
        }
    }

    /// The visitor's value for reasons; `None` = unknown.
    fn visitor_value(&self, visitor: &Visitor, params: &QueryParams) -> Option<String> {
        match self {
            Condition::Text { dim, .. } => dim.of(visitor).map(str::to_string),
            Condition::Param { name, .. } => params.get(name).map(str::to_string),
            Condition::Asn(_) => visitor.asn.map(|a| a.to_string()),
            Condition::Connection(_) => Some(visitor.connection.to_string()),
            Condition::Os(_) => Some(visitor.os.to_string()),
            Condition::Device(_) => Some(visitor.device.to_string()),
            Condition::OsVersion { .. } => visitor.os_version.clone(),
            Condition::Ip(_) => Some(visitor.ip.to_canonical().to_string()),
        }
    }

    /// The values as written, for reasons and serialisation.
    fn written(&self) -> Vec<String> {
        match self {
            Condition::Text { list, .. } | Condition::Param { list, .. } => {
                list.written.iter().map(|v| v.to_string()).collect()
            }
            Condition::Asn(list) => list.iter().map(u32::to_string).collect(),
            Condition::Connection(list) => list.iter().map(|v| v.to_string()).collect(),
            Condition::Os(list) => list.iter().map(|v| v.to_string()).collect(),
            Condition::Device(list) => list.iter().map(|v| v.to_string()).collect(),
            Condition::OsVersion { version, .. } => vec![version.text.to_string()],
            Condition::Ip(nets) => nets.iter().map(|(_, text)| text.to_string()).collect(),
        }
    }

    fn failure(&self, visitor: &Visitor, params: &QueryParams) -> String {
        let value = self.visitor_value(visitor, params);
        if let Condition::OsVersion { bound, version } = self {
            let known = value
                .as_deref()
                .filter(|v| version.compare_visitor(v).is_some());
            return match (known, bound) {
                (Some(v), Bound::Min) => format!("os_version {v} below {}", version.text),
                (Some(v), Bound::Max) => format!("os_version {v} above {}", version.text),
                (None, Bound::Min) => format!("os_version unknown, need >= {}", version.text),
                (None, Bound::Max) => format!("os_version unknown, need <= {}", version.text),
            };
        }
        let mut reason = self.label();
        let _ = write!(
            reason,
            " {} not in [{}]",
            value.as_deref().unwrap_or("unknown"),
            self.written().join(", ")
        );
        reason
    }

    fn hit(&self, visitor: &Visitor, params: &QueryParams) -> String {
        let value = self.visitor_value(visitor, params).unwrap_or_default();
        match self {
            Condition::OsVersion { bound, version } => {
                let limit = match bound {
                    Bound::Min => "min",
                    Bound::Max => "max",
                };
                format!("os_version {value} excluded ({limit} {})", version.text)
            }
            _ => format!("{} {value} excluded", self.label()),
        }
    }
}

impl Conditions {
    /// Orders the conditions canonically; the loader guarantees one condition per dimension.
    pub(crate) fn new(mut tests: Vec<Condition>) -> Conditions {
        tests.sort_by(|a, b| a.rank().cmp(&b.rank()));
        Conditions { tests }
    }

    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// Number of dimensions listed.
    pub fn len(&self) -> usize {
        self.tests.len()
    }

    /// `match` semantics: every listed dimension matches (an empty set matches everyone).
    pub fn matches_all(&self, visitor: &Visitor, params: &QueryParams) -> bool {
        self.tests.iter().all(|t| t.matches(visitor, params))
    }

    /// `exclude` semantics: any listed dimension matches (an empty set excludes no one).
    pub fn matches_any(&self, visitor: &Visitor, params: &QueryParams) -> bool {
        self.tests.iter().any(|t| t.matches(visitor, params))
    }

    /// For `explain`: one reason per dimension that fails, e.g. `country DE not in [US]`.
    pub fn failures(&self, visitor: &Visitor, params: &QueryParams) -> Vec<String> {
        self.tests
            .iter()
            .filter(|t| !t.matches(visitor, params))
            .map(|t| t.failure(visitor, params))
            .collect()
    }

    /// For `explain`: one reason per excluding dimension that matches, e.g. `connection broadband excluded`.
    pub fn hits(&self, visitor: &Visitor, params: &QueryParams) -> Vec<String> {
        self.tests
            .iter()
            .filter(|t| t.matches(visitor, params))
            .map(|t| t.hit(visitor, params))
            .collect()
    }

    /// The query parameter names the conditions read (`param.NAME`).
    pub fn param_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tests.iter().filter_map(|t| match t {
            Condition::Param { name, .. } => Some(&**name),
            _ => None,
        })
    }
}

/// The distinct conditions of a campaign's routes and their offers, numbered, so that a click
/// checks each at most once however many routes list it (`Verdicts`).
#[derive(Debug, Default)]
pub(crate) struct CheckSet {
    checks: Vec<Condition>,
}

impl CheckSet {
    /// The numbers of the tests of `lists`, in order, adding those not seen yet.
    pub(crate) fn numbers(&mut self, lists: &[&Conditions]) -> Box<[u32]> {
        let tests = lists.iter().flat_map(|list| &list.tests);
        tests
            .map(|test| {
                let at = match self.checks.iter().position(|c| c == test) {
                    Some(at) => at,
                    None => {
                        self.checks.push(test.clone());
                        self.checks.len() - 1
                    }
                };
                u32::try_from(at).expect("fewer than 2^32 conditions")
            })
            .collect()
    }

    pub(crate) fn verdicts<'a>(
        &'a self,
        visitor: &'a Visitor,
        params: &'a QueryParams,
    ) -> Verdicts<'a> {
        Verdicts {
            checks: &self.checks,
            visitor,
            params,
            known: 0,
            value: 0,
        }
    }
}

/// One click's verdicts on a `CheckSet`, each computed when first asked for (the first 64
/// remembered; any further ones are checked every time).
pub(crate) struct Verdicts<'a> {
    checks: &'a [Condition],
    visitor: &'a Visitor,
    params: &'a QueryParams,
    known: u64,
    value: u64,
}

impl Verdicts<'_> {
    /// Every numbered condition matches (none listed: true), as `Conditions::matches_all`.
    pub(crate) fn all(&mut self, numbers: &[u32]) -> bool {
        numbers.iter().all(|&n| self.get(n))
    }

    /// Some numbered condition matches (none listed: false), as `Conditions::matches_any`.
    pub(crate) fn any(&mut self, numbers: &[u32]) -> bool {
        numbers.iter().any(|&n| self.get(n))
    }

    fn get(&mut self, number: u32) -> bool {
        let Some(bit) = 1u64.checked_shl(number) else {
            return self.check(number);
        };
        if self.known & bit == 0 {
            self.known |= bit;
            if self.check(number) {
                self.value |= bit;
            }
        }
        self.value & bit != 0
    }

    fn check(&self, number: u32) -> bool {
        self.checks[number as usize].matches(self.visitor, self.params)
    }
}

/// As the TOML is written: `{"country": ["US"], "os_version_min": "12", "param.zone": ["1"]}`,
/// so `GET /api/rules` mirrors the files.
impl Serialize for Conditions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.tests.len()))?;
        for test in &self.tests {
            let key = test.key();
            match test {
                Condition::Asn(list) => map.serialize_entry(&key, list)?,
                Condition::OsVersion { version, .. } => {
                    map.serialize_entry(&key, &*version.text)?
                }
                other => map.serialize_entry(&key, &other.written())?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::str::FromStr;

    fn text(dim: TextDim, values: &[&str]) -> Condition {
        Condition::Text {
            dim,
            list: TextList::new(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn param(name: &str, values: &[&str]) -> Condition {
        Condition::Param {
            name: name.into(),
            list: TextList::new(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn version(bound: Bound, v: &str) -> Condition {
        Condition::OsVersion {
            bound,
            version: Version::parse_rule(v).unwrap(),
        }
    }

    fn ip(nets: &[&str]) -> Condition {
        Condition::Ip(
            nets.iter()
                .map(|n| {
                    let net = IpNet::from_str(n)
                        .unwrap_or_else(|_| IpNet::from(IpAddr::from_str(n).unwrap()));
                    (net, Box::from(*n))
                })
                .collect(),
        )
    }

    fn us_android_phone() -> Visitor {
        let mut v = Visitor::unknown("203.0.113.7".parse().unwrap());
        v.country = Some("US".into());
        v.region = Some("California".into());
        v.city = Some("München".into());
        v.asn = Some(21928);
        v.isp = Some("T-Mobile USA".into());
        v.carrier = Some("T-Mobile".into());
        v.connection = Connection::Cellular;
        v.os = Os::Android;
        v.os_version = Some("13.1".into());
        v.browser = Some("Chrome".into());
        v.device = Device::Phone;
        v.language = Some("en".into());
        v
    }

    fn zone(value: &str) -> QueryParams {
        QueryParams(vec![("zone".into(), value.into())])
    }

    #[test]
    fn a_check_set_numbers_equal_conditions_once_and_verdicts_agree_with_the_lists() {
        let country = Conditions::new(vec![text(TextDim::Country, &["us", "DE"])]);
        let both = Conditions::new(vec![
            text(TextDim::Country, &["us", "DE"]),
            param("zone", &["7"]),
        ]);
        let mut set = CheckSet::default();
        let first = set.numbers(&[&country, &Conditions::default()]);
        let second = set.numbers(&[&both, &country]);
        assert_eq!(*first, [0]);
        assert_eq!(*second, [0, 1, 0]);
        // More conditions than the verdicts remember (`zone = ["7"]` is number 1 already): the
        // rest are checked every time.
        let many: Vec<Conditions> = (0..70)
            .map(|n| Conditions::new(vec![param("zone", &[&n.to_string()])]))
            .collect();
        let numbers: Vec<u32> = many.iter().map(|c| set.numbers(&[c])[0]).collect();
        assert_eq!((numbers[7], numbers[69]), (1, 70));
        let visitor = us_android_phone();
        for zone_value in ["7", "8", "68"] {
            let params = zone(zone_value);
            let mut verdicts = set.verdicts(&visitor, &params);
            for _ in 0..2 {
                assert_eq!(verdicts.all(&second), both.matches_all(&visitor, &params));
                assert_eq!(verdicts.any(&second), both.matches_any(&visitor, &params));
                assert!(verdicts.all(&[]) && !verdicts.any(&[]));
                for (n, c) in numbers.iter().zip(&many) {
                    assert_eq!(verdicts.all(&[*n]), c.matches_all(&visitor, &params));
                }
            }
        }
    }

    #[test]
    fn each_dimension_matches_as_specified() {
        use Bound::*;
        use TextDim::*;
        let v = us_android_phone();
        let p = zone("1234");
        let table: Vec<(Condition, bool)> = vec![
            (text(Country, &["us"]), true),
            (text(Country, &["DE", "FR"]), false),
            (text(Region, &["CALIFORNIA"]), true),
            (text(City, &["MÜNCHEN"]), true),
            (text(City, &["Berlin"]), false),
            (text(Isp, &["t-mobile usa"]), true),
            (text(Carrier, &["Verizon", "T-Mobile"]), true),
            (text(Carrier, &["T-Mobile USA"]), false),
            (text(Browser, &["chrome"]), true),
            (text(Language, &["EN"]), true),
            (text(Language, &["de"]), false),
            (Condition::Asn(Box::new([21928])), true),
            (Condition::Asn(Box::new([7922])), false),
            (
                Condition::Connection(Box::new([Connection::Cellular])),
                true,
            ),
            (
                Condition::Connection(Box::new([Connection::Broadband])),
                false,
            ),
            (Condition::Os(Box::new([Os::Ios, Os::Android])), true),
            (Condition::Os(Box::new([Os::Ios])), false),
            (
                Condition::Device(Box::new([Device::Phone, Device::Tablet])),
                true,
            ),
            (Condition::Device(Box::new([Device::Desktop])), false),
            (version(Min, "13"), true),
            (version(Min, "13.1"), true),
            (version(Min, "13.2"), false),
            (version(Min, "14"), false),
            (version(Max, "13"), true),
            (version(Max, "13.0"), false),
            (version(Max, "12"), false),
            (version(Max, "14"), true),
            (ip(&["203.0.113.0/24"]), true),
            (ip(&["203.0.113.7"]), true),
            (ip(&["10.0.0.0/8", "2001:db8::/32"]), false),
            (param("zone", &["55", "1234"]), true),
            (param("zone", &["55"]), false),
            (param("other", &["1234"]), false),
        ];
        for (condition, expected) in table {
            let c = Conditions::new(vec![condition.clone()]);
            assert_eq!(c.matches_all(&v, &p), expected, "{condition:?}");
            assert_eq!(c.matches_any(&v, &p), expected, "{condition:?}");
            assert_eq!(c.failures(&v, &p).is_empty(), expected, "{condition:?}");
            assert_eq!(c.hits(&v, &p).len(), usize::from(expected), "{condition:?}");
        }
    }

    #[test]
    fn an_unknown_visitor_value_matches_no_list() {
        let v = Visitor::unknown("192.0.2.1".parse().unwrap());
        let p = QueryParams::default();
        for condition in [
            text(TextDim::Country, &["US"]),
            text(TextDim::Carrier, &["T-Mobile"]),
            text(TextDim::Language, &["en"]),
            Condition::Asn(Box::new([1])),
            version(Bound::Min, "1"),
            version(Bound::Max, "99"),
            param("zone", &["1"]),
        ] {
            let c = Conditions::new(vec![condition.clone()]);
            assert!(!c.matches_all(&v, &p), "{condition:?}");
            assert!(!c.matches_any(&v, &p), "{condition:?}");
        }
    }

    #[test]
    fn match_needs_every_dimension_and_exclude_any() {
        let v = us_android_phone();
        let p = QueryParams::default();
        let c = Conditions::new(vec![
            text(TextDim::Country, &["US"]),
            Condition::Os(Box::new([Os::Ios])),
        ]);
        assert!(!c.matches_all(&v, &p));
        assert!(c.matches_any(&v, &p));
        assert_eq!(c.failures(&v, &p), ["os Android not in [iOS]"]);
        assert_eq!(c.hits(&v, &p), ["country US excluded"]);
    }

    #[test]
    fn an_empty_set_matches_everyone_and_excludes_no_one() {
        let c = Conditions::default();
        let v = us_android_phone();
        assert!(c.is_empty());
        assert!(c.matches_all(&v, &QueryParams::default()));
        assert!(!c.matches_any(&v, &QueryParams::default()));
    }

    #[test]
    fn failure_reasons_name_the_dimension_the_value_and_the_list() {
        let mut v = us_android_phone();
        v.country = Some("DE".into());
        v.os_version = Some("10".into());
        let c = Conditions::new(vec![
            param("zone", &["1"]),
            version(Bound::Min, "12"),
            text(TextDim::Country, &["US", "CA"]),
            text(TextDim::Carrier, &["Verizon"]),
            ip(&["10.0.0.0/8"]),
            Condition::Asn(Box::new([7922, 1])),
        ]);
        assert_eq!(
            c.failures(&v, &QueryParams::default()),
            [
                "country DE not in [US, CA]",
                "asn 21928 not in [7922, 1]",
                "carrier T-Mobile not in [Verizon]",
                "os_version 10 below 12",
                "ip 203.0.113.7 not in [10.0.0.0/8]",
                "param.zone unknown not in [1]",
            ]
        );
        v.country = None;
        v.os_version = Some("15.2".into());
        let c = Conditions::new(vec![
            text(TextDim::Country, &["US"]),
            version(Bound::Max, "14"),
        ]);
        assert_eq!(
            c.failures(&v, &QueryParams::default()),
            ["country unknown not in [US]", "os_version 15.2 above 14"]
        );
        v.os_version = None;
        assert_eq!(
            c.failures(&v, &QueryParams::default()),
            [
                "country unknown not in [US]",
                "os_version unknown, need <= 14"
            ]
        );
    }

    #[test]
    fn hit_reasons_name_the_excluding_dimension() {
        let mut v = us_android_phone();
        v.connection = Connection::Broadband;
        v.os_version = Some("8.1".into());
        let c = Conditions::new(vec![
            Condition::Connection(Box::new([Connection::Broadband])),
            version(Bound::Max, "9"),
        ]);
        assert_eq!(
            c.hits(&v, &QueryParams::default()),
            [
                "connection broadband excluded",
                "os_version 8.1 excluded (max 9)"
            ]
        );
    }

    #[test]
    fn visitor_versions_compare_numerically_by_component() {
        let v = Version::parse_rule("10.15").unwrap();
        assert_eq!(v.compare_visitor("10.15.7"), Some(Ordering::Equal));
        assert_eq!(v.compare_visitor("10_15_7"), Some(Ordering::Equal));
        assert_eq!(v.compare_visitor("10.9"), Some(Ordering::Less));
        assert_eq!(v.compare_visitor("10.100"), Some(Ordering::Greater));
        assert_eq!(v.compare_visitor("11"), Some(Ordering::Greater));
        assert_eq!(v.compare_visitor("10"), Some(Ordering::Less));
        assert_eq!(v.compare_visitor("XP"), None);
        assert_eq!(v.compare_visitor(""), None);
        for bad in ["", "1.", ".1", "a", "1.2.3.4.5", "1.-2", "99999999999"] {
            assert!(Version::parse_rule(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ipv4_mapped_visitors_match_ipv4_networks() {
        let mut v = us_android_phone();
        v.ip = "::ffff:203.0.113.9".parse().unwrap();
        let c = Conditions::new(vec![ip(&["203.0.113.0/24"])]);
        assert!(c.matches_all(&v, &QueryParams::default()));
    }

    #[test]
    fn conditions_serialize_as_the_toml_is_written() {
        let c = Conditions::new(vec![
            param("zone", &["1234"]),
            Condition::Os(Box::new([Os::Android])),
            text(TextDim::Country, &["US"]),
            version(Bound::Min, "12"),
            Condition::Asn(Box::new([7922])),
        ]);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"country":["US"],"asn":[7922],"os":["Android"],"os_version_min":"12","param.zone":["1234"]}"#
        );
        assert_eq!(c.param_names().collect::<Vec<_>>(), ["zone"]);
    }
}
