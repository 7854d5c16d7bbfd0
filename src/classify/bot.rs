//! Bot detection from the User-Agent: the crawler pattern list in `data/`, plus the HTTP
//! libraries, headless browsers and link previewers that list does not cover.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

/// File name of the crawler pattern list inside the data directory.
pub const CRAWLER_LIST_FILE: &str = "crawler-user-agents.json";

/// Generous next to the list's ~1,500 entries; a file far past it is not the list we expect,
/// and compiling it would make start-up slow and memory-hungry.
const MAX_PATTERNS: usize = 20_000;

/// A single pattern this long is not a User-Agent fragment; skipping it bounds compile size.
const MAX_PATTERN_LEN: usize = 1_000;

/// Why the agent data could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum AgentDataError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: not a crawler list (a JSON array of objects with a \"pattern\" string): {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {count} patterns, more than the {MAX_PATTERNS} accepted", path.display())]
    TooLarge { path: PathBuf, count: usize },
}

#[derive(Deserialize)]
struct Entry {
    pattern: String,
}

struct Pattern {
    regex: Regex,
    /// Lower-cased literals, one of which every match contains; empty when none could be found.
    literals: Vec<Box<str>>,
}

/// The crawler-user-agents patterns behind a literal prefilter.
///
/// One `RegexSet` over all ~1,500 patterns is fast on repetitive browser User-Agents but its
/// lazy DFA thrashes on unfamiliar ones (about 200 µs each, measured), which is exactly what a
/// flood of novel bot User-Agents looks like. Instead each pattern is indexed by a trigram of a
/// literal that every match must contain; a User-Agent costs one hash probe per byte, and only
/// the few patterns whose literal is present run their regex.
pub struct CrawlerList {
    patterns: Vec<Pattern>,
    by_trigram: HashMap<u32, Vec<u32>, BuildHasherDefault<TrigramHasher>>,
    /// Patterns without a usable literal: checked against every User-Agent.
    unindexed: Vec<u32>,
    skipped: usize,
}

impl fmt::Debug for CrawlerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrawlerList")
            .field("compiled", &self.compiled())
            .field("unindexed", &self.unindexed.len())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl CrawlerList {
    /// Reads and compiles the list; `Ok(None)` when the file does not exist, since the list is
    /// an optional refinement and the built-in rules still catch the common bots.
    pub fn load(path: &Path) -> Result<Option<CrawlerList>, AgentDataError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AgentDataError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        CrawlerList::parse(path, &text).map(Some)
    }

    /// Compiles the list from its JSON text; `path` only names the source in errors.
    ///
    /// The list is written for other regex engines (PCRE, Python, Go), so a pattern the `regex`
    /// crate refuses — look-around, back-references — is skipped and counted rather than
    /// failing the whole list.
    pub fn parse(path: &Path, text: &str) -> Result<CrawlerList, AgentDataError> {
        let entries: Vec<Entry> =
            serde_json::from_str(text).map_err(|source| AgentDataError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        if entries.len() > MAX_PATTERNS {
            return Err(AgentDataError::TooLarge {
                path: path.to_path_buf(),
                count: entries.len(),
            });
        }
        let mut patterns = Vec::with_capacity(entries.len());
        let mut skipped = 0;
        for entry in entries {
            let pattern = entry.pattern;
            // An empty pattern would match every visitor and route all traffic to the bot URL.
            if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
                skipped += 1;
                continue;
            }
            match Regex::new(&pattern) {
                Ok(regex) => patterns.push(Pattern {
                    literals: required_literals(&pattern).unwrap_or_default(),
                    regex,
                }),
                Err(_) => skipped += 1,
            }
        }
        Ok(CrawlerList::index(patterns, skipped))
    }

    fn index(patterns: Vec<Pattern>, skipped: usize) -> CrawlerList {
        let mut by_trigram: HashMap<u32, Vec<u32>, BuildHasherDefault<TrigramHasher>> =
            HashMap::default();
        let mut unindexed = Vec::new();
        let common: Vec<u32> = trigrams(COMMON_TEXT.as_bytes()).collect();
        for (id, pattern) in patterns.iter().enumerate() {
            let id = id as u32;
            if pattern.literals.is_empty() {
                unindexed.push(id);
                continue;
            }
            for literal in &pattern.literals {
                // The least shared trigram keeps buckets short; one that ordinary browser
                // User-Agents contain would make every visitor run that pattern.
                let best = trigrams(literal.as_bytes())
                    .min_by_key(|t| {
                        let load = by_trigram.get(t).map_or(0, Vec::len);
                        load + if common.contains(t) { 10_000 } else { 0 }
                    })
                    .expect("literals are at least three bytes");
                let bucket = by_trigram.entry(best).or_default();
                if bucket.last() != Some(&id) {
                    bucket.push(id);
                }
            }
        }
        CrawlerList {
            patterns,
            by_trigram,
            unindexed,
            skipped,
        }
    }

    pub fn is_match(&self, user_agent: &str) -> bool {
        let lower = user_agent.to_ascii_lowercase();
        let mut candidates: Vec<u32> = trigrams(lower.as_bytes())
            .filter_map(|t| self.by_trigram.get(&t))
            .flatten()
            .copied()
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let indexed = candidates.iter().any(|&id| {
            let pattern = &self.patterns[id as usize];
            pattern.literals.iter().any(|l| lower.contains(&**l))
                && pattern.regex.is_match(user_agent)
        });
        indexed
            || self
                .unindexed
                .iter()
                .any(|&id| self.patterns[id as usize].regex.is_match(user_agent))
    }

    /// Patterns in force.
    pub fn compiled(&self) -> usize {
        self.patterns.len()
    }

    /// Patterns left out because they were empty, oversized or not valid for the `regex` crate.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

/// Text every browser User-Agent is made of, whose trigrams make poor index keys.
const COMMON_TEXT: &str = "mozilla/5.0 (windows nt 10.0; win64; x64) (macintosh; intel mac os x \
    10_15_7) (iphone; cpu iphone os like mac os x) (linux; android 14; k; wv) (x11; ubuntu; \
    linux x86_64; rv:121.0) applewebkit/537.36 (khtml, like gecko) chrome/120.0.0.0 mobile \
    safari/537.36 version/17.2 mobile/15e148 safari/604.1 gecko/20100101 firefox/121.0";

fn trigrams(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .windows(3)
        .map(|w| u32::from(w[0]) << 16 | u32::from(w[1]) << 8 | u32::from(w[2]))
}

/// The index keys are 24-bit trigrams probed once per User-Agent byte, so a multiplicative
/// hash beats SipHash here; the keys come from the data file, not from visitors, so flooding
/// one bucket is not possible from outside.
#[derive(Default)]
struct TrigramHasher(u64);

impl Hasher for TrigramHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (u64::from(n) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Lower-cased literals of which every match of `pattern` contains at least one (one per
/// top-level alternative), or `None` when some alternative has no literal of three bytes or
/// more. Conservative: anything not understood gives `None`, which only costs speed.
///
/// The prefilter folds ASCII case only, so a case-insensitive pattern matched through a
/// non-ASCII case fold (the Kelvin sign for `k`) is missed; no User-Agent does that by accident.
fn required_literals(pattern: &str) -> Option<Vec<Box<str>>> {
    split_top_level(pattern)?
        .into_iter()
        .map(|alternative| {
            longest_required_run(alternative)
                .filter(|run| run.len() >= 3)
                .map(|run| run.to_ascii_lowercase().into_boxed_str())
        })
        .collect()
}

fn split_top_level(pattern: &str) -> Option<Vec<&str>> {
    let bytes = pattern.as_bytes();
    let (mut depth, mut start, mut i) = (0usize, 0, 0);
    let mut parts = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' => i = skip_class(bytes, i)? - 1,
            b'(' => depth += 1,
            b')' => depth = depth.checked_sub(1)?,
            b'|' if depth == 0 => {
                parts.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&pattern[start..]);
    Some(parts)
}

/// The longest run of literal ASCII characters that every match of `alternative` (which has
/// no top-level `|`) contains.
fn longest_required_run(alternative: &str) -> Option<String> {
    let p = alternative.as_bytes();
    let mut best = String::new();
    let mut run = String::new();
    let mut end_run = |run: &mut String| {
        if run.len() > best.len() {
            best = std::mem::take(run);
        }
        run.clear();
    };
    let mut i = 0;
    while i < p.len() {
        let literal = match p[i] {
            b'(' => {
                i = skip_quantifier(p, skip_group(p, i)?)?;
                end_run(&mut run);
                continue;
            }
            b'[' => {
                i = skip_quantifier(p, skip_class(p, i)?)?;
                end_run(&mut run);
                continue;
            }
            b'.' => {
                i = skip_quantifier(p, i + 1)?;
                end_run(&mut run);
                continue;
            }
            b'^' | b'$' => {
                i += 1;
                end_run(&mut run);
                continue;
            }
            b'*' | b'+' | b'?' | b'{' | b'|' | b')' => return None,
            b'\\' => {
                let escaped = *p.get(i + 1)?;
                match escaped {
                    // Classes and assertions: no literal, but the run is interrupted.
                    b'd' | b'D' | b'w' | b'W' | b's' | b'S' | b'b' | b'B' | b'A' | b'z' | b'<'
                    | b'>' => {
                        i = skip_quantifier(p, i + 2)?;
                        end_run(&mut run);
                        continue;
                    }
                    // \x41, \p{L}, \n and friends: not worth decoding.
                    e if e.is_ascii_alphanumeric() || !e.is_ascii() => return None,
                    e => {
                        i += 2;
                        e
                    }
                }
            }
            b if b.is_ascii() => {
                i += 1;
                b
            }
            _ => {
                // Skip the whole multi-byte character and whatever quantifies it.
                i += 1;
                while i < p.len() && (p[i] & 0xC0) == 0x80 {
                    i += 1;
                }
                i = skip_quantifier(p, i)?;
                end_run(&mut run);
                continue;
            }
        };
        match p.get(i) {
            // Optional: the character is not required.
            Some(b'?' | b'*' | b'{') => {
                end_run(&mut run);
                i = skip_quantifier(p, i)?;
            }
            // Required once, but what follows need not be adjacent.
            Some(b'+') => {
                run.push(char::from(literal));
                end_run(&mut run);
                i = skip_quantifier(p, i)?;
            }
            _ => run.push(char::from(literal)),
        }
    }
    end_run(&mut run);
    Some(best)
}

/// Index just past the `]` closing the class that opens at `open`.
fn skip_class(p: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if p.get(i) == Some(&b'^') {
        i += 1;
    }
    if p.get(i) == Some(&b']') {
        i += 1;
    }
    while i < p.len() {
        match p[i] {
            b'\\' => i += 2,
            // Nested classes and set operations: give up rather than parse them.
            b'[' => return None,
            b']' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Index just past the `)` closing the group that opens at `open`.
fn skip_group(p: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < p.len() {
        match p[i] {
            b'\\' => i += 2,
            b'[' => i = skip_class(p, i)?,
            b'(' => {
                // Verbose mode changes what whitespace means; not worth following.
                if p.get(i + 1) == Some(&b'?') {
                    let flags = p[i + 2..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphabetic() || **b == b'-');
                    if flags.clone().any(|b| *b == b'x') {
                        return None;
                    }
                }
                depth += 1;
                i += 1;
            }
            b')' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Index past a quantifier (and its lazy or possessive suffix) at `i`, or `i` when none.
fn skip_quantifier(p: &[u8], i: usize) -> Option<usize> {
    let after = match p.get(i) {
        Some(b'?' | b'*' | b'+') => i + 1,
        Some(b'{') => i + p[i..].iter().position(|b| *b == b'}')? + 1,
        _ => return Some(i),
    };
    Some(if matches!(p.get(after), Some(b'?' | b'+')) {
        after + 1
    } else {
        after
    })
}

/// Automated clients the crawler list misses or that must be caught even without the list.
/// Prefix forms are anchored: these tools put their name first, and anchoring keeps a word like
/// "got" or "node" inside a real browser's User-Agent from matching.
static BUILTIN: LazyLock<Regex> = LazyLock::new(|| {
    let prefixes = [
        "curl",
        "wget",
        "python",
        "aiohttp",
        "httpx",
        "httpie",
        "go-http-client",
        "okhttp",
        "java",
        "apache-httpclient",
        "jakarta commons-httpclient",
        "libwww-perl",
        "lwp",
        "www-mechanize",
        "mechanize",
        "node-fetch",
        "node",
        "undici",
        "axios",
        "got",
        "postmanruntime",
        "insomnia",
        "guzzlehttp",
        "php",
        "wordpress",
        "ruby",
        "faraday",
        "rest-client",
        "dart",
        "reqwest",
        "hyper",
        "winhttp",
        "powershell",
        "scrapy",
        "colly",
        "libcurl",
        "pycurl",
        "restsharp",
        "unirest",
        "aria2",
        "whatsapp",
    ]
    .join("|");
    let anywhere = [
        "headlesschrome",
        "phantomjs",
        "slimerjs",
        "electron-fetch",
        "scrapy",
        "python-requests",
        "aiohttp",
        "go-http-client",
        "node-fetch",
        "postmanruntime",
        "libwww-perl",
        "facebookexternalhit",
        "facebookcatalog",
        "meta-externalagent",
        "meta-externalfetcher",
        "slackbot",
        "slack-imgproxy",
        "telegrambot",
        "twitterbot",
        "linkedinbot",
        "discordbot",
        "skypeuripreview",
        "pinterestbot",
        "redditbot",
        "embedly",
        "iframely",
        "quora link preview",
        "vkshare",
        "bitlybot",
        "snap url preview",
        "google-inspectiontool",
        "googleother",
        "google page speed",
        "chrome-lighthouse",
        "applebot",
        "mattermost-bot",
        "bingpreview",
        "yandexbot",
        "petalbot",
        "bytespider",
        "gptbot",
        "chatgpt-user",
        "claudebot",
        "ccbot",
    ]
    .join("|");
    // A bare "Mozilla/x.y" carries no platform at all: only scripts send that.
    let pattern = format!(r"(?i)^(?:{prefixes})(?:[/ ;(_.-]|$)|{anywhere}|^mozilla/[\d.]+$");
    Regex::new(&pattern).expect("built-in bot pattern is valid")
});

/// True for an empty User-Agent and for the built-in automated clients.
pub fn is_builtin_bot(user_agent: &str) -> bool {
    let user_agent = user_agent.trim();
    user_agent.is_empty() || BUILTIN.is_match(user_agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(json: &str) -> Result<CrawlerList, AgentDataError> {
        CrawlerList::parse(Path::new("data/crawler-user-agents.json"), json)
    }

    #[test]
    fn patterns_the_regex_crate_refuses_are_skipped_and_counted() {
        let list = list(
            r#"[{"pattern": "Googlebot\\/"}, {"pattern": "foo(?!bar)"}, {"pattern": "(a)\\1"},
                {"pattern": ""}, {"pattern": "[wW]get", "url": "x", "instances": []}]"#,
        )
        .expect("list loads");
        assert_eq!(list.compiled(), 2);
        assert_eq!(list.skipped(), 3);
        assert!(list.is_match("Googlebot/2.1"));
        assert!(list.is_match("Wget/1.21"));
        assert!(!list.is_match("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"));
    }

    #[test]
    fn a_malformed_list_is_an_error_naming_the_file() {
        for bad in [
            "{",
            r#"{"pattern": "x"}"#,
            r#"[{"regex": "x"}]"#,
            r#"[{"pattern": 3}]"#,
        ] {
            let err = list(bad).expect_err(bad).to_string();
            assert!(err.starts_with("data/crawler-user-agents.json: "), "{err}");
            assert!(err.contains("pattern"), "{err}");
        }
    }

    #[test]
    fn a_missing_list_is_not_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let loaded = CrawlerList::load(&dir.path().join(CRAWLER_LIST_FILE)).expect("no error");
        assert!(loaded.is_none());
    }

    #[test]
    fn an_unreadable_list_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = CrawlerList::load(dir.path()).expect_err("a directory is not a file");
        assert!(err
            .to_string()
            .starts_with(&dir.path().display().to_string()));
    }

    #[test]
    fn the_shipped_list_compiles_whole() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(CRAWLER_LIST_FILE);
        let list = CrawlerList::load(&path)
            .expect("shipped list loads")
            .expect("shipped list exists");
        assert!(list.compiled() > 1_000, "{}", list.compiled());
        assert_eq!(list.skipped(), 0);
    }

    #[test]
    fn every_example_in_the_shipped_list_is_caught() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(CRAWLER_LIST_FILE);
        let text = std::fs::read_to_string(&path).expect("shipped list");
        let list = CrawlerList::parse(&path, &text).expect("shipped list loads");
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
        let mut examples = 0;
        for entry in &entries {
            for example in entry["instances"].as_array().into_iter().flatten() {
                let ua = example.as_str().expect("string example");
                examples += 1;
                assert!(list.is_match(ua), "missed {ua:?} ({})", entry["pattern"]);
            }
        }
        assert!(examples > 1_000, "{examples}");
        // Nearly every pattern has a literal to index; the rest are checked one by one.
        assert!(list.unindexed.len() < 10, "{}", list.unindexed.len());
    }

    #[test]
    fn required_literals_are_what_every_match_contains() {
        let table: &[(&str, Option<&[&str]>)] = &[
            (r"Googlebot\/", Some(&["googlebot/"])),
            (r"AdsBot-Google([^-]|$)", Some(&["adsbot-google"])),
            (r"(sistrix|SISTRIX) [cC]rawler", Some(&["rawler"])),
            (r"S[eE][mM]rushBot", Some(&["rushbot"])),
            (
                r"BlogTraffic\/\d\.\d+ Feed-Fetcher",
                Some(&[" feed-fetcher"]),
            ),
            (
                r"developers\.google\.com\/\+\/web",
                Some(&["developers.google.com/+/web"]),
            ),
            (r"Chirp|gotosocial", Some(&["chirp", "gotosocial"])),
            (r"abcd?efgh", Some(&["efgh"])),
            (r"abcde+fg", Some(&["abcde"])),
            (r"x{2}yzzy", Some(&["yzzy"])),
            (r"^curl", Some(&["curl"])),
            (r"(?i)spider", Some(&["spider"])),
            (r"Netumo|ne", None),
            (r"\x41BCDEF", None),
            (r"(?x) a b c d", None),
            (r"[[:alpha:]]+bot", None),
            (r"ab", None),
        ];
        for (pattern, want) in table {
            let got = required_literals(pattern);
            let got: Option<Vec<&str>> = got.as_ref().map(|v| v.iter().map(|l| &**l).collect());
            assert_eq!(got.as_deref(), *want, "{pattern}");
        }
    }

    #[test]
    fn built_in_rules_catch_tools_without_catching_browsers() {
        let bots = [
            "",
            "   ",
            "curl/8.4.0",
            "Wget/1.21.4",
            "python-requests/2.31.0",
            "Python-urllib/3.11",
            "python-httpx/0.25.2",
            "Python/3.11 aiohttp/3.9.1",
            "Go-http-client/2.0",
            "okhttp/4.12.0",
            "Java/17.0.9",
            "Apache-HttpClient/4.5.14 (Java/17.0.9)",
            "libwww-perl/6.72",
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
            "node",
            "axios/1.6.2",
            "PostmanRuntime/7.36.0",
            "Scrapy/2.11.0 (+https://scrapy.org)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 Safari/537.36",
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "TelegramBot (like TwitterBot)",
            "WhatsApp/2.23.20.0 A",
            "Twitterbot/1.0",
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
            "Mozilla/5.0",
        ];
        for ua in bots {
            assert!(is_builtin_bot(ua), "should be a bot: {ua:?}");
        }
        let people = [
            "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Dalvik/2.1.0 (Linux; U; Android 13; SM-S918B Build/TP1A.220624.014)",
            "Nokia311/5.0 (03.81) Profile/MIDP-2.1 Configuration/CLDC-1.1",
        ];
        for ua in people {
            assert!(!is_builtin_bot(ua), "should not be a bot: {ua:?}");
        }
    }
}
