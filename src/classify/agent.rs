//! User-Agent and Client Hints classification (SPEC §6): OS, OS version, browser, device, bot.
//!
//! Conventions, so that rules (`os_version_min` / `os_version_max`) compare like with like:
//! - `os_version` is dotted numbers only: `_` becomes `.` (iOS `17_2_1` → `17.2.1`) and trailing
//!   zero components are dropped (`14.0.0` → `14`, Android `8.1.0` → `8.1`, macOS `10.15.7` kept).
//! - Windows reports its marketing number: NT 6.1 → `7`, 6.2 → `8`, 6.3 → `8.1`, 10.0 → `10`.
//!   Older releases keep the NT number (XP `5.1`, Vista `6`), which still sorts in release order.
//!   The User-Agent cannot tell Windows 11 from 10; `Sec-CH-UA-Platform-Version` can: 13 or
//!   above is Windows 11 (`11`), 1–12 is Windows 10, `0.1`/`0.2`/`0.3` are 7/8/8.1.
//! - PlayStation reports its system software version (`PlayStation 5/2.26` → `2.26`).
//! - `browser_version` is at most `major.minor` as the User-Agent gives it (`120.0`, `17.2`), or the
//!   major version alone when only `Sec-CH-UA` names the browser.
//! - Client Hints win over the frozen User-Agent (Chrome reports `Android 10; K` and
//!   `Windows NT 10.0` whatever the device runs), except where the User-Agent names a TV,
//!   console or feature phone: those tokens are more specific than any hint.
//! - iPadOS Safari asks for desktop pages with a Mac User-Agent and sends no hints, so such an
//!   iPad is a macOS desktop here; nothing in the headers tells them apart.

use std::fmt;
use std::path::Path;
use std::sync::LazyLock;

use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use regex::{Regex, RegexSet};
use woothee::parser::{Parser as Woothee, WootheeResult};

pub use super::bot::{AgentDataError, CrawlerList, CRAWLER_LIST_FILE};
pub use super::language::primary_language;
use crate::visitor::{AgentInfo, Device, Os, RequestHints};

/// User-Agent bytes classified and cached. Real ones stay under 600 bytes; the cut bounds both
/// the regex work and the memory one cache entry can hold.
const MAX_USER_AGENT_BYTES: usize = 2048;

/// Client Hint bytes kept; real values are a few dozen bytes.
const MAX_HINT_BYTES: usize = 256;

/// Cache weight budget; an ordinary entry weighs 1 (see `KeyWeight`).
const CACHE_WEIGHT: u64 = 10_000;

/// Classifies visitors from their User-Agent and Client Hints. Pure after `load`; `classify` is
/// safe to call from many threads at once.
pub struct AgentClassifier {
    crawlers: Option<CrawlerList>,
    woothee: Woothee,
    cache: Cache<CacheKey, AgentInfo, KeyWeight>,
}

impl fmt::Debug for AgentClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentClassifier")
            .field(
                "crawler_patterns",
                &self.crawlers.as_ref().map(CrawlerList::compiled),
            )
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl AgentClassifier {
    /// Loads `crawler-user-agents.json` from `data_dir`. A missing file gives a classifier
    /// that relies on its built-in bot rules; a present but broken file is an error.
    pub fn load(data_dir: &Path) -> Result<AgentClassifier, AgentDataError> {
        let crawlers = CrawlerList::load(&data_dir.join(CRAWLER_LIST_FILE))?;
        Ok(AgentClassifier::with_crawler_list(crawlers))
    }

    /// A classifier with the built-in bot rules only.
    pub fn without_crawler_list() -> AgentClassifier {
        AgentClassifier::with_crawler_list(None)
    }

    pub fn with_crawler_list(crawlers: Option<CrawlerList>) -> AgentClassifier {
        AgentClassifier {
            crawlers,
            woothee: Woothee::new(),
            cache: Cache::with_weighter(CACHE_WEIGHT as usize, CACHE_WEIGHT, KeyWeight),
        }
    }

    /// The crawler pattern list in force, if one was loaded (for start-up logging).
    pub fn crawler_list(&self) -> Option<&CrawlerList> {
        self.crawlers.as_ref()
    }

    /// What the User-Agent and Client Hints say about the visitor. `accept_language` is not
    /// read here (see [`primary_language`]).
    pub fn classify(&self, hints: &RequestHints<'_>) -> AgentInfo {
        let key = KeyRef::new(hints);
        if let Some(info) = self.cache.get(&key) {
            return info;
        }
        let info = self.classify_uncached(&key);
        self.cache.insert(key.to_owned(), info.clone());
        info
    }

    fn classify_uncached(&self, key: &KeyRef<'_>) -> AgentInfo {
        let ua = key.user_agent;
        let hints = ClientHints::parse(key);
        let woothee = if ua.is_empty() {
            None
        } else {
            self.woothee.parse(ua)
        };

        let mut platform = Platform::detect(ua, woothee.as_ref());
        platform.apply_hints(&hints);
        let (mut browser, mut browser_version) = detect_browser(ua, platform.os, woothee.as_ref());
        if let Some((brand, version)) = hints.brand {
            let generic = matches!(browser, None | Some("Chrome") | Some("Chromium"));
            if browser == Some(brand) {
                browser_version = browser_version.or_else(|| version.map(str::to_owned));
            } else if generic && (browser.is_none() || brand != "Chromium") {
                browser = Some(brand);
                browser_version = version.map(str::to_owned);
            }
        }

        let bot = super::bot::is_builtin_bot(ua)
            || hints.headless
            || woothee.as_ref().is_some_and(woothee_says_bot)
            || self.crawlers.as_ref().is_some_and(|list| list.is_match(ua));

        AgentInfo {
            os: platform.os,
            os_version: platform.os_version.filter(|v| is_printable_version(v)),
            browser: browser.map(str::to_owned),
            browser_version: browser_version.filter(|v| is_printable_version(v)),
            device: platform.device,
            bot,
        }
    }
}

/// A version read from a User-Agent is kept only when it is short, printable ASCII: a broken or
/// hostile agent string must not put control characters or kilobytes into stored clicks,
/// reports and macros.
fn is_printable_version(version: &str) -> bool {
    (1..=32).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

fn woothee_says_bot(result: &WootheeResult<'_>) -> bool {
    // "misc" is woothee's bucket for HTTP libraries, feed readers and desktop tools: no person
    // clicks an ad link with those.
    result.category == "crawler" || result.category == "misc"
}

// ---------------------------------------------------------------------------------------------
// Cache key: the User-Agent plus the hint headers, looked up without allocating.

const HINT_COUNT: usize = 5;

#[derive(PartialEq, Eq, Hash)]
struct CacheKey {
    user_agent: Box<str>,
    hints: [Option<Box<str>>; HINT_COUNT],
}

/// Borrowed twin of `CacheKey`. Its derived `Hash` feeds the hasher exactly what `CacheKey`'s
/// does (`Box<str>` and `&str` both hash as `str`), which is what `Equivalent` lookups need.
#[derive(Hash)]
struct KeyRef<'a> {
    user_agent: &'a str,
    hints: [Option<&'a str>; HINT_COUNT],
}

impl<'a> KeyRef<'a> {
    fn new(hints: &RequestHints<'a>) -> KeyRef<'a> {
        let hint = |value: Option<&'a str>| value.map(|v| bounded(v.trim(), MAX_HINT_BYTES));
        KeyRef {
            user_agent: bounded(hints.user_agent.trim(), MAX_USER_AGENT_BYTES),
            hints: [
                hint(hints.ch_ua),
                hint(hints.ch_ua_mobile),
                hint(hints.ch_ua_platform),
                hint(hints.ch_ua_platform_version),
                hint(hints.ch_ua_model),
            ],
        }
    }

    fn to_owned(&self) -> CacheKey {
        CacheKey {
            user_agent: self.user_agent.into(),
            hints: self.hints.map(|hint| hint.map(Box::from)),
        }
    }
}

impl Equivalent<CacheKey> for KeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        self.user_agent == &*key.user_agent
            && self
                .hints
                .iter()
                .zip(&key.hints)
                .all(|(mine, theirs)| *mine == theirs.as_deref())
    }
}

/// Weighs entries by size so that a flood of maximal User-Agents cannot hold more memory than
/// a few thousand ordinary ones.
#[derive(Clone)]
struct KeyWeight;

impl Weighter<CacheKey, AgentInfo> for KeyWeight {
    fn weight(&self, key: &CacheKey, _info: &AgentInfo) -> u64 {
        let bytes = key.user_agent.len()
            + key
                .hints
                .iter()
                .map(|hint| hint.as_deref().map_or(0, str::len))
                .sum::<usize>();
        1 + (bytes / 1024) as u64
    }
}

fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

// ---------------------------------------------------------------------------------------------
// Client Hints.

#[derive(Default)]
struct ClientHints<'a> {
    /// The most specific browser brand and its major version.
    brand: Option<(&'static str, Option<&'a str>)>,
    headless: bool,
    mobile: Option<bool>,
    platform: Option<Os>,
    platform_version: Option<&'a str>,
    model: Option<&'a str>,
}

static RX_BRAND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""((?:[^"\\]|\\.)*)"\s*;\s*v\s*=\s*"([^"]*)""#).expect("valid brand pattern")
});

impl<'a> ClientHints<'a> {
    fn parse(key: &KeyRef<'a>) -> ClientHints<'a> {
        let [ch_ua, mobile, platform, platform_version, model] = key.hints;
        // The brand list is a list of quoted strings, so only the single-valued hints unquote.
        let [mobile, platform, platform_version, model] =
            [mobile, platform, platform_version, model].map(|h| h.map(unquote));
        let mut hints = ClientHints {
            mobile: mobile.and_then(|m| match m {
                "?1" => Some(true),
                "?0" => Some(false),
                _ => None,
            }),
            platform: platform.and_then(platform_os),
            platform_version: platform_version.filter(|v| is_version(v)),
            model: model.filter(|m| !m.is_empty()),
            ..ClientHints::default()
        };
        if let Some(list) = ch_ua {
            let mut chromium = None;
            for caps in RX_BRAND.captures_iter(list) {
                let version = caps.get(2).map(|v| v.as_str()).filter(|v| is_version(v));
                let brand = caps.get(1).map_or("", |b| b.as_str());
                if brand == "HeadlessChrome" {
                    hints.headless = true;
                }
                match brand_name(brand) {
                    Some("Chromium") => chromium = Some(("Chromium", version)),
                    Some(name) if hints.brand.is_none() => hints.brand = Some((name, version)),
                    _ => {}
                }
            }
            hints.brand = hints.brand.or(chromium);
        }
        hints
    }
}

/// A version as Client Hints send it (`120`, `14.0.0`): digits and dots, at most 32 bytes.
/// Anything else is ignored, so no hint can put arbitrary text into a visitor's versions.
fn is_version(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().any(|b| b.is_ascii_digit())
}

/// Structured-header strings arrive quoted (`"Android"`).
fn unquote(value: &str) -> &str {
    let value = value.trim();
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .trim()
}

fn platform_os(platform: &str) -> Option<Os> {
    Some(match platform.to_ascii_lowercase().as_str() {
        "android" => Os::Android,
        "ios" => Os::Ios,
        "windows" => Os::Windows,
        "macos" => Os::MacOs,
        "chrome os" | "chromeos" | "chromium os" => Os::ChromeOs,
        "linux" => Os::Linux,
        "fuchsia" => Os::Other,
        _ => return None,
    })
}

fn brand_name(brand: &str) -> Option<&'static str> {
    Some(match brand {
        "Google Chrome" | "HeadlessChrome" => "Chrome",
        "Microsoft Edge" => "Edge",
        "Opera" | "Opera GX" | "Opera Air" => "Opera",
        "Samsung Internet" => "Samsung Internet",
        "YaBrowser" | "Yandex" => "Yandex",
        "Brave" => "Brave",
        "Vivaldi" => "Vivaldi",
        "DuckDuckGo" => "DuckDuckGo",
        "Whale" => "Whale",
        "Android WebView" => "WebView",
        "Chromium" => "Chromium",
        _ => return None,
    })
}

/// `Sec-CH-UA-Platform-Version` in the same convention as the User-Agent versions.
fn hinted_os_version(os: Os, version: &str) -> Option<String> {
    if os != Os::Windows {
        return dotted(version);
    }
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next().flatten()?;
    let minor = parts.next().flatten().unwrap_or(0);
    Some(
        match (major, minor) {
            (13.., _) => "11",
            (1..=12, _) => "10",
            (0, 1) => "7",
            (0, 2) => "8",
            (0, 3) => "8.1",
            _ => return None,
        }
        .to_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// OS and device.

/// How firmly the User-Agent fixes the device, which decides whether Client Hints may change it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Certainty {
    /// TV, console or feature phone tokens: hints from such browsers describe less than the UA.
    Fixed,
    /// Implied by the OS token (iPhone, iPad): holds while the OS does.
    ByOs,
    /// A guess from weaker signals ("Mobile" present or absent, a desktop OS).
    Guess,
}

struct Platform<'a> {
    os: Os,
    os_version: Option<String>,
    device: Device,
    certainty: Certainty,
    /// Android model from the User-Agent, for tablet recognition.
    model: Option<&'a str>,
}

macro_rules! regex {
    ($name:ident, $pattern:expr) => {
        static $name: LazyLock<Regex> =
            LazyLock::new(|| Regex::new($pattern).expect(stringify!($name)));
    };
}

regex!(
    RX_PLAYSTATION,
    r"(?i)play ?station[^/;)]*?[ /](\d+\.\d+(?:\.\d+)*)"
);
regex!(RX_KAIOS, r"(?i)\bkaios/(\d+(?:\.\d+)*)");
regex!(RX_TIZEN, r"Tizen[ /](\d+(?:\.\d+)*)");
regex!(RX_WEBOS, r"(?i)\b(?:webos|hpwos)/(\d+(?:\.\d+)*)");
regex!(RX_WINDOWS_PHONE, r"Windows Phone(?: OS)? (\d+(?:\.\d+)*)");
regex!(
    RX_IOS,
    r"\bOS (\d+(?:[_.]\d+)*) like Mac OS X|\biOS[ /](\d+(?:[_.]\d+)*)"
);
regex!(RX_ANDROID, r"(?:Android|\bAdr)[ /-]?(\d+(?:\.\d+)*)");
regex!(
    RX_ANDROID_MODEL,
    r"Android[ /-]?[\d.]*;(?: ?[a-z]{2}(?:[-_][a-zA-Z]{2})?;)? ?([^;)]+?)(?: Build/[^;)]*)?[;)]"
);
regex!(RX_CROS, r"CrOS [^ )]+ (\d+(?:\.\d+)*)");
regex!(RX_MAC, r"Mac OS X (\d+(?:[_.]\d+)*)");
regex!(RX_WINDOWS_NT, r"Windows NT (\d+\.\d+)");
regex!(
    RX_TV,
    concat!(
        r"(?i:smart-?tv|smart tv|hbbtv|netcast|google ?tv|android ?tv|apple ?tv|\btvos\b",
        r"|\broku\b|bravia|\bcrkey\b|\bviera\b|philips ?tv|vidaa|\baquos\b|\bmibox|\bmitv",
        r"|large screen|opera tv|\bweb0s\b|webos.tv|tizen[^;)]*\btv\b)",
        r"|\bAFT[A-Z0-9]{1,8}\b| TV Safari/"
    )
);
regex!(
    RX_FEATURE_PHONE,
    r"J2ME|MIDP|CLDC|Series ?40|S40OviBrowser|UP\.Browser|ObigoInternetBrowser|\bNokia\d"
);
regex!(
    RX_TABLET_MODEL,
    concat!(
        r"(?i)\bsm-[txp]\d|\bgt-p\d|\bgt-n8\d|\bkf[a-z]{2,6}\b|lenovo ?tb|\btb-?[a-z]?\d",
        r"|pixel tablet|\bnexus (?:7|9|10)\b|(?:\b|mate|media)pad\b|\btab\b|tablet"
    )
);

impl<'a> Platform<'a> {
    fn new(os: Os, os_version: Option<String>, device: Device, certainty: Certainty) -> Self {
        Platform {
            os,
            os_version,
            device,
            certainty,
            model: None,
        }
    }

    fn detect(ua: &'a str, woothee: Option<&WootheeResult<'_>>) -> Platform<'a> {
        use Certainty::*;
        let has = |token: &str| ua.contains(token);
        let version = |rx: &Regex| first_group(rx, ua).and_then(dotted);

        // Consoles and feature phones first: their User-Agents also carry Windows, Android or
        // Firefox tokens that would otherwise win.
        if has("PlayStation") || has("PLAYSTATION") {
            return Platform::new(
                Os::PlayStation,
                version(&RX_PLAYSTATION),
                Device::Console,
                Fixed,
            );
        }
        if has("Xbox") || has("XBOX") {
            return Platform::new(Os::Xbox, None, Device::Console, Fixed);
        }
        if has("Nintendo") {
            return Platform::new(Os::Other, None, Device::Console, Fixed);
        }
        if RX_KAIOS.is_match(ua) {
            return Platform::new(Os::KaiOs, version(&RX_KAIOS), Device::FeaturePhone, Fixed);
        }
        if RX_FEATURE_PHONE.is_match(ua) && !has("Android") {
            return Platform::new(Os::Other, None, Device::FeaturePhone, Fixed);
        }

        let tv = RX_TV.is_match(ua);
        if has("Tizen") {
            let (device, certainty) = if tv {
                (Device::Tv, Fixed)
            } else if has("Mobile") {
                (Device::Phone, ByOs)
            } else {
                (Device::Other, Guess)
            };
            return Platform::new(Os::Tizen, version(&RX_TIZEN), device, certainty);
        }
        if has("Web0S") || has("webOS") || has("WebOS") || has("hpwOS") {
            let (device, certainty) = if tv || has("Web0S") {
                (Device::Tv, Fixed)
            } else if has("hpwOS") || has("TouchPad") {
                (Device::Tablet, ByOs)
            } else if has("Pre/") || has("Mobile") {
                (Device::Phone, ByOs)
            } else {
                (Device::Other, Guess)
            };
            return Platform::new(Os::WebOs, version(&RX_WEBOS), device, certainty);
        }
        if RX_WINDOWS_PHONE.is_match(ua) {
            return Platform::new(Os::Windows, version(&RX_WINDOWS_PHONE), Device::Phone, ByOs);
        }
        if has("iPhone") || has("iPad") || has("iPod") {
            let device = if has("iPad") {
                Device::Tablet
            } else {
                Device::Phone
            };
            return Platform::new(Os::Ios, version(&RX_IOS), device, ByOs);
        }
        if has("Android") || RX_ANDROID.is_match(ua) {
            let model = first_group(&RX_ANDROID_MODEL, ua).map(str::trim);
            let (device, certainty) = if tv {
                (Device::Tv, Fixed)
            } else {
                (android_device(ua, model), Guess)
            };
            let mut platform = Platform::new(Os::Android, version(&RX_ANDROID), device, certainty);
            platform.model = model;
            return platform;
        }
        if has("CrOS") {
            return Platform::new(Os::ChromeOs, version(&RX_CROS), Device::Desktop, Guess);
        }
        if tv {
            let os = if has("Linux") { Os::Linux } else { Os::Other };
            return Platform::new(os, None, Device::Tv, Fixed);
        }
        if has("Macintosh") || has("Mac OS X") || has("Mac_PowerPC") {
            return Platform::new(Os::MacOs, version(&RX_MAC), Device::Desktop, Guess);
        }
        if has("Windows") || has("WinNT") || has("Win64") {
            let version = first_group(&RX_WINDOWS_NT, ua).and_then(windows_nt_version);
            return Platform::new(Os::Windows, version, Device::Desktop, Guess);
        }
        if has("FreeBSD") || has("OpenBSD") || has("NetBSD") {
            return Platform::new(Os::Other, None, Device::Desktop, Guess);
        }
        if has("Linux") || has("X11") {
            return Platform::new(Os::Linux, None, Device::Desktop, Guess);
        }
        if has("PlayBook") {
            return Platform::new(Os::Other, None, Device::Tablet, ByOs);
        }
        if has("BlackBerry") || has("BB10") || has("Symbian") || has("SymbOS") || has("Series60") {
            return Platform::new(Os::Other, None, Device::Phone, ByOs);
        }
        let device = match woothee.map(|w| w.category) {
            Some("pc") => Device::Desktop,
            Some("smartphone") => Device::Phone,
            Some("mobilephone") => Device::FeaturePhone,
            Some("appliance") => Device::Console,
            _ => Device::Other,
        };
        Platform::new(Os::Other, None, device, Guess)
    }

    fn apply_hints(&mut self, hints: &ClientHints<'_>) {
        if self.certainty == Certainty::Fixed {
            return;
        }
        if let Some(os) = hints.platform {
            if os != self.os {
                self.os = os;
                self.os_version = None;
                self.model = None;
                self.device = match os {
                    Os::Android | Os::Ios => Device::Phone,
                    Os::Windows | Os::MacOs | Os::Linux | Os::ChromeOs => Device::Desktop,
                    _ => Device::Other,
                };
                self.certainty = Certainty::Guess;
            }
            if let Some(version) = hints
                .platform_version
                .and_then(|v| hinted_os_version(os, v))
            {
                self.os_version = Some(version);
            }
        }
        if self.certainty == Certainty::ByOs {
            return;
        }
        // Chrome freezes the model to "K"; the hint carries the real one.
        let model = hints.model.or(self.model);
        if model.is_some_and(is_tablet_model) {
            self.device = Device::Tablet;
            return;
        }
        match hints.mobile {
            Some(true) => self.device = Device::Phone,
            Some(false) if self.os == Os::Android => self.device = Device::Tablet,
            Some(false) if self.device == Device::Phone => self.device = Device::Desktop,
            _ => {}
        }
    }
}

/// Android says little about the screen besides "Mobile", which browsers leave out on tablets.
fn android_device(ua: &str, model: Option<&str>) -> Device {
    if model.is_some_and(is_tablet_model)
        || ua.contains("Tablet")
        || ua.contains("Kindle")
        || ua.contains("Silk/")
    {
        Device::Tablet
    } else if ua.contains("Mobile") {
        Device::Phone
    } else if ua.contains("AppleWebKit") || ua.contains("Gecko/") {
        Device::Tablet
    } else {
        // App HTTP stacks (Dalvik, okhttp) never say "Mobile"; most of them run on phones.
        Device::Phone
    }
}

fn is_tablet_model(model: &str) -> bool {
    RX_TABLET_MODEL.is_match(model)
}

fn windows_nt_version(nt: &str) -> Option<String> {
    match nt {
        "10.0" => Some("10".to_owned()),
        "6.3" => Some("8.1".to_owned()),
        "6.2" => Some("8".to_owned()),
        "6.1" => Some("7".to_owned()),
        other => dotted(other),
    }
}

/// Normalises a version to dotted numbers: `_` as separator, trailing zero components dropped,
/// at most four components; `None` when it does not start with a number.
fn dotted(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = raw
        .split(['.', '_'])
        .take_while(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
        .take(4)
        .collect();
    while parts.len() > 1 && parts.last().is_some_and(|p| p.bytes().all(|b| b == b'0')) {
        parts.pop();
    }
    (!parts.is_empty()).then(|| parts.join("."))
}

/// The first capture group that took part in the match.
fn first_group<'t>(rx: &Regex, text: &'t str) -> Option<&'t str> {
    let caps = rx.captures(text)?;
    caps.iter().skip(1).flatten().next().map(|m| m.as_str())
}

// ---------------------------------------------------------------------------------------------
// Browser.

struct BrowserRule {
    name: &'static str,
    version: Option<Regex>,
}

/// The detection patterns of `BrowserRule`s, in the same order, so one scan finds them all.
struct BrowserRules {
    detect: RegexSet,
    rules: Vec<BrowserRule>,
}

/// Ordered: in-app browsers first (they embed a WebView whose UA also names Chrome or Safari),
/// then Chromium derivatives before Chrome, since they all keep the `Chrome/` token.
static BROWSERS: LazyLock<BrowserRules> = LazyLock::new(|| {
    const V: &str = r"(\d+(?:\.\d+)*)";
    let table: &[(&str, &str, Option<String>)] = &[
        (
            "Instagram",
            r"\bInstagram[ /]\d",
            Some(format!(r"\bInstagram[ /]{V}")),
        ),
        (
            "Facebook",
            r"FBAN/|FBAV/|FB_IAB/|\bFBIOS\b|\bFB4A\b",
            Some(format!("FBAV/{V}")),
        ),
        (
            "TikTok",
            r"musical_ly|BytedanceWebview|\bTikTok\b|\btrill_\d",
            Some(format!(r"app_version/{V}|musical_ly_{V}|TikTok[ /]{V}")),
        ),
        ("Snapchat", r"\bSnapchat/\d", Some(format!("Snapchat/{V}"))),
        (
            "Pinterest",
            r"\[Pinterest/|Pinterest for (?:Android|iOS)",
            Some(format!(r"Pinterest(?: for (?:Android|iOS))?/{V}")),
        ),
        ("Twitter", r"Twitter for iP(?:hone|ad)|TwitterAndroid", None),
        ("LinkedIn", r"LinkedInApp", None),
        (
            "WeChat",
            r"MicroMessenger/",
            Some(format!("MicroMessenger/{V}")),
        ),
        ("LINE", r"\bLine/\d", Some(format!(r"\bLine/{V}"))),
        (
            "Edge",
            r"\b(?:Edg|Edge|EdgA|EdgiOS)/\d",
            Some(format!(r"\b(?:Edg|Edge|EdgA|EdgiOS)/{V}")),
        ),
        (
            "Opera Mini",
            r"Opera Mini/",
            Some(format!("Opera Mini/{V}")),
        ),
        (
            "Opera",
            r"\b(?:OPR|OPiOS|OPT|OPX|OPRGX)/\d|^Opera[/ ]|\bOpera ",
            Some(format!(
                r"\b(?:OPR|OPiOS|OPT|OPX|OPRGX)/{V}|Version/{V}|Opera[/ ]{V}"
            )),
        ),
        (
            "Samsung Internet",
            r"SamsungBrowser/",
            Some(format!("SamsungBrowser/{V}")),
        ),
        (
            "UC Browser",
            r"UCBrowser|UBrowser/|UCWEB",
            Some(format!(r"U?C?Browser/{V}")),
        ),
        (
            "Yandex",
            r"YaBrowser/|YaSearchBrowser/|YaApp_(?:Android|iOS)/",
            Some(format!(
                r"(?:YaBrowser|YaSearchBrowser|YaApp_Android|YaApp_iOS)/{V}"
            )),
        ),
        (
            "MIUI Browser",
            r"MiuiBrowser/",
            Some(format!("MiuiBrowser/{V}")),
        ),
        (
            "Huawei Browser",
            r"HuaweiBrowser/",
            Some(format!("HuaweiBrowser/{V}")),
        ),
        (
            "vivo Browser",
            r"VivoBrowser/",
            Some(format!("VivoBrowser/{V}")),
        ),
        (
            "HeyTap Browser",
            r"HeyTapBrowser/",
            Some(format!("HeyTapBrowser/{V}")),
        ),
        ("QQ Browser", r"QQBrowser/", Some(format!("QQBrowser/{V}"))),
        (
            "Coc Coc",
            r"coc_coc_browser/",
            Some(format!("coc_coc_browser/{V}")),
        ),
        ("Whale", r"\bWhale/\d", Some(format!(r"\bWhale/{V}"))),
        ("Vivaldi", r"Vivaldi/", Some(format!("Vivaldi/{V}"))),
        (
            "DuckDuckGo",
            r"\bDdg/|DuckDuckGo/",
            Some(format!(r"(?:Ddg|DuckDuckGo)/{V}")),
        ),
        ("Silk", r"\bSilk/", Some(format!(r"\bSilk/{V}"))),
        ("Puffin", r"\bPuffin/", Some(format!(r"\bPuffin/{V}"))),
        ("Google App", r"\bGSA/\d", Some(format!(r"\bGSA/{V}"))),
        (
            "Firefox",
            r"\b(?:Firefox|FxiOS)/\d",
            Some(format!(r"\b(?:Firefox|FxiOS)/{V}")),
        ),
        (
            "Chromium",
            r"\bChromium/\d",
            Some(format!(r"\bChromium/{V}")),
        ),
    ];
    BrowserRules {
        detect: RegexSet::new(table.iter().map(|(_, detect, _)| detect))
            .expect("valid browser patterns"),
        rules: table
            .iter()
            .map(|(name, _, version)| BrowserRule {
                name,
                version: version
                    .as_deref()
                    .map(|v| Regex::new(v).expect("valid browser version pattern")),
            })
            .collect(),
    }
});

regex!(
    RX_CHROME,
    r"\b(?:Chrome|CriOS|CrMo|HeadlessChrome)/(\d+(?:\.\d+)*)"
);
regex!(RX_SAFARI_VERSION, r"\bVersion/(\d+(?:\.\d+)*)");
regex!(
    RX_IE,
    r"\bMSIE (\d+(?:\.\d+)*)|Trident/.*\brv:(\d+(?:\.\d+)*)"
);

fn detect_browser(
    ua: &str,
    os: Os,
    woothee: Option<&WootheeResult<'_>>,
) -> (Option<&'static str>, Option<String>) {
    let found = |name: &'static str, version: Option<&str>| {
        (
            Some(name),
            version.map(major_minor).filter(|v| !v.is_empty()),
        )
    };
    // The lowest index is the first rule in priority order.
    if let Some(index) = BROWSERS.detect.matches(ua).iter().next() {
        let rule = &BROWSERS.rules[index];
        return found(
            rule.name,
            rule.version.as_ref().and_then(|rx| first_group(rx, ua)),
        );
    }
    let chrome = first_group(&RX_CHROME, ua);
    // Android WebView: "; wv)" since Lollipop, "Version/4.0 Chrome/" on older releases.
    if os == Os::Android && (ua.contains("; wv)") || (ua.contains("Version/") && chrome.is_some()))
    {
        return found("WebView", chrome);
    }
    if chrome.is_some() {
        return found("Chrome", chrome);
    }
    if matches!(os, Os::Ios | Os::MacOs) {
        if ua.contains("Safari/") {
            return found("Safari", first_group(&RX_SAFARI_VERSION, ua));
        }
        // An app's embedded WKWebView drops the Safari token and version.
        if os == Os::Ios && ua.contains("AppleWebKit") {
            return (Some("WebView"), None);
        }
    }
    if RX_IE.is_match(ua) {
        return found("Internet Explorer", first_group(&RX_IE, ua));
    }
    match woothee {
        Some(w) if w.browser_type == "browser" && w.name != "Safari" && w.name != "UNKNOWN" => {
            let name = match w.name {
                "Webview" => "WebView",
                "Sleipnir" => "Sleipnir",
                "Vivaldi" => "Vivaldi",
                "Opera" => "Opera",
                "Firefox" => "Firefox",
                "Chrome" => "Chrome",
                "Edge" => "Edge",
                "Internet Explorer" => "Internet Explorer",
                "Yandex Browser" => "Yandex",
                "SamsungBrowser" => "Samsung Internet",
                "Google Search App" => "Google App",
                _ => return (None, None),
            };
            found(name, Some(w.version).filter(|v| *v != "UNKNOWN"))
        }
        _ => (None, None),
    }
}

fn major_minor(version: &str) -> String {
    let mut parts = version.split('.').filter(|p| !p.is_empty());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        (Some(major), None) => major.to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CLASSIFIER: LazyLock<AgentClassifier> = LazyLock::new(|| {
        AgentClassifier::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data"))
            .expect("shipped agent data loads")
    });

    /// os, os_version, browser, browser_version, device, bot
    type Expected = (
        Os,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Device,
        bool,
    );

    fn info((os, os_version, browser, browser_version, device, bot): Expected) -> AgentInfo {
        AgentInfo {
            os,
            os_version: os_version.map(str::to_owned),
            browser: browser.map(str::to_owned),
            browser_version: browser_version.map(str::to_owned),
            device,
            bot,
        }
    }

    fn check(ua: &str, expected: Expected) {
        check_hints(
            &RequestHints {
                user_agent: ua,
                ..RequestHints::default()
            },
            expected,
        );
    }

    fn check_hints(hints: &RequestHints<'_>, expected: Expected) {
        assert_eq!(CLASSIFIER.classify(hints), info(expected), "{hints:?}");
    }

    use Device::{Console, Desktop, FeaturePhone, Other as OtherDevice, Phone, Tablet, Tv};
    use Os::{
        Android, ChromeOs, Ios, KaiOs, Linux, MacOs, Other, PlayStation, Tizen, WebOs, Windows,
        Xbox,
    };

    const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
    const IPAD_SAFARI: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const GALAXY_TAB: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const FROZEN_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    const FROZEN_ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const WINDOWS_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const MAC_CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const TIZEN_TV: &str = "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36";
    const CHROME_BRANDS: &str =
        r#""Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120""#;

    /// Real User-Agents as browsers, apps, devices and bots send them.
    const TABLE: &[(&str, Expected)] = &[
        // iOS
        (IPHONE_SAFARI, (Ios, Some("17.2.1"), Some("Safari"), Some("17.2"), Phone, false)),
        (IPAD_SAFARI, (Ios, Some("16.6"), Some("Safari"), Some("16.6"), Tablet, false)),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
            (Ios, Some("17.2"), Some("Chrome"), Some("120.0"), Phone, false)),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/121.0 Mobile/15E148 Safari/605.1.15",
            (Ios, Some("17.1"), Some("Firefox"), Some("121.0"), Phone, false)),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/120.2210.126 Mobile/15E148 Safari/605.1.15",
            (Ios, Some("17.2"), Some("Edge"), Some("120.2210"), Phone, false)),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            (Ios, Some("16.7.4"), Some("WebView"), None, Phone, false)),
        // In-app browsers
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/444.0.0.41.109;FBBV/548862374;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.1.2;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/550436613]",
            (Ios, Some("17.1.2"), Some("Facebook"), Some("444.0"), Phone, false)),
        ("Mozilla/5.0 (Linux; Android 13; SM-S918B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/446.0.0.33.114;]",
            (Android, Some("13"), Some("Facebook"), Some("446.0"), Phone, false)),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/21C62 Instagram 312.0.0.22.114 (iPhone14,5; iOS 17_2; en_US; en; scale=3.00; 1170x2532; 548339486)",
            (Ios, Some("17.2"), Some("Instagram"), Some("312.0"), Phone, false)),
        ("Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 Instagram 312.1.0.34.111 Android (33/13; 420dpi; 1080x2400; Google/google; Pixel 7; panther; panther; en_US; 548323749)",
            (Android, Some("13"), Some("Instagram"), Some("312.1"), Phone, false)),
        ("Mozilla/5.0 (Linux; Android 12; SM-A125F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 trill_320203 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/musical_ly app_version/32.2.3 ByteLocale/en ByteFullLocale/en Region/US AppId/1233 Spark/1.4.6.3-bugfix AppVersion/32.2.3 BytedanceWebview/d8a21c6",
            (Android, Some("12"), Some("TikTok"), Some("32.2"), Phone, false)),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_32.5.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US ByteFullLocale/en isDarkMode/0 WKWebView/1 RevealType/Dialog BytedanceWebview/d8a21c6",
            (Ios, Some("17.2"), Some("TikTok"), Some("32.5"), Phone, false)),
        ("Mozilla/5.0 (Linux; Android 14; SM-S928B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.193 Mobile Safari/537.36 Snapchat/12.70.0.38 (SM-S928B; Android 14#S928BXXU1AWLS#34; gzip; )",
            (Android, Some("14"), Some("Snapchat"), Some("12.70"), Phone, false)),
        // Android
        ("Mozilla/5.0 (Linux; Android 11; Redmi Note 8 Pro Build/RP1A.200720.011; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36",
            (Android, Some("11"), Some("WebView"), Some("120.0"), Phone, false)),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
            (Android, Some("14"), Some("Chrome"), Some("120.0"), Phone, false)),
        (FROZEN_ANDROID, (Android, Some("10"), Some("Chrome"), Some("120.0"), Phone, false)),
        (GALAXY_TAB, (Android, Some("13"), Some("Chrome"), Some("120.0"), Tablet, false)),
        ("Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
            (Android, Some("13"), Some("Samsung Internet"), Some("23.0"), Phone, false)),
        ("Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-T970) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
            (Android, Some("13"), Some("Samsung Internet"), Some("23.0"), Tablet, false)),
        ("Mozilla/5.0 (Linux; Android 11; Lenovo TB-X606F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            (Android, Some("11"), Some("Chrome"), Some("120.0"), Tablet, false)),
        ("Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/119.3.5 like Chrome/119.0.6045.193 Safari/537.36",
            (Android, Some("9"), Some("Silk"), Some("119.3"), Tablet, false)),
        ("Mozilla/5.0 (Linux; U; Android 12; en-US; RMX3085 Build/SP1A.210812.016) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.58 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
            (Android, Some("12"), Some("UC Browser"), Some("13.4"), Phone, false)),
        ("Mozilla/5.0 (Linux; U; Android 13; en-gb; 2201117TG Build/TKQ1.221114.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/112.0.5615.136 Mobile Safari/537.36 XiaoMi/MiuiBrowser/14.5.1-gn",
            (Android, Some("13"), Some("MIUI Browser"), Some("14.5"), Phone, false)),
        ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 OPR/79.1.4195.76960",
            (Android, Some("10"), Some("Opera"), Some("79.1"), Phone, false)),
        ("Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0",
            (Android, Some("14"), Some("Firefox"), Some("121.0"), Phone, false)),
        ("Mozilla/5.0 (Android 13; Tablet; rv:121.0) Gecko/121.0 Firefox/121.0",
            (Android, Some("13"), Some("Firefox"), Some("121.0"), Tablet, false)),
        ("Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            (Android, Some("10"), Some("Chrome"), Some("120.0"), Phone, false)),
        ("Dalvik/2.1.0 (Linux; U; Android 13; SM-S918B Build/TP1A.220624.014)",
            (Android, Some("13"), None, None, Phone, false)),
        ("Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063",
            (Windows, Some("10"), Some("Edge"), Some("15.15063"), Phone, false)),
        (
            "Dalvik/2.1.0 (Linux; U; Android 10; CUBOT X30 Build/QP1A.190711.020)",
            (Android, Some("10"), None, None, Phone, false),
        ),
        (
            "Mozilla/5.0 (Linux; Android 12; BAH4-W09; HMSCore 6.11.0.302) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.0.322 Safari/537.36",
            (Android, Some("12"), Some("Huawei Browser"), Some("14.0"), Tablet, false),
        ),
        // Desktops
        (WINDOWS_CHROME, (Windows, Some("10"), Some("Chrome"), Some("120.0"), Desktop, false)),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            (Windows, Some("10"), Some("Edge"), Some("120.0"), Desktop, false)),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
            (Windows, Some("10"), Some("Firefox"), Some("121.0"), Desktop, false)),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 YaBrowser/23.11.0.0 Safari/537.36",
            (Windows, Some("10"), Some("Yandex"), Some("23.11"), Desktop, false)),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
            (Windows, Some("10"), Some("Opera"), Some("106.0"), Desktop, false)),
        ("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
            (Windows, Some("7"), Some("Internet Explorer"), Some("11.0"), Desktop, false)),
        ("Mozilla/5.0 (Windows NT 5.1; rv:52.0) Gecko/20100101 Firefox/52.0",
            (Windows, Some("5.1"), Some("Firefox"), Some("52.0"), Desktop, false)),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
            (MacOs, Some("10.15.7"), Some("Safari"), Some("17.2"), Desktop, false)),
        (MAC_CHROME, (MacOs, Some("10.15.7"), Some("Chrome"), Some("120.0"), Desktop, false)),
        ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            (ChromeOs, Some("14541"), Some("Chrome"), Some("120.0"), Desktop, false)),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            (Linux, None, Some("Firefox"), Some("121.0"), Desktop, false)),
        // TVs
        (TIZEN_TV, (Tizen, Some("6"), None, None, Tv, false)),
        ("Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.79 Safari/537.36 WebAppManager",
            (WebOs, None, Some("Chrome"), Some("79.0"), Tv, false)),
        ("Mozilla/5.0 (Linux; Android 11; BRAVIA 4K UR3 Build/RTM1.210716.007) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Safari/537.36",
            (Android, Some("11"), Some("Chrome"), Some("112.0"), Tv, false)),
        ("Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7233; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/114.0.5735.196 Mobile Safari/537.36",
            (Android, Some("9"), Some("WebView"), Some("114.0"), Tv, false)),
        ("Mozilla/5.0 (Linux; Android 12; Chromecast) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36 CrKey/1.56.500000 DeviceType/AndroidTV",
            (Android, Some("12"), Some("Chrome"), Some("114.0"), Tv, false)),
        ("Roku/DVP-12.5 (12.5.0.4174)", (Other, None, None, None, Tv, false)),
        ("AppleCoreMedia/1.0.0.21K69 (Apple TV; U; CPU OS 17_2 like Mac OS X; en_us)",
            (Other, None, None, None, Tv, false)),
        // Consoles
        ("Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15",
            (PlayStation, Some("2.26"), None, None, Console, false)),
        ("Mozilla/5.0 (PlayStation 4 3.11) AppleWebKit/537.73 (KHTML, like Gecko)",
            (PlayStation, Some("3.11"), None, None, Console, false)),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox Series X) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/48.0.2564.82 Safari/537.36 Edge/20.02",
            (Xbox, None, Some("Edge"), Some("20.02"), Console, false)),
        ("Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) NF/6.0.1.15.4 NintendoBrowser/5.1.0.20393",
            (Other, None, None, None, Console, false)),
        // Feature phones
        ("Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i; Android; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5",
            (KaiOs, Some("2.5"), Some("Firefox"), Some("48.0"), FeaturePhone, false)),
        ("Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
            (Other, None, Some("Opera Mini"), Some("9.80"), FeaturePhone, false)),
        ("Nokia311/5.0 (03.81) Profile/MIDP-2.1 Configuration/CLDC-1.1 Mozilla/5.0 AppleWebKit/420+ (KHTML, like Gecko) Safari/420+",
            (Other, None, None, None, FeaturePhone, false)),
        // Bots
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            (Other, None, None, None, OtherDevice, true)),
        ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.129 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            (Android, Some("6.0.1"), Some("Chrome"), Some("120.0"), Phone, true)),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            (Other, None, None, None, OtherDevice, true)),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            (Other, None, None, None, OtherDevice, true)),
        ("curl/8.4.0", (Other, None, None, None, OtherDevice, true)),
        ("python-requests/2.31.0", (Other, None, None, None, OtherDevice, true)),
        ("", (Other, None, None, None, OtherDevice, true)),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 Safari/537.36",
            (Linux, None, Some("Chrome"), Some("120.0"), Desktop, true)),
        ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            (Other, None, None, None, OtherDevice, true)),
    ];

    #[test]
    fn every_user_agent_in_the_table_is_classified_as_expected() {
        assert!(TABLE.len() >= 40);
        let mut failures = Vec::new();
        for (ua, expected) in TABLE {
            let got = CLASSIFIER.classify(&RequestHints {
                user_agent: ua,
                ..RequestHints::default()
            });
            if got != info(*expected) {
                failures.push(format!(
                    "{ua}\n  want {:?}\n  got  {got:?}",
                    info(*expected)
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn iphone_safari_is_an_ios_phone_and_no_bot() {
        check(IPHONE_SAFARI, TABLE[0].1);
    }

    #[test]
    fn ipad_is_a_tablet() {
        check(
            IPAD_SAFARI,
            (
                Ios,
                Some("16.6"),
                Some("Safari"),
                Some("16.6"),
                Tablet,
                false,
            ),
        );
    }

    #[test]
    fn an_android_tablet_without_mobile_is_a_tablet() {
        check(
            GALAXY_TAB,
            (
                Android,
                Some("13"),
                Some("Chrome"),
                Some("120.0"),
                Tablet,
                false,
            ),
        );
    }

    #[test]
    fn a_samsung_tizen_tv_is_a_tizen_tv() {
        check(TIZEN_TV, (Tizen, Some("6"), None, None, Tv, false));
    }

    #[test]
    fn whitespace_is_an_empty_user_agent_and_a_bot() {
        check("  \t ", (Other, None, None, None, OtherDevice, true));
    }

    #[test]
    fn client_hints_unfreeze_an_android_phone() {
        check_hints(
            &RequestHints {
                user_agent: FROZEN_ANDROID,
                ch_ua: Some(CHROME_BRANDS),
                ch_ua_mobile: Some("?1"),
                ch_ua_platform: Some("\"Android\""),
                ch_ua_platform_version: Some("\"14.0.0\""),
                ch_ua_model: Some("\"Pixel 8\""),
                ..RequestHints::default()
            },
            (
                Android,
                Some("14"),
                Some("Chrome"),
                Some("120.0"),
                Phone,
                false,
            ),
        );
    }

    #[test]
    fn a_hinted_tablet_model_makes_a_tablet() {
        check_hints(
            &RequestHints {
                user_agent: FROZEN_ANDROID_TABLET,
                ch_ua: Some(CHROME_BRANDS),
                ch_ua_mobile: Some("?0"),
                ch_ua_platform: Some("\"Android\""),
                ch_ua_platform_version: Some("\"13.0.0\""),
                ch_ua_model: Some("\"SM-X700\""),
                ..RequestHints::default()
            },
            (
                Android,
                Some("13"),
                Some("Chrome"),
                Some("120.0"),
                Tablet,
                false,
            ),
        );
    }

    #[test]
    fn hinted_mobile_wins_over_a_missing_mobile_token() {
        check_hints(
            &RequestHints {
                user_agent: FROZEN_ANDROID_TABLET,
                ch_ua_mobile: Some("?1"),
                ch_ua_platform: Some("\"Android\""),
                ..RequestHints::default()
            },
            (
                Android,
                Some("10"),
                Some("Chrome"),
                Some("120.0"),
                Phone,
                false,
            ),
        );
    }

    #[test]
    fn windows_platform_version_15_is_windows_11() {
        check_hints(
            &RequestHints {
                user_agent: WINDOWS_CHROME,
                ch_ua: Some(CHROME_BRANDS),
                ch_ua_mobile: Some("?0"),
                ch_ua_platform: Some("\"Windows\""),
                ch_ua_platform_version: Some("\"15.0.0\""),
                ..RequestHints::default()
            },
            (
                Windows,
                Some("11"),
                Some("Chrome"),
                Some("120.0"),
                Desktop,
                false,
            ),
        );
    }

    #[test]
    fn windows_platform_versions_map_to_marketing_numbers() {
        for (hint, want) in [
            ("13.0.0", Some("11")),
            ("19.0.0", Some("11")),
            ("10.0.0", Some("10")),
            ("1.0.0", Some("10")),
            ("0.3.0", Some("8.1")),
            ("0.1.0", Some("7")),
            ("", Some("10")),
            ("junk", Some("10")),
        ] {
            let version = format!("\"{hint}\"");
            let got = CLASSIFIER.classify(&RequestHints {
                user_agent: WINDOWS_CHROME,
                ch_ua_platform: Some("\"Windows\""),
                ch_ua_platform_version: Some(&version),
                ..RequestHints::default()
            });
            assert_eq!(got.os_version.as_deref(), want, "{hint}");
        }
    }

    #[test]
    fn hinted_macos_version_replaces_the_frozen_one() {
        check_hints(
            &RequestHints {
                user_agent: MAC_CHROME,
                ch_ua: Some(CHROME_BRANDS),
                ch_ua_mobile: Some("?0"),
                ch_ua_platform: Some("\"macOS\""),
                ch_ua_platform_version: Some("\"14.2.1\""),
                ..RequestHints::default()
            },
            (
                MacOs,
                Some("14.2.1"),
                Some("Chrome"),
                Some("120.0"),
                Desktop,
                false,
            ),
        );
    }

    #[test]
    fn hinted_platform_wins_over_the_user_agent_platform() {
        check_hints(
            &RequestHints {
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                ch_ua_mobile: Some("?0"),
                ch_ua_platform: Some("\"Chrome OS\""),
                ch_ua_platform_version: Some("\"15633.69.0\""),
                ..RequestHints::default()
            },
            (ChromeOs, Some("15633.69"), Some("Chrome"), Some("120.0"), Desktop, false),
        );
    }

    #[test]
    fn a_brand_hint_names_a_browser_that_hides_behind_chrome() {
        check_hints(
            &RequestHints {
                user_agent: WINDOWS_CHROME,
                ch_ua: Some(r#""Brave";v="120", "Chromium";v="120", "Not?A_Brand";v="24""#),
                ..RequestHints::default()
            },
            (
                Windows,
                Some("10"),
                Some("Brave"),
                Some("120"),
                Desktop,
                false,
            ),
        );
        check_hints(
            &RequestHints {
                user_agent: WINDOWS_CHROME,
                ch_ua: Some(r#""Not)A;Brand";v="99", "Google Chrome";v="127", "Chromium";v="127""#),
                ..RequestHints::default()
            },
            (
                Windows,
                Some("10"),
                Some("Chrome"),
                Some("120.0"),
                Desktop,
                false,
            ),
        );
        check_hints(
            &RequestHints {
                user_agent: "",
                ch_ua: Some(r#""Chromium";v="120", "Not_A Brand";v="8""#),
                ..RequestHints::default()
            },
            (
                Other,
                None,
                Some("Chromium"),
                Some("120"),
                OtherDevice,
                true,
            ),
        );
    }

    #[test]
    fn a_headless_brand_hint_is_a_bot() {
        let got = CLASSIFIER.classify(&RequestHints {
            user_agent: WINDOWS_CHROME,
            ch_ua: Some(r#""HeadlessChrome";v="120", "Chromium";v="120", "Not_A Brand";v="8""#),
            ..RequestHints::default()
        });
        assert!(got.bot);
    }

    #[test]
    fn hints_do_not_turn_a_tv_into_something_else() {
        check_hints(
            &RequestHints {
                user_agent: TIZEN_TV,
                ch_ua_mobile: Some("?0"),
                ch_ua_platform: Some("\"Linux\""),
                ..RequestHints::default()
            },
            (Tizen, Some("6"), None, None, Tv, false),
        );
    }

    #[test]
    fn repeated_requests_are_answered_from_the_cache() {
        let classifier = AgentClassifier::without_crawler_list();
        let hints = RequestHints {
            user_agent: IPHONE_SAFARI,
            ..RequestHints::default()
        };
        let first = classifier.classify(&hints);
        let second = classifier.classify(&hints);
        assert_eq!(first, second);
        assert_eq!(classifier.cache.len(), 1);
        assert!(classifier.cache.get(&KeyRef::new(&hints)).is_some());
        let hinted = RequestHints {
            ch_ua_mobile: Some("?1"),
            ..hints
        };
        classifier.classify(&hinted);
        assert_eq!(classifier.cache.len(), 2);
    }

    #[test]
    fn many_threads_share_one_classifier() {
        let classifier = AgentClassifier::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data"))
            .expect("loads");
        std::thread::scope(|scope| {
            for offset in 0..8 {
                let classifier = &classifier;
                scope.spawn(move || {
                    for round in 0..3 {
                        for (ua, expected) in
                            TABLE.iter().cycle().skip(offset + round).take(TABLE.len())
                        {
                            let got = classifier.classify(&RequestHints {
                                user_agent: ua,
                                ..RequestHints::default()
                            });
                            assert_eq!(got, info(*expected), "{ua}");
                        }
                    }
                });
            }
        });
        assert_eq!(classifier.cache.len(), TABLE.len());
    }

    #[test]
    fn a_huge_user_agent_is_classified_from_its_bounded_prefix() {
        let huge = format!("{WINDOWS_CHROME} {}", "x".repeat(1_000_000));
        let got = CLASSIFIER.classify(&RequestHints {
            user_agent: &huge,
            ..RequestHints::default()
        });
        assert_eq!(got.os, Windows);
        assert_eq!(got.browser.as_deref(), Some("Chrome"));
        let multibyte = "é".repeat(5_000);
        CLASSIFIER.classify(&RequestHints {
            user_agent: &multibyte,
            ..RequestHints::default()
        });
    }

    #[test]
    fn a_missing_crawler_list_still_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let classifier = AgentClassifier::load(dir.path()).expect("loads without the list");
        assert!(classifier.crawler_list().is_none());
        let got = classifier.classify(&RequestHints {
            user_agent: "curl/8.4.0",
            ..RequestHints::default()
        });
        assert!(got.bot);
    }

    #[test]
    fn a_broken_crawler_list_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(CRAWLER_LIST_FILE), "[{\"pattern\": ").expect("write");
        let err = AgentClassifier::load(dir.path()).expect_err("broken list");
        assert!(err.to_string().contains(CRAWLER_LIST_FILE), "{err}");
    }

    #[test]
    fn versions_are_dotted_numbers_without_trailing_zeros() {
        assert_eq!(dotted("17_2_1").as_deref(), Some("17.2.1"));
        assert_eq!(dotted("14.0.0").as_deref(), Some("14"));
        assert_eq!(dotted("8.1.0").as_deref(), Some("8.1"));
        assert_eq!(dotted("10.15.7").as_deref(), Some("10.15.7"));
        assert_eq!(dotted("0").as_deref(), Some("0"));
        assert_eq!(dotted("1.2.3.4.5").as_deref(), Some("1.2.3.4"));
        assert_eq!(dotted("12.x").as_deref(), Some("12"));
        assert_eq!(dotted("").as_deref(), None);
        assert_eq!(dotted("abc").as_deref(), None);
    }

    #[test]
    fn accept_language_is_read_by_primary_language() {
        assert_eq!(
            primary_language(Some("en-US,en;q=0.9")).as_deref(),
            Some("en")
        );
        assert_eq!(primary_language(Some("*")), None);
    }

    #[test]
    fn client_hint_versions_that_are_not_versions_are_ignored() {
        // Found by fuzzing: a brand version with control characters became the browser version.
        let classifier = AgentClassifier::without_crawler_list();
        let info = classifier.classify(&RequestHints {
            user_agent: "",
            accept_language: None,
            ch_ua: Some("\"Google Chrome\";v=\"120\u{0}\r\nx\", \"Chromium\";v=\"120\""),
            ch_ua_mobile: Some("?1"),
            ch_ua_platform: Some("\"Android\""),
            ch_ua_platform_version: Some("\"14<script>\""),
            ch_ua_model: None,
        });
        assert_eq!(info.browser.as_deref(), Some("Chrome"));
        assert_eq!(info.browser_version, None);
        // Found by fuzzing too: a User-Agent's version with NUL bytes in it.
        let info = classifier.classify(&RequestHints {
            user_agent: "Mozilla/5.0 (Linux; Android 10\u{0}\u{0}x; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120\u{0}\u{0}\u{1}.0 Mobile Safari/537.36",
            accept_language: None,
            ch_ua: None,
            ch_ua_mobile: None,
            ch_ua_platform: None,
            ch_ua_platform_version: None,
            ch_ua_model: None,
        });
        for version in [&info.os_version, &info.browser_version]
            .into_iter()
            .flatten()
        {
            assert!(
                !version.bytes().any(|b| b.is_ascii_control()),
                "{version:?}"
            );
        }
        assert!(info
            .os_version
            .as_deref()
            .is_none_or(|v| v.bytes().all(|b| b.is_ascii_digit() || b == b'.')));
    }
}
