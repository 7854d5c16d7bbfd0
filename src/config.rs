//! Settings (SPEC §4): `smartlink.toml` plus `SMARTLINK_*` environment overrides, validated as a
//! whole so that every mistake is reported at once, before anything binds or opens.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Every setting, with the defaults of SPEC §4.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub rules_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Runtime state (generated admin token, default SQLite file). Not in SPEC §4's sample.
    pub var_dir: PathBuf,
    pub base_currency: String,
    pub attribution_window_days: u32,
    pub trusted_proxies: Vec<String>,
    pub default_url: String,
    pub admin_token: String,
    pub postback_secret: String,
    pub anonymize_ip: bool,
    pub store: StoreConfig,
    pub bandit: BanditConfig,
    pub delivery: DeliveryConfig,
    pub currency_rates: BTreeMap<String, f64>,
    /// Request rates per client address.
    pub limits: LimitsConfig,
    /// `tracing` filter for the logs, e.g. `info` or `smartlink=debug`.
    pub log: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// SQLite file; relative paths are relative to the working directory.
    pub path: PathBuf,
    pub durability: Durability,
    /// Redis URL, or a list of node URLs for Redis Cluster.
    pub url: StoreUrl,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Redis,
}

/// When a click must be on disk relative to its redirect (SPEC §4).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Committed within 10 ms after the redirect.
    Batched,
    /// Redirect sent only after the click is committed.
    Strict,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StoreUrl {
    One(String),
    Cluster(Vec<String>),
}

impl StoreUrl {
    /// The node URLs: a list as given, or one string split at commas (so that
    /// `SMARTLINK_STORE__URL=redis://a:6379,redis://b:6379` names a cluster too). More than one
    /// URL means Redis Cluster.
    pub fn urls(&self) -> Vec<String> {
        let list = match self {
            StoreUrl::One(text) => text.split(',').map(str::to_string).collect(),
            StoreUrl::Cluster(urls) => urls.clone(),
        };
        list.into_iter()
            .map(|url| url.trim().to_string())
            .filter(|url| !url.is_empty())
            .collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BanditConfig {
    pub refresh_ms: u64,
}

/// Requests a second per client address (`0`: no limit). Bursts up to the same number pass.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// `/postback` and `/pixel.gif` together.
    pub postback_per_second: u32,
    /// Everything under `/api/`.
    pub api_per_second: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            postback_per_second: 1000,
            api_per_second: 50,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    pub initial_backoff_ms: u64,
    pub give_up_after_hours: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            rules_dir: "rules".into(),
            data_dir: "data".into(),
            var_dir: "var".into(),
            base_currency: "USD".into(),
            attribution_window_days: 30,
            trusted_proxies: Vec::new(),
            default_url: String::new(),
            admin_token: String::new(),
            postback_secret: String::new(),
            anonymize_ip: false,
            store: StoreConfig::default(),
            bandit: BanditConfig::default(),
            delivery: DeliveryConfig::default(),
            currency_rates: BTreeMap::new(),
            limits: LimitsConfig::default(),
            log: "info".into(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            path: "var/smartlink.db".into(),
            durability: Durability::Batched,
            url: StoreUrl::One("redis://127.0.0.1:6379/0".into()),
        }
    }
}

impl Default for BanditConfig {
    fn default() -> Self {
        BanditConfig { refresh_ms: 1000 }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            initial_backoff_ms: 5000,
            give_up_after_hours: 48,
        }
    }
}

/// One problem with the settings, printed as one line naming the origin and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, `environment`, or `defaults`.
    pub origin: String,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.field, self.message)
        }
    }
}

/// Validated settings plus what was derived from them once (parsed networks, addresses).
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    /// Where the settings came from, for messages.
    pub origin: String,
    pub listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
}

impl Settings {
    /// How long stores keep a click: twice the attribution window, so a postback just past the
    /// window is told `click_expired`, not `unknown_click`.
    pub fn store_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(2 * u64::from(self.config.attribution_window_days) * 86_400)
    }

    /// Reads the file (`explicit`, else `SMARTLINK_CONFIG`, else `smartlink.toml` when present,
    /// else defaults) and applies `SMARTLINK_*` overrides from `env`, then validates everything.
    /// `env` is passed in so tests never mutate the process environment.
    pub fn load(
        explicit: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, Vec<ConfigError>> {
        let (path, required) = match (explicit, env.get("SMARTLINK_CONFIG")) {
            (Some(path), _) => (Some(path.to_path_buf()), true),
            (None, Some(path)) if !path.is_empty() => (Some(PathBuf::from(path)), true),
            _ => {
                let default = PathBuf::from("smartlink.toml");
                (default.exists().then_some(default), false)
            }
        };
        let origin = path
            .as_ref()
            .map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
        let mut table = match &path {
            Some(path) => read_table(path, required)?,
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            vec![ConfigError {
                origin: origin.clone(),
                field: String::new(),
                message: e.message().trim().to_string(),
            }]
        })?;
        Settings::validate(config, origin)
    }

    /// Checks what serde cannot: addresses, networks, URLs, currencies, ranges.
    pub fn validate(config: Config, origin: String) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: String| {
            errors.push(ConfigError {
                origin: origin.clone(),
                field: field.to_string(),
                message,
            })
        };
        let listen = match config.listen.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                fail(
                    "listen",
                    format!("`{}` is not an address like 127.0.0.1:8080", config.listen),
                );
                None
            }
        };
        let mut trusted_proxies = Vec::new();
        for (i, text) in config.trusted_proxies.iter().enumerate() {
            match parse_net(text) {
                Some(net) => trusted_proxies.push(net),
                None => fail(
                    &format!("trusted_proxies[{i}]"),
                    format!("`{text}` is not a CIDR or an IP address"),
                ),
            }
        }
        if !is_currency_code(&config.base_currency) {
            fail(
                "base_currency",
                format!(
                    "`{}` is not an ISO 4217 code (three letters)",
                    config.base_currency
                ),
            );
        }
        for (code, rate) in &config.currency_rates {
            if !is_currency_code(code) {
                fail(
                    &format!("currency_rates.{code}"),
                    "not an ISO 4217 code (three upper-case letters)".into(),
                );
            }
            if !(rate.is_finite() && *rate > 0.0) {
                fail(
                    &format!("currency_rates.{code}"),
                    format!("rate must be a positive number, got {rate}"),
                );
            }
        }
        if !config.default_url.is_empty() && !is_http_url(&config.default_url) {
            fail(
                "default_url",
                format!("`{}` is not an http(s) URL", config.default_url),
            );
        }
        if config.attribution_window_days == 0 {
            fail("attribution_window_days", "must be at least 1".into());
        }
        if config.bandit.refresh_ms == 0 {
            fail("bandit.refresh_ms", "must be at least 1".into());
        }
        if config.delivery.initial_backoff_ms == 0 {
            fail("delivery.initial_backoff_ms", "must be at least 1".into());
        }
        if config.delivery.give_up_after_hours < 24 {
            fail(
                "delivery.give_up_after_hours",
                "must be at least 24 (deliveries are retried for at least a day)".into(),
            );
        }
        let urls = config.store.url.urls();
        if config.store.kind == StoreKind::Redis {
            if urls.is_empty() {
                fail("store.url", "needs at least one redis:// URL".into());
            }
            for url in &urls {
                if url.starts_with("rediss://") {
                    fail(
                        "store.url",
                        format!("`{url}`: TLS to Redis is not supported; use redis:// on a private network"),
                    );
                } else if !(url.starts_with("redis://") || url.starts_with("unix://")) {
                    fail("store.url", format!("`{url}` is not a redis:// URL"));
                }
            }
            if urls.len() > 1 && urls.iter().any(|url| url.starts_with("unix://")) {
                fail(
                    "store.url",
                    "a cluster (several URLs) is reached over TCP: use redis:// URLs".into(),
                );
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log) {
            fail("log", format!("`{}`: {e}", config.log));
        }
        match (errors.is_empty(), listen) {
            (true, Some(listen)) => Ok(Settings {
                config,
                origin,
                listen,
                trusted_proxies,
            }),
            _ => Err(errors),
        }
    }

    /// Units of base currency per unit of `code`; the base currency itself is 1.
    /// An offer's configured payout in base currency; unconverted when its currency has no
    /// rate (validation warns about that).
    pub fn payout_in_base(&self, offer: &crate::rules::Offer) -> crate::money::Money {
        self.currency_rate(&offer.currency)
            .and_then(|rate| offer.payout.convert(rate))
            .unwrap_or(offer.payout)
    }

    pub fn currency_rate(&self, code: &str) -> Option<f64> {
        if code.eq_ignore_ascii_case(&self.config.base_currency) {
            return Some(1.0);
        }
        self.config
            .currency_rates
            .get(&code.to_ascii_uppercase())
            .copied()
    }
}

fn read_table(path: &Path, required: bool) -> Result<toml::Table, Vec<ConfigError>> {
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(vec![ConfigError {
                origin,
                field: String::new(),
                message: format!("cannot read: {e}"),
            }])
        }
    };
    text.parse::<toml::Table>().map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        vec![ConfigError {
            origin: match line {
                Some(line) => format!("{origin}:{line}"),
                None => origin,
            },
            field: String::new(),
            message: e.message().trim().to_string(),
        }]
    })
}

/// `SMARTLINK_LISTEN` sets `listen`; `SMARTLINK_STORE__URL` sets `store.url`. A value is read as
/// TOML when it parses as such (`true`, `30`, `["10.0.0.0/8"]`) and as a plain string otherwise.
fn apply_env(
    table: &mut toml::Table,
    env: &HashMap<String, String>,
) -> Result<(), Vec<ConfigError>> {
    let mut keys: Vec<&String> = env.keys().collect();
    keys.sort();
    for name in keys {
        let Some(rest) = name.strip_prefix("SMARTLINK_") else {
            continue;
        };
        if rest == "CONFIG" || rest.is_empty() {
            continue;
        }
        let raw = &env[name];
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        // Currency codes are the one kind of key that is upper case.
        if path.len() == 2 && path[0] == "currency_rates" {
            path[1].make_ascii_uppercase();
        }
        let (last, sections) = path.split_last().expect("split yields one part at least");
        let mut target = &mut *table;
        for section in sections {
            let entry = target
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            target = match entry {
                toml::Value::Table(inner) => inner,
                _ => {
                    return Err(vec![ConfigError {
                        origin: "environment".into(),
                        field: name.clone(),
                        message: format!("`{section}` is not a section"),
                    }])
                }
            };
        }
        target.insert(last.clone(), value);
    }
    Ok(())
}

/// A CIDR (`10.0.0.0/8`) or a bare address (`10.1.2.3`, taken as a single host).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("smartlink.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn no_file_gives_the_documented_defaults() {
        let settings = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(settings.config, Config::default());
        assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(settings.config.store.kind, StoreKind::Sqlite);
        assert_eq!(settings.config.store.durability, Durability::Batched);
    }

    #[test]
    fn file_values_are_read_and_environment_overrides_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "listen = \"0.0.0.0:9000\"\nanonymize_ip = false\n[store]\npath = \"a.db\"\n",
        );
        let settings = Settings::load(
            Some(&path),
            &env(&[
                ("SMARTLINK_ANONYMIZE_IP", "true"),
                ("SMARTLINK_STORE__URL", "redis://10.0.0.5:6379/1"),
                ("SMARTLINK_STORE__KIND", "redis"),
                ("SMARTLINK_TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
                ("SMARTLINK_CURRENCY_RATES__EUR", "1.08"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        let config = &settings.config;
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert!(config.anonymize_ip);
        assert_eq!(config.store.path, PathBuf::from("a.db"));
        assert_eq!(config.store.kind, StoreKind::Redis);
        assert_eq!(
            config.store.url,
            StoreUrl::One("redis://10.0.0.5:6379/1".into())
        );
        assert_eq!(
            settings.trusted_proxies,
            vec!["10.0.0.0/8".parse().unwrap()]
        );
        assert_eq!(settings.currency_rate("EUR"), Some(1.08));
        assert_eq!(settings.currency_rate("usd"), Some(1.0));
    }

    #[test]
    fn config_file_named_by_the_environment_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "base_currency = \"EUR\"\n");
        let settings =
            Settings::load(None, &env(&[("SMARTLINK_CONFIG", path.to_str().unwrap())])).unwrap();
        assert_eq!(settings.config.base_currency, "EUR");
    }

    #[test]
    fn a_list_of_urls_is_a_redis_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "[store]\nkind = \"redis\"\nurl = [\"redis://a:1\", \"redis://b:2\"]\n",
        );
        let settings = Settings::load(Some(&path), &env(&[])).unwrap();
        assert_eq!(
            settings.config.store.url,
            StoreUrl::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
    }

    #[test]
    fn a_comma_separated_url_from_the_environment_is_a_redis_cluster() {
        let settings = Settings::load(
            None,
            &env(&[
                ("SMARTLINK_STORE__KIND", "redis"),
                (
                    "SMARTLINK_STORE__URL",
                    "redis://10.0.0.1:6379, redis://10.0.0.2:6379",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            settings.config.store.url.urls(),
            vec!["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]
        );
    }

    #[test]
    fn a_redis_store_without_a_usable_url_is_refused() {
        let errors = Settings::load(
            None,
            &env(&[
                ("SMARTLINK_STORE__KIND", "redis"),
                ("SMARTLINK_STORE__URL", "http://10.0.0.1:6379"),
            ]),
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "store.url");
        let errors = Settings::load(
            None,
            &env(&[
                ("SMARTLINK_STORE__KIND", "redis"),
                ("SMARTLINK_STORE__URL", " "),
            ]),
        )
        .unwrap_err();
        assert!(errors[0].message.contains("at least one"), "{}", errors[0]);
    }

    #[test]
    fn every_invalid_value_is_reported_at_once_with_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "listen = \"nowhere\"\ntrusted_proxies = [\"10.0.0.0/33\"]\nbase_currency = \"usd\"\ndefault_url = \"ftp://x\"\n[currency_rates]\nEUR = -1.0\n",
        );
        let errors = Settings::load(Some(&path), &env(&[])).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "listen",
                "trusted_proxies[0]",
                "base_currency",
                "currency_rates.EUR",
                "default_url"
            ]
        );
        assert!(errors[0]
            .to_string()
            .starts_with(&path.display().to_string()));
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "listn = \"127.0.0.1:1\"\n");
        let errors = Settings::load(Some(&path), &env(&[])).unwrap_err();
        assert!(errors[0].to_string().contains("listn"), "{}", errors[0]);

        let path = write(dir.path(), "listen = \n");
        let errors = Settings::load(Some(&path), &env(&[])).unwrap_err();
        assert!(
            errors[0].to_string().contains("smartlink.toml:1"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let errors = Settings::load(Some(Path::new("/nonexistent/x.toml")), &env(&[])).unwrap_err();
        assert!(errors[0].message.contains("cannot read"));
    }
}
