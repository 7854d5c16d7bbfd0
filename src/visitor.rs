//! The classified visitor: the fields of SPEC §6 that rules match on, macros expand and reports group by.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What the router knows about one visitor after classification. Built by `classify`, read by
/// rules, decisions, macros and reports. Field names are the JSON names of SPEC §6.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    /// The client address the classification was made for; not part of the §6 output.
    #[serde(skip, default = "unspecified_ip")]
    pub ip: IpAddr,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub asn: Option<u32>,
    pub isp: Option<String>,
    pub carrier: Option<String>,
    pub connection: Connection,
    pub os: Os,
    pub os_version: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub device: Device,
    pub bot: bool,
    pub language: Option<String>,
}

fn unspecified_ip() -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
}

impl Visitor {
    /// A visitor about whom nothing is known (every field null / unknown / other).
    pub fn unknown(ip: IpAddr) -> Visitor {
        Visitor {
            ip,
            country: None,
            region: None,
            city: None,
            asn: None,
            isp: None,
            carrier: None,
            connection: Connection::Unknown,
            os: Os::Other,
            os_version: None,
            browser: None,
            browser_version: None,
            device: Device::Other,
            bot: false,
            language: None,
        }
    }
}

/// Declares a closed vocabulary with its canonical JSON spelling and a case-insensitive parser.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Case-insensitive parse of the canonical spelling.
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(text))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// How the visitor reaches the internet, from the network databases.
    Connection {
        Cellular => "cellular",
        Broadband => "broadband",
        Datacenter => "datacenter",
        Unknown => "unknown",
    }
);

vocabulary!(
    /// Operating system family, from the User-Agent and Client Hints.
    Os {
        Android => "Android",
        Ios => "iOS",
        Windows => "Windows",
        MacOs => "macOS",
        Linux => "Linux",
        ChromeOs => "ChromeOS",
        KaiOs => "KaiOS",
        Tizen => "Tizen",
        WebOs => "webOS",
        PlayStation => "PlayStation",
        Xbox => "Xbox",
        Other => "other",
    }
);

vocabulary!(
    /// Device type, from the User-Agent and Client Hints.
    Device {
        Phone => "phone",
        Tablet => "tablet",
        Desktop => "desktop",
        Tv => "tv",
        Console => "console",
        FeaturePhone => "feature_phone",
        Other => "other",
    }
);

/// GEO facts for one IP, from the City / Country databases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
}

/// Network facts for one IP, from the ASN / ISP / Connection-Type databases and the carrier table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkInfo {
    pub asn: Option<u32>,
    pub isp: Option<String>,
    pub carrier: Option<String>,
    pub connection: Connection,
}

impl Default for NetworkInfo {
    fn default() -> Self {
        NetworkInfo {
            asn: None,
            isp: None,
            carrier: None,
            connection: Connection::Unknown,
        }
    }
}

/// What the User-Agent and Client Hints say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    pub os: Os,
    pub os_version: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub device: Device,
    pub bot: bool,
}

impl Default for AgentInfo {
    fn default() -> Self {
        AgentInfo {
            os: Os::Other,
            os_version: None,
            browser: None,
            browser_version: None,
            device: Device::Other,
            bot: false,
        }
    }
}

/// The request headers classification reads besides the IP. Borrowed so the click path copies nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestHints<'a> {
    pub user_agent: &'a str,
    pub accept_language: Option<&'a str>,
    /// `Sec-CH-UA` (brand list).
    pub ch_ua: Option<&'a str>,
    /// `Sec-CH-UA-Mobile` (`?1` / `?0`).
    pub ch_ua_mobile: Option<&'a str>,
    /// `Sec-CH-UA-Platform` (quoted, e.g. `"Android"`).
    pub ch_ua_platform: Option<&'a str>,
    /// `Sec-CH-UA-Platform-Version` (quoted).
    pub ch_ua_platform_version: Option<&'a str>,
    /// `Sec-CH-UA-Model` (quoted).
    pub ch_ua_model: Option<&'a str>,
}

/// The query parameters of a click, in arrival order (a source may repeat a name; the first wins).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}
