//! Network classification (SPEC §6): IP → ASN, ISP, mobile carrier and connection type.
//!
//! Sources, all read into memory at start (lookups do no I/O):
//! - MaxMind DB files in the data directory, recognised by `metadata.database_type` as in
//!   `geo`: GeoIP2 Enterprise and ISP (ASN, ISP, organisation, MCC/MNC, connection type,
//!   user type), GeoIP2 Connection-Type, and any ASN database in the GeoLite2-ASN schema
//!   (GeoLite2-ASN, DB-IP's ASN file, the shipped `asn.mmdb`). Each field is taken from the
//!   first database that has it, asking MaxMind's paid files first, then GeoLite2, then others;
//!   an ASN database's organisation name is only used when it agrees on the AS number.
//! - `carriers.csv` (AS number → carrier), `mcc-mnc.csv` (MCC/MNC → carrier) and
//!   `datacenter-asns.csv` (hosting / cloud AS numbers) from the data directory, or the copies
//!   built into the binary when the directory has none.
//!
//! How `connection` is decided, first match wins:
//! 1. `cellular`: a Connection-Type database says `Cellular`, the ISP database gives an MCC/MNC
//!    (MaxMind sets it on mobile networks only), or Enterprise's user type is `cellular`.
//! 2. `datacenter`: the AS is listed as `datacenter` in `datacenter-asns.csv`, Enterprise's user
//!    type is `hosting` / `search_engine_spider`, or (for an AS that is neither a listed carrier
//!    nor a listed `relay`) a name says so: see [`name_looks_like_datacenter`].
//! 3. `broadband`: a Connection-Type database says `Cable/DSL`, `Dialup`, `Satellite` or
//!    `Corporate` (an office line carries people, not servers), or Enterprise's user type is
//!    residential, business, school and the like.
//! 4. From the carrier table: `mobile` and `mostly-mobile` ASes → `cellular`; `mixed` ASes
//!    (one AS for home lines and the mobile network) → `unknown`, since nothing free tells the
//!    two apart and a wrong `cellular` would send home users to carrier-billing offers.
//! 5. `broadband` when the AS or ISP is known at all, else `unknown`.
//!
//! `carrier` is filled when the connection is `cellular`, or `unknown` on a mixed carrier AS (the
//! visitor is that carrier's customer either way), from MCC/MNC, then the carrier table, then —
//! for an MCC/MNC that the table lacks — the ISP database's name.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::geo::{open_mmdb_files, type_words, vendor, ClassifyDataError, DataSource, MmdbFile};
use crate::visitor::{Connection, NetworkInfo};

/// File names of the tables in the data directory.
pub const CARRIERS_FILE: &str = "carriers.csv";
pub const MCC_MNC_FILE: &str = "mcc-mnc.csv";
pub const DATACENTER_FILE: &str = "datacenter-asns.csv";

const BUILT_IN_CARRIERS: &str = include_str!("../../data/carriers.csv");
const BUILT_IN_MCC_MNC: &str = include_str!("../../data/mcc-mnc.csv");
const BUILT_IN_DATACENTERS: &str = include_str!("../../data/datacenter-asns.csv");

/// Words in an AS / ISP / organisation name that mark a hosting business. Matched on whole
/// lower-cased names as substrings, so `Hetzner Online` is caught by the list, not by this, and
/// `Cloudflare` is exempted by its `relay` row.
const DATACENTER_NAME_WORDS: &[&str] = &[
    "hosting",
    "cloud",
    "data center",
    "data centre",
    "datacenter",
    "datacentre",
    "server",
    "vps",
    "colocation",
    "dedicated",
];

/// True when an organisation name reads like a hosting, cloud or server business.
pub fn name_looks_like_datacenter(name: &str) -> bool {
    let name = name.to_lowercase();
    DATACENTER_NAME_WORDS.iter().any(|word| name.contains(word))
}

/// How much of a carrier AS's traffic is mobile, from the `network` column of `carriers.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CarrierNetwork {
    /// `mobile`: the AS carries the mobile network only.
    Mobile,
    /// `mostly-mobile`: some fixed lines too, but mobile users dominate by far.
    MostlyMobile,
    /// `mixed`: fixed and mobile in one AS, in shares that make neither a safe guess.
    Mixed,
}

impl CarrierNetwork {
    fn parse(text: &str) -> Option<CarrierNetwork> {
        match text.trim().to_ascii_lowercase().as_str() {
            "mobile" => Some(CarrierNetwork::Mobile),
            "mostly-mobile" => Some(CarrierNetwork::MostlyMobile),
            "mixed" => Some(CarrierNetwork::Mixed),
            _ => None,
        }
    }
}

/// A mobile carrier as the carrier table knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carrier {
    pub name: String,
    pub network: CarrierNetwork,
}

/// What `datacenter-asns.csv` says about an AS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostingKind {
    /// Servers: traffic from it is not a person browsing.
    Datacenter,
    /// A privacy relay (iCloud Private Relay, Cloudflare WARP): real users behind shared exits,
    /// listed so that the name heuristic never marks them `datacenter`.
    Relay,
}

/// What kind of data a MaxMind DB file holds, for precedence among network sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NetworkRole {
    Enterprise,
    Isp,
    ConnectionType,
    Asn,
}

fn network_role(database_type: &str) -> Option<NetworkRole> {
    let words = type_words(database_type);
    let has = |word: &str| words.iter().any(|w| w == word);
    if has("enterprise") {
        Some(NetworkRole::Enterprise)
    } else if has("isp") {
        Some(NetworkRole::Isp)
    } else if has("connection") && has("type") {
        Some(NetworkRole::ConnectionType)
    } else if has("asn") {
        Some(NetworkRole::Asn)
    } else {
        None
    }
}

/// IP → ASN, ISP, carrier and connection type.
#[derive(Debug, Default)]
pub struct NetworkDb {
    /// Sorted by vendor, then role, then file name: the order fields are taken in.
    files: Vec<MmdbFile>,
    carriers: HashMap<u32, Carrier>,
    mcc_mnc: HashMap<(u16, u16), String>,
    hosting: HashMap<u32, HostingKind>,
}

impl NetworkDb {
    /// A database that knows nothing, not even the built-in tables.
    pub fn empty() -> NetworkDb {
        NetworkDb::default()
    }

    /// Loads the ASN / ISP / Connection-Type databases and the tables in `data_dir`. A missing
    /// directory or missing files are fine (tables fall back to the built-in copies); a file that
    /// exists but cannot be read or parsed is an error.
    pub fn open(data_dir: &Path) -> Result<NetworkDb, ClassifyDataError> {
        let mut files = open_mmdb_files(data_dir, |database_type| {
            network_role(database_type).is_some()
        })?;
        files.sort_by_key(|file| {
            let role = network_role(file.database_type());
            (vendor(&type_words(file.database_type())), role)
        });

        let carriers = parse_carriers(&read_table(data_dir, CARRIERS_FILE, BUILT_IN_CARRIERS)?)?;
        let mcc_mnc = parse_mcc_mnc(&read_table(data_dir, MCC_MNC_FILE, BUILT_IN_MCC_MNC)?)?;
        let hosting = parse_datacenters(&read_table(
            data_dir,
            DATACENTER_FILE,
            BUILT_IN_DATACENTERS,
        )?)?;
        Ok(NetworkDb {
            files,
            carriers,
            mcc_mnc,
            hosting,
        })
    }

    /// The MaxMind DB files in use, in the order they are asked.
    pub fn sources(&self) -> Vec<DataSource> {
        self.files.iter().map(MmdbFile::source).collect()
    }

    /// Walks every loaded database in full; slow, meant for a `check` command.
    pub fn verify(&self) -> Result<(), ClassifyDataError> {
        self.files.iter().try_for_each(MmdbFile::verify)
    }

    /// Every carrier name the tables can give a visitor, sorted, each once.
    pub fn carrier_names(&self) -> Vec<String> {
        let mut names: Vec<String> = (self.carriers.values().map(|c| c.name.clone()))
            .chain(self.mcc_mnc.values().cloned())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Number of AS numbers in the carrier table.
    pub fn carrier_asn_count(&self) -> usize {
        self.carriers.len()
    }

    /// The carrier table's entry for an AS number.
    pub fn carrier_for_asn(&self, asn: u32) -> Option<&Carrier> {
        self.carriers.get(&asn)
    }

    /// True when `datacenter-asns.csv` lists the AS as hosting / cloud (relays are not).
    pub fn is_datacenter_asn(&self, asn: u32) -> bool {
        self.hosting.get(&asn) == Some(&HostingKind::Datacenter)
    }

    /// ASN, ISP, carrier and connection type of `ip`; `unknown` / `None` where nothing is known.
    pub fn lookup(&self, ip: IpAddr) -> NetworkInfo {
        let ip = ip.to_canonical();
        let mut facts = Facts::default();
        for file in &self.files {
            let Ok(result) = file.reader.lookup(ip) else {
                continue;
            };
            // A record that fails to decode counts as absent: one bad record must not stop a click.
            if let Ok(Some(record)) = result.decode::<NetworkRecord>() {
                facts.merge(record);
            }
        }
        self.classify(facts)
    }

    fn classify(&self, facts: Facts) -> NetworkInfo {
        let asn = facts.asn;
        let isp = facts
            .isp
            .clone()
            .or_else(|| facts.organization.clone())
            .or_else(|| facts.as_organization.clone());
        let listed = asn.and_then(|asn| self.carriers.get(&asn));
        let hosting = asn.and_then(|asn| self.hosting.get(&asn)).copied();
        let mcc_mnc = match (&facts.mobile_country_code, &facts.mobile_network_code) {
            (Some(mcc), Some(mnc)) => Some((mcc.as_str(), mnc.as_str())),
            _ => None,
        };
        let ct = facts.connection_type.as_deref().and_then(connection_type);
        let user_type = facts.user_type.as_deref().and_then(user_type);

        let named_datacenter = || {
            listed.is_none()
                && hosting.is_none()
                && [&facts.as_organization, &facts.isp, &facts.organization]
                    .into_iter()
                    .flatten()
                    .any(|name| name_looks_like_datacenter(name))
        };
        let connection = if ct == Some(Connection::Cellular)
            || mcc_mnc.is_some()
            || user_type == Some(Connection::Cellular)
        {
            Connection::Cellular
        } else if hosting == Some(HostingKind::Datacenter)
            || user_type == Some(Connection::Datacenter)
            || named_datacenter()
        {
            Connection::Datacenter
        } else if ct == Some(Connection::Broadband) || user_type == Some(Connection::Broadband) {
            Connection::Broadband
        } else if let Some(carrier) = listed {
            match carrier.network {
                CarrierNetwork::Mobile | CarrierNetwork::MostlyMobile => Connection::Cellular,
                CarrierNetwork::Mixed => Connection::Unknown,
            }
        } else if asn.is_some() || isp.is_some() {
            Connection::Broadband
        } else {
            Connection::Unknown
        };

        let carrier = match connection {
            Connection::Cellular | Connection::Unknown => mcc_mnc
                .and_then(|(mcc, mnc)| self.carrier_for_mcc_mnc(mcc, mnc))
                .map(str::to_owned)
                .or_else(|| listed.map(|carrier| carrier.name.clone()))
                .or_else(|| mcc_mnc.and(facts.isp.clone())),
            Connection::Broadband | Connection::Datacenter => None,
        };

        NetworkInfo {
            asn,
            isp,
            carrier,
            connection,
        }
    }

    fn carrier_for_mcc_mnc(&self, mcc: &str, mnc: &str) -> Option<&str> {
        let key = (mcc.trim().parse().ok()?, mnc.trim().parse().ok()?);
        self.mcc_mnc.get(&key).map(String::as_str)
    }
}

/// MaxMind's `connection_type` values.
fn connection_type(text: &str) -> Option<Connection> {
    match text.trim().to_ascii_lowercase().as_str() {
        "cellular" => Some(Connection::Cellular),
        "cable/dsl" | "dialup" | "satellite" | "corporate" => Some(Connection::Broadband),
        _ => None,
    }
}

/// MaxMind Enterprise's `traits.user_type` values. `content_delivery_network` and
/// `consumer_privacy_network` stay undecided: their exits carry real users (see `Relay`).
fn user_type(text: &str) -> Option<Connection> {
    match text.trim().to_ascii_lowercase().as_str() {
        "cellular" => Some(Connection::Cellular),
        "hosting" | "search_engine_spider" => Some(Connection::Datacenter),
        "business" | "cafe" | "college" | "dialup" | "government" | "library" | "military"
        | "residential" | "router" | "school" | "traveler" => Some(Connection::Broadband),
        _ => None,
    }
}

/// The network fields of any MaxMind schema we read: ISP, ASN and Connection-Type records hold
/// them at the top level, Enterprise (and City) records under `traits`. Unknown keys are skipped
/// without being decoded.
#[derive(Deserialize, Default)]
struct NetworkRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(default)]
    autonomous_system_organization: Option<String>,
    #[serde(default)]
    isp: Option<String>,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    mobile_country_code: Option<String>,
    #[serde(default)]
    mobile_network_code: Option<String>,
    #[serde(default)]
    connection_type: Option<String>,
    #[serde(default)]
    user_type: Option<String>,
    #[serde(default)]
    traits: Option<Box<NetworkRecord>>,
}

/// What the databases said about one address, each field from the first database that had it.
#[derive(Default, Debug)]
struct Facts {
    asn: Option<u32>,
    as_organization: Option<String>,
    isp: Option<String>,
    organization: Option<String>,
    mobile_country_code: Option<String>,
    mobile_network_code: Option<String>,
    connection_type: Option<String>,
    user_type: Option<String>,
}

impl Facts {
    fn merge(&mut self, mut fields: NetworkRecord) {
        if let Some(traits) = fields.traits.take() {
            self.merge(*traits);
        }
        // Databases of different dates may disagree on the AS; an organisation name is only
        // believed alongside the number it was given with.
        let same_as = match (self.asn, fields.autonomous_system_number) {
            (Some(known), Some(theirs)) => known == theirs,
            _ => true,
        };
        fill(&mut self.asn, fields.autonomous_system_number);
        if same_as {
            fill_text(
                &mut self.as_organization,
                fields.autonomous_system_organization,
            );
        }
        fill_text(&mut self.isp, fields.isp);
        fill_text(&mut self.organization, fields.organization);
        // MCC and MNC only mean something as a pair from one record.
        if self.mobile_country_code.is_none() && self.mobile_network_code.is_none() {
            if let (Some(mcc), Some(mnc)) = (
                non_empty(fields.mobile_country_code),
                non_empty(fields.mobile_network_code),
            ) {
                self.mobile_country_code = Some(mcc);
                self.mobile_network_code = Some(mnc);
            }
        }
        fill_text(&mut self.connection_type, fields.connection_type);
        fill_text(&mut self.user_type, fields.user_type);
    }
}

fn fill<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

fn fill_text(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = non_empty(value);
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    let value = value?;
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// A table's text and the path to name in errors.
struct Table {
    path: PathBuf,
    text: String,
}

fn read_table(data_dir: &Path, name: &str, built_in: &str) -> Result<Table, ClassifyDataError> {
    let path = data_dir.join(name);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Table { path, text }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Table {
            path: PathBuf::from(format!("{name} (built in)")),
            text: built_in.to_owned(),
        }),
        Err(error) => Err(ClassifyDataError::Read {
            path,
            message: error.to_string(),
        }),
    }
}

/// One data row of a table: its line number and its values by column name.
type Row<'t> = (usize, HashMap<&'t str, String>);

/// The data rows of a CSV table. Blank lines and lines starting with `#` are skipped; the first
/// other line is the header.
fn csv_rows<'t>(table: &'t Table, required: &[&str]) -> Result<Vec<Row<'t>>, ClassifyDataError> {
    let error = |line: usize, message: String| ClassifyDataError::Table {
        path: table.path.clone(),
        line,
        message,
    };
    let mut lines = table
        .text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err(error(
            1,
            "the table is empty: expected a header line".into(),
        ));
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    for name in required {
        if !columns.contains(name) {
            return Err(error(header_line, format!("missing column `{name}`")));
        }
    }
    let mut rows = Vec::new();
    for (line_no, line) in lines {
        let fields = split_csv_line(line).map_err(|message| error(line_no, message))?;
        if fields.len() != columns.len() {
            return Err(error(
                line_no,
                format!("expected {} fields, found {}", columns.len(), fields.len()),
            ));
        }
        rows.push((line_no, columns.iter().copied().zip(fields).collect()));
    }
    Ok(rows)
}

/// Splits one CSV line; double-quoted fields may hold commas and `""` for a quote.
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                in_quotes = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, c) => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields.into_iter().map(|f| f.trim().to_owned()).collect())
}

fn parse_number<T: std::str::FromStr>(
    table: &Table,
    line: usize,
    column: &str,
    text: &str,
) -> Result<T, ClassifyDataError> {
    let digits = if column == "asn" {
        text.trim_start_matches("AS").trim_start_matches("as")
    } else {
        text
    };
    digits.parse().map_err(|_| ClassifyDataError::Table {
        path: table.path.clone(),
        line,
        message: format!("`{column}` must be a number, found `{text}`"),
    })
}

fn duplicate(table: &Table, line: usize, what: String) -> ClassifyDataError {
    ClassifyDataError::Table {
        path: table.path.clone(),
        line,
        message: format!("{what} is listed twice"),
    }
}

fn parse_carriers(table: &Table) -> Result<HashMap<u32, Carrier>, ClassifyDataError> {
    let mut carriers = HashMap::new();
    for (line, row) in csv_rows(table, &["asn", "carrier", "network"])? {
        let asn: u32 = parse_number(table, line, "asn", &row["asn"])?;
        let name = row["carrier"].clone();
        if name.is_empty() {
            return Err(ClassifyDataError::Table {
                path: table.path.clone(),
                line,
                message: "`carrier` is empty".into(),
            });
        }
        let network =
            CarrierNetwork::parse(&row["network"]).ok_or_else(|| ClassifyDataError::Table {
                path: table.path.clone(),
                line,
                message: format!(
                    "`network` must be mobile, mostly-mobile or mixed, found `{}`",
                    row["network"]
                ),
            })?;
        if carriers.insert(asn, Carrier { name, network }).is_some() {
            return Err(duplicate(table, line, format!("AS{asn}")));
        }
    }
    Ok(carriers)
}

fn parse_mcc_mnc(table: &Table) -> Result<HashMap<(u16, u16), String>, ClassifyDataError> {
    let mut carriers = HashMap::new();
    for (line, row) in csv_rows(table, &["mcc", "mnc", "carrier"])? {
        // MNCs are compared as numbers: MaxMind writes `004` where a table may say `04`.
        let mcc: u16 = parse_number(table, line, "mcc", &row["mcc"])?;
        let mnc: u16 = parse_number(table, line, "mnc", &row["mnc"])?;
        if carriers
            .insert((mcc, mnc), row["carrier"].clone())
            .is_some()
        {
            return Err(duplicate(table, line, format!("MCC {mcc} MNC {mnc}")));
        }
    }
    Ok(carriers)
}

fn parse_datacenters(table: &Table) -> Result<HashMap<u32, HostingKind>, ClassifyDataError> {
    let mut hosting = HashMap::new();
    for (line, row) in csv_rows(table, &["asn", "kind"])? {
        let asn: u32 = parse_number(table, line, "asn", &row["asn"])?;
        let kind = match row["kind"].to_ascii_lowercase().as_str() {
            "datacenter" => HostingKind::Datacenter,
            "relay" => HostingKind::Relay,
            other => {
                return Err(ClassifyDataError::Table {
                    path: table.path.clone(),
                    line,
                    message: format!("`kind` must be datacenter or relay, found `{other}`"),
                })
            }
        };
        if hosting.insert(asn, kind).is_some() {
            return Err(duplicate(table, line, format!("AS{asn}")));
        }
    }
    Ok(hosting)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::classify::test_data::{dir_with, shipped_data};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn info(
        asn: Option<u32>,
        isp: Option<&str>,
        carrier: Option<&str>,
        connection: Connection,
    ) -> NetworkInfo {
        NetworkInfo {
            asn,
            isp: isp.map(str::to_owned),
            carrier: carrier.map(str::to_owned),
            connection,
        }
    }

    #[test]
    fn asn_database_gives_number_and_organisation() {
        let db = NetworkDb::open(dir_with(&["GeoLite2-ASN-Test.mmdb"]).path()).unwrap();
        let cases = [
            (
                "1.128.0.1",
                info(
                    Some(1221),
                    Some("Telstra Pty Ltd"),
                    Some("Telstra"),
                    Connection::Unknown,
                ),
            ),
            (
                "73.1.2.3",
                info(
                    Some(7922),
                    Some("Comcast Cable Communications, Inc."),
                    None,
                    Connection::Broadband,
                ),
            ),
            (
                "72.96.0.1",
                info(
                    Some(6167),
                    Some("Cellco Partnership DBA Verizon Wireless"),
                    Some("Verizon"),
                    Connection::Cellular,
                ),
            ),
            (
                "::ffff:89.160.20.112",
                info(
                    Some(29518),
                    Some("Bredband2 AB"),
                    None,
                    Connection::Broadband,
                ),
            ),
            ("10.0.0.1", NetworkInfo::default()),
        ];
        for (address, expected) in cases {
            assert_eq!(db.lookup(ip(address)), expected, "{address}");
        }
    }

    #[test]
    fn isp_database_gives_isp_name_and_mobile_codes() {
        let db = NetworkDb::open(dir_with(&["GeoIP2-ISP-Test.mmdb"]).path()).unwrap();
        let cases = [
            // MCC 310 / MNC 004 is in the MCC/MNC table.
            (
                "149.101.100.1",
                info(
                    Some(6167),
                    Some("Verizon Wireless"),
                    Some("Verizon"),
                    Connection::Cellular,
                ),
            ),
            (
                "1.128.0.1",
                info(
                    Some(1221),
                    Some("Telstra Internet"),
                    Some("Telstra"),
                    Connection::Unknown,
                ),
            ),
            (
                "12.81.92.1",
                info(
                    Some(7018),
                    Some("AT&T Services"),
                    None,
                    Connection::Broadband,
                ),
            ),
            // No AS number, but an ISP: a network we know, so not `unknown`.
            (
                "4.0.0.1",
                info(
                    None,
                    Some("Level 3 Communications"),
                    None,
                    Connection::Broadband,
                ),
            ),
            // Named as hosting by the ISP database itself.
            (
                "32.64.2.1",
                info(
                    None,
                    Some("AT&T Synaptic Cloud Hosting"),
                    None,
                    Connection::Datacenter,
                ),
            ),
        ];
        for (address, expected) in cases {
            assert_eq!(db.lookup(ip(address)), expected, "{address}");
        }
    }

    #[test]
    fn connection_type_database_decides_the_connection() {
        let db = NetworkDb::open(dir_with(&["GeoIP2-Connection-Type-Test.mmdb"]).path()).unwrap();
        let cases = [
            ("1.0.0.1", Connection::Broadband),       // Cable/DSL
            ("1.0.1.1", Connection::Cellular),        // Cellular
            ("201.243.200.1", Connection::Broadband), // Corporate
            ("214.78.120.1", Connection::Broadband),  // Satellite
            ("10.0.0.1", Connection::Unknown),
        ];
        for (address, connection) in cases {
            assert_eq!(db.lookup(ip(address)).connection, connection, "{address}");
        }
    }

    #[test]
    fn connection_type_overrides_the_carrier_table_per_address() {
        // Telstra's AS is `mixed`; a Connection-Type record settles it for one address.
        let db = NetworkDb::empty();
        let mut carriers = HashMap::new();
        carriers.insert(
            1221,
            Carrier {
                name: "Telstra".into(),
                network: CarrierNetwork::Mixed,
            },
        );
        let db = NetworkDb { carriers, ..db };
        let facts = |connection_type: Option<&str>| Facts {
            asn: Some(1221),
            as_organization: Some("Telstra Limited".into()),
            connection_type: connection_type.map(str::to_owned),
            ..Facts::default()
        };
        let cases = [
            (None, Some("Telstra"), Connection::Unknown),
            (Some("Cellular"), Some("Telstra"), Connection::Cellular),
            (Some("Cable/DSL"), None, Connection::Broadband),
        ];
        for (connection_type, carrier, connection) in cases {
            let result = db.classify(facts(connection_type));
            assert_eq!(
                (result.carrier.as_deref(), result.connection),
                (carrier, connection),
                "{connection_type:?}"
            );
        }
    }

    #[test]
    fn enterprise_database_gives_network_traits() {
        let db = NetworkDb::open(dir_with(&["GeoIP2-Enterprise-Test.mmdb"]).path()).unwrap();
        let result = db.lookup(ip("149.101.100.1"));
        assert_eq!(result.asn, Some(6167));
        assert_eq!(result.connection, Connection::Cellular);
        assert_eq!(result.carrier.as_deref(), Some("Verizon"));

        // Corporate connection, government user: a person on a fixed line.
        assert_eq!(
            db.lookup(ip("81.2.69.160")),
            info(
                None,
                Some("Andrews & Arnold Ltd"),
                None,
                Connection::Broadband
            )
        );
    }

    #[test]
    fn paid_databases_answer_before_free_ones() {
        let dir = dir_with(&["GeoLite2-ASN-Test.mmdb", "GeoIP2-ISP-Test.mmdb"]);
        fs::copy(
            shipped_data().join("asn.mmdb"),
            dir.path().join("0-asn.mmdb"),
        )
        .unwrap();
        let db = NetworkDb::open(dir.path()).unwrap();
        let order: Vec<String> = db.sources().into_iter().map(|s| s.database_type).collect();
        assert_eq!(
            order,
            [
                "GeoIP2-ISP",
                "GeoLite2-ASN",
                "ip-location-db-ASN (compat=GeoLite2-ASN)"
            ]
        );
        // The ISP file's name wins over the ASN files' organisation names.
        assert_eq!(
            db.lookup(ip("1.128.0.1")).isp.as_deref(),
            Some("Telstra Internet")
        );
        // Unknown to both test files: the shipped file answers.
        let google = db.lookup(ip("8.8.8.8"));
        assert_eq!(google.asn, Some(15169));
        assert_eq!(google.connection, Connection::Datacenter);
    }

    #[test]
    fn shipped_data_classifies_well_known_networks() {
        let db = NetworkDb::open(&shipped_data()).unwrap();
        let cases = [
            // T-Mobile US mobile range.
            (
                "172.32.1.1",
                Some(21928),
                Some("T-Mobile"),
                Connection::Cellular,
            ),
            (
                "172.56.10.20",
                Some(21928),
                Some("T-Mobile"),
                Connection::Cellular,
            ),
            // AT&T Mobility over IPv6.
            (
                "2600:380::1",
                Some(20057),
                Some("AT&T"),
                Connection::Cellular,
            ),
            // AWS.
            ("3.5.1.1", Some(14618), None, Connection::Datacenter),
            ("52.95.110.1", Some(16509), None, Connection::Datacenter),
            // Comcast residential.
            ("73.1.2.3", Some(7922), None, Connection::Broadband),
            // Google DNS.
            ("8.8.8.8", Some(15169), None, Connection::Datacenter),
            // Cloudflare is a relay: its exits carry real people.
            ("1.1.1.1", Some(13335), None, Connection::Broadband),
            // Private address: nothing known.
            ("192.168.1.1", None, None, Connection::Unknown),
        ];
        for (address, asn, carrier, connection) in cases {
            let result = db.lookup(ip(address));
            assert_eq!(
                (result.asn, result.carrier.as_deref(), result.connection),
                (asn, carrier, connection),
                "{address}: {result:?}"
            );
        }
        assert_eq!(
            db.lookup(ip("73.1.2.3")).isp.as_deref(),
            Some("Comcast Cable Communications, LLC")
        );
    }

    #[test]
    fn built_in_tables_parse_and_do_not_overlap() {
        let db = NetworkDb::open(Path::new("/nonexistent/smartlink-data")).unwrap();
        assert!(db.sources().is_empty());
        assert!(db.carrier_asn_count() >= 150);
        assert!(db.hosting.len() >= 100);
        assert!(db.mcc_mnc.len() >= 100);
        for asn in db.carriers.keys() {
            assert!(
                !db.hosting.contains_key(asn),
                "AS{asn} is both carrier and hosting"
            );
        }
        let countries: std::collections::HashSet<&str> = BUILT_IN_CARRIERS
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').next())
            .collect();
        assert!(countries.len() >= 30, "{} countries", countries.len());
        // Every carrier name reachable by MCC/MNC is spelt like the carrier table's.
        let names: std::collections::HashSet<&str> =
            db.carriers.values().map(|c| c.name.as_str()).collect();
        for name in db.mcc_mnc.values() {
            assert!(
                names.contains(name.as_str()) || name == "Iliad",
                "MCC/MNC carrier {name} is not in the carrier table"
            );
        }
    }

    #[test]
    fn table_helpers_answer_for_listed_asns() {
        let db = NetworkDb::open(&shipped_data()).unwrap();
        let cases = [
            (16509, true, None),
            (24940, true, None),
            (13335, false, None),
            (21928, false, Some(("T-Mobile", CarrierNetwork::Mobile))),
            (3320, false, Some(("Telekom", CarrierNetwork::Mixed))),
            (55836, false, Some(("Jio", CarrierNetwork::MostlyMobile))),
            (7922, false, None),
        ];
        for (asn, datacenter, carrier) in cases {
            assert_eq!(db.is_datacenter_asn(asn), datacenter, "AS{asn}");
            assert_eq!(
                db.carrier_for_asn(asn)
                    .map(|c| (c.name.as_str(), c.network)),
                carrier,
                "AS{asn}"
            );
        }
    }

    #[test]
    fn hosting_names_are_recognised() {
        let cases = [
            ("Hetzner Online GmbH", false),
            ("EGIHosting", true),
            ("IBM Cloud", true),
            ("Servers.com, Inc.", true),
            ("Iron Mountain Data Center", true),
            ("UK Dedicated Servers Limited", true),
            ("LLC Vpsville", true),
            ("Comcast Cable Communications, LLC", false),
            ("Reliance Jio Infocomm Limited", false),
        ];
        for (name, expected) in cases {
            assert_eq!(name_looks_like_datacenter(name), expected, "{name}");
        }
    }

    #[test]
    fn csv_lines_split_with_quotes() {
        let cases = [
            ("a,b,c", vec!["a", "b", "c"]),
            (
                r#"1,"Amazon.com, Inc.",x"#,
                vec!["1", "Amazon.com, Inc.", "x"],
            ),
            (
                r#""PJSC ""Vimpelcom""",2"#,
                vec![r#"PJSC "Vimpelcom""#, "2"],
            ),
            ("a,,", vec!["a", "", ""]),
        ];
        for (line, expected) in cases {
            assert_eq!(split_csv_line(line).unwrap(), expected, "{line}");
        }
        assert!(split_csv_line(r#"a,"open"#).is_err());
    }

    #[test]
    fn broken_tables_are_errors_naming_file_and_line() {
        let cases = [
            (
                CARRIERS_FILE,
                "country,carrier,asn,network\nUS,T-Mobile,21928,mobile\nUS,Bad,x1,mobile\n",
                "line 3",
            ),
            (
                CARRIERS_FILE,
                "country,carrier,asn,network\nUS,T-Mobile,21928,cellular\n",
                "mostly-mobile",
            ),
            (
                CARRIERS_FILE,
                "country,carrier,asn,network\nUS,A,1,mobile\nUS,B,1,mixed\n",
                "listed twice",
            ),
            (
                CARRIERS_FILE,
                "country,carrier\nUS,T-Mobile\n",
                "missing column `asn`",
            ),
            (
                DATACENTER_FILE,
                "asn,kind\n16509,cloudy\n",
                "datacenter or relay",
            ),
            (
                MCC_MNC_FILE,
                "mcc,mnc,carrier\n310,26O,T-Mobile\n",
                "line 2",
            ),
            (DATACENTER_FILE, "asn,kind\n16509\n", "expected 2 fields"),
        ];
        for (file, text, needle) in cases {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(file), text).unwrap();
            let error = NetworkDb::open(dir.path()).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(file), "{message}");
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
    }

    #[test]
    fn tables_in_the_data_directory_replace_the_built_in_ones() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(CARRIERS_FILE),
            "# local carriers\ncountry,carrier,asn,network\nZZ,Acme Mobile,AS64500,mobile\n",
        )
        .unwrap();
        let db = NetworkDb::open(dir.path()).unwrap();
        assert_eq!(db.carrier_asn_count(), 1);
        assert_eq!(
            db.carrier_for_asn(64500).map(|c| c.name.as_str()),
            Some("Acme Mobile")
        );
        // The other tables were not in the directory: built-in copies.
        assert!(db.is_datacenter_asn(16509));
    }

    #[test]
    fn corrupt_database_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("GeoLite2-ASN.mmdb"), b"\0\0garbage").unwrap();
        let error = NetworkDb::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("GeoLite2-ASN.mmdb"), "{error}");
    }

    #[test]
    fn role_follows_database_type() {
        let cases = [
            ("GeoIP2-Enterprise", Some(NetworkRole::Enterprise)),
            ("GeoIP2-ISP", Some(NetworkRole::Isp)),
            ("GeoIP2-Connection-Type", Some(NetworkRole::ConnectionType)),
            ("GeoLite2-ASN", Some(NetworkRole::Asn)),
            (
                "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
                Some(NetworkRole::Asn),
            ),
            (
                "ip-location-db-ASN (compat=GeoLite2-ASN)",
                Some(NetworkRole::Asn),
            ),
            ("GeoIP2-City", None),
            ("country ipvAll", None),
        ];
        for (database_type, role) in cases {
            assert_eq!(network_role(database_type), role, "{database_type}");
        }
    }
}
