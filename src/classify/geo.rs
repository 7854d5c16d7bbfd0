//! GEO classification (SPEC §6): IP → country, region, city from the MaxMind DB files in `data/`.
//!
//! Every `*.mmdb` file directly inside the data directory is opened at start and read fully into
//! memory; lookups then do no I/O. A file is recognised by its `metadata.database_type`, not by
//! its name, so a GeoIP2 / GeoLite2 / DB-IP download keeps working under any file name. When
//! several GEO databases are present the first one that knows the country of an address answers
//! for country, region and city together (mixing sources could pair a city with the wrong
//! region), in this order:
//!
//! 1. GeoIP2 City (also GeoIP2 Enterprise, which carries the City fields)
//! 2. GeoLite2 City
//! 3. any other city database: DB-IP's own files, or ip-location-db's flat schema
//!    (`country_code`, `state1`, `city`)
//! 4. GeoIP2 Country
//! 5. GeoLite2 Country
//! 6. any other country database, such as the shipped `dbip-country.mmdb`
//!
//! Files of the same rank are tried in file-name order. Types that name neither a city nor a
//! country (ASN, ISP, Connection-Type, Anonymous-IP, ...) are left to other modules or ignored.

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::visitor::GeoInfo;

/// A reference data file exists but cannot be used. Missing files are not errors: the router
/// runs with whatever data it has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyDataError {
    #[error("cannot read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{} is not a valid MaxMind DB file: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{}, line {line}: {message}", path.display())]
    Table {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One loaded database, for start-up logs and `check`-style reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    pub path: PathBuf,
    /// `metadata.database_type`, e.g. `GeoLite2-City`.
    pub database_type: String,
    /// When the database was built (seconds since the Unix epoch).
    pub build_epoch: u64,
}

/// An opened MaxMind DB file with what its metadata says it is.
pub(crate) struct MmdbFile {
    pub(crate) path: PathBuf,
    pub(crate) reader: Reader<Vec<u8>>,
}

impl MmdbFile {
    pub(crate) fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    pub(crate) fn source(&self) -> DataSource {
        DataSource {
            path: self.path.clone(),
            database_type: self.database_type().to_owned(),
            build_epoch: self.reader.metadata().build_epoch,
        }
    }

    pub(crate) fn verify(&self) -> Result<(), ClassifyDataError> {
        self.reader
            .verify()
            .map_err(|error| ClassifyDataError::Corrupt {
                path: self.path.clone(),
                message: error.to_string(),
            })
    }
}

impl fmt::Debug for MmdbFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmdbFile")
            .field("path", &self.path)
            .field("database_type", &self.database_type())
            .finish()
    }
}

/// Who made a database, which decides precedence between files of the same kind: MaxMind's paid
/// data, then MaxMind's free data, then anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Vendor {
    GeoIp2,
    GeoLite2,
    Other,
}

/// The lower-cased alphanumeric words of a `database_type`, so that `GeoIP2-City`,
/// `DBIP-City-Lite` and `city ipvAll` all yield the word `city`.
pub(crate) fn type_words(database_type: &str) -> Vec<String> {
    database_type
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The vendor is read from the first word only: DB-IP labels its compatible files
/// `DBIP-ASN-Lite (compat=GeoLite2-ASN)`, which must not pass for MaxMind's own.
pub(crate) fn vendor(words: &[String]) -> Vendor {
    match words.first().map(String::as_str) {
        Some("geoip2") | Some("geoip") => Vendor::GeoIp2,
        Some("geolite2") => Vendor::GeoLite2,
        _ => Vendor::Other,
    }
}

/// Opens every `*.mmdb` file directly inside `data_dir` whose type `keep` accepts, in file-name
/// order. A missing directory yields no files.
pub(crate) fn open_mmdb_files(
    data_dir: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<MmdbFile>, ClassifyDataError> {
    let entries = match fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(ClassifyDataError::Read {
                path: data_dir.to_path_buf(),
                message: error.to_string(),
            })
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| ClassifyDataError::Read {
            path: data_dir.to_path_buf(),
            message: error.to_string(),
        })?;
        let path = entry.path();
        let is_mmdb = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("mmdb"));
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if is_mmdb && !hidden && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut files = Vec::new();
    for path in paths {
        let bytes = fs::read(&path).map_err(|error| ClassifyDataError::Read {
            path: path.clone(),
            message: error.to_string(),
        })?;
        let reader = Reader::from_source(bytes).map_err(|error| ClassifyDataError::Corrupt {
            path: path.clone(),
            message: error.to_string(),
        })?;
        if keep(&reader.metadata().database_type) {
            files.push(MmdbFile { path, reader });
        }
    }
    Ok(files)
}

/// Precedence of a GEO database; lower answers first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum GeoRank {
    GeoIp2City,
    GeoLite2City,
    OtherCity,
    GeoIp2Country,
    GeoLite2Country,
    OtherCountry,
}

fn geo_rank(database_type: &str) -> Option<GeoRank> {
    let words = type_words(database_type);
    let has = |word: &str| words.iter().any(|w| w == word);
    let city = has("city") || has("enterprise");
    let country = has("country");
    Some(match (vendor(&words), city, country) {
        (Vendor::GeoIp2, true, _) => GeoRank::GeoIp2City,
        (Vendor::GeoLite2, true, _) => GeoRank::GeoLite2City,
        (Vendor::Other, true, _) => GeoRank::OtherCity,
        (Vendor::GeoIp2, false, true) => GeoRank::GeoIp2Country,
        (Vendor::GeoLite2, false, true) => GeoRank::GeoLite2Country,
        (Vendor::Other, false, true) => GeoRank::OtherCountry,
        (_, false, false) => return None,
    })
}

/// IP → GEO, from the City / Country databases found in the data directory.
#[derive(Debug, Default)]
pub struct GeoDb {
    /// Sorted by rank, then file name.
    files: Vec<(GeoRank, MmdbFile)>,
}

impl GeoDb {
    /// A database that knows nothing: every lookup answers all-null.
    pub fn empty() -> GeoDb {
        GeoDb::default()
    }

    /// Loads every City / Country database in `data_dir`. A missing directory or one without GEO
    /// databases gives an empty `GeoDb`; a `.mmdb` file that cannot be read or parsed is an error.
    pub fn open(data_dir: &Path) -> Result<GeoDb, ClassifyDataError> {
        let mut files: Vec<(GeoRank, MmdbFile)> =
            open_mmdb_files(data_dir, |database_type| geo_rank(database_type).is_some())?
                .into_iter()
                .filter_map(|file| geo_rank(file.database_type()).map(|rank| (rank, file)))
                .collect();
        // Stable: files of one rank stay in file-name order.
        files.sort_by_key(|(rank, _)| *rank);
        Ok(GeoDb { files })
    }

    /// True when no GEO database was found.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The databases in use, in the order they are asked.
    pub fn sources(&self) -> Vec<DataSource> {
        self.files.iter().map(|(_, file)| file.source()).collect()
    }

    /// Walks every loaded database in full. Slow (seconds for a City file); meant for a `check`
    /// command, not for start-up.
    pub fn verify(&self) -> Result<(), ClassifyDataError> {
        self.files.iter().try_for_each(|(_, file)| file.verify())
    }

    /// Country, region and city of `ip`; all `None` when no database knows the address.
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        // MaxMind trees keep IPv4 at ::/96 and most files have no ::ffff:0:0/96 alias.
        let ip = ip.to_canonical();
        self.files
            .iter()
            .find_map(|(_, file)| lookup_in(&file.reader, ip))
            .unwrap_or_default()
    }
}

/// The answer of one database, or `None` when it has no country for `ip` (so the next database
/// may be asked). A record that fails to decode counts as absent: one bad record must not stop
/// the click.
fn lookup_in(reader: &Reader<Vec<u8>>, ip: IpAddr) -> Option<GeoInfo> {
    let record: GeoRecord = reader.lookup(ip).ok()?.decode().ok()??;
    let country = record
        .country
        .and_then(|place| place.iso_code.or(place.text))
        .or(record.country_code)
        .and_then(|code| normalise_country(&code))?;
    let region = record
        .subdivisions
        .and_then(|first| first.0)
        .and_then(Place::name)
        .or(record.state1)
        .and_then(non_empty);
    let city = record.city.and_then(Place::name).and_then(non_empty);
    Some(GeoInfo {
        country: Some(country),
        region,
        city,
    })
}

/// ISO 3166-1 alpha-2 in upper case; DB-IP's `ZZ` (unknown) and anything malformed become `None`.
fn normalise_country(code: &str) -> Option<String> {
    let code = code.trim().to_ascii_uppercase();
    let valid = code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) && code != "ZZ";
    valid.then_some(code)
}

fn non_empty(text: String) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == text.len() {
        Some(text)
    } else {
        Some(trimmed.to_owned())
    }
}

/// The fields of a location record under any of the schemas we read. MaxMind nests maps
/// (`country.iso_code`, `subdivisions[0].names.en`, `city.names.en`); ip-location-db stores flat
/// strings (`country_code`, `state1`, `city`); IPinfo-style files put a code string in `country`.
/// `Place` accepts both a string and a map, so one decoder serves them all.
#[derive(Deserialize, Default)]
struct GeoRecord {
    #[serde(default)]
    country: Option<Place>,
    #[serde(default)]
    country_code: Option<String>,
    #[serde(default)]
    subdivisions: Option<FirstPlace>,
    #[serde(default)]
    state1: Option<String>,
    #[serde(default)]
    city: Option<Place>,
}

/// A country, subdivision or city: either a bare string or a map with `iso_code` / `names`.
#[derive(Default, Debug)]
struct Place {
    text: Option<String>,
    iso_code: Option<String>,
    english: Option<String>,
}

impl Place {
    fn name(self) -> Option<String> {
        self.english.or(self.text)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum PlaceKey {
    IsoCode,
    Names,
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct Names {
    #[serde(default)]
    en: Option<String>,
}

impl<'de> Deserialize<'de> for Place {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Place, D::Error> {
        deserializer.deserialize_any(PlaceVisitor)
    }
}

struct PlaceVisitor;

impl<'de> Visitor<'de> for PlaceVisitor {
    type Value = Place;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a place name or a map with iso_code / names")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Place, E> {
        Ok(Place {
            text: Some(text.to_owned()),
            ..Place::default()
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Place, A::Error> {
        let mut place = Place::default();
        while let Some(key) = map.next_key::<PlaceKey>()? {
            match key {
                PlaceKey::IsoCode => place.iso_code = map.next_value()?,
                PlaceKey::Names => place.english = map.next_value::<Names>()?.en,
                PlaceKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(place)
    }
}

/// The first element of a list of places; the rest is skipped without being decoded, since
/// only the largest subdivision is reported.
struct FirstPlace(Option<Place>);

impl<'de> Deserialize<'de> for FirstPlace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FirstPlace, D::Error> {
        deserializer.deserialize_seq(FirstPlaceVisitor)
    }
}

struct FirstPlaceVisitor;

impl<'de> Visitor<'de> for FirstPlaceVisitor {
    type Value = FirstPlace;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of places")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstPlace, A::Error> {
        let first = seq.next_element::<Place>()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FirstPlace(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::classify::test_data::{dir_with, fixtures, shipped_data};

    fn geo(country: Option<&str>, region: Option<&str>, city: Option<&str>) -> GeoInfo {
        GeoInfo {
            country: country.map(str::to_owned),
            region: region.map(str::to_owned),
            city: city.map(str::to_owned),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn city_database_gives_country_region_and_city() {
        let cases = [
            (
                "GeoIP2-City-Test.mmdb",
                "81.2.69.142",
                geo(Some("GB"), Some("England"), Some("London")),
            ),
            (
                "GeoIP2-City-Test.mmdb",
                "2.125.160.216",
                geo(Some("GB"), Some("England"), Some("Boxford")),
            ),
            (
                "GeoIP2-City-Test.mmdb",
                "89.160.20.128",
                geo(Some("SE"), Some("Östergötland County"), Some("Linköping")),
            ),
            (
                "GeoIP2-City-Test.mmdb",
                "216.160.83.64",
                geo(Some("US"), Some("Washington"), None),
            ),
            (
                "GeoIP2-City-Test.mmdb",
                "202.196.224.1",
                geo(Some("PH"), None, None),
            ),
            (
                "GeoIP2-City-Test.mmdb",
                "::ffff:81.2.69.142",
                geo(Some("GB"), Some("England"), Some("London")),
            ),
            (
                "GeoIP2-City-Test.mmdb",
                "2001:218::1",
                geo(Some("JP"), None, None),
            ),
            (
                "GeoLite2-City-Test.mmdb",
                "175.16.199.10",
                geo(Some("CN"), Some("Jilin Sheng"), Some("Changchun")),
            ),
            (
                "GeoIP2-Enterprise-Test.mmdb",
                "81.2.69.160",
                geo(Some("GB"), Some("England"), Some("London")),
            ),
        ];
        for (file, address, expected) in cases {
            let dir = dir_with(&[file]);
            let db = GeoDb::open(dir.path()).unwrap();
            assert_eq!(db.lookup(ip(address)), expected, "{file} {address}");
        }
    }

    #[test]
    fn country_database_gives_country_only() {
        let cases = [
            ("GeoIP2-Country-Test.mmdb", "81.2.69.142", Some("GB")),
            ("GeoIP2-Country-Test.mmdb", "217.65.48.1", Some("GI")),
            ("GeoLite2-Country-Test.mmdb", "89.160.20.112", Some("SE")),
            // The record exists but names no country.
            ("GeoIP2-Country-Test.mmdb", "214.1.1.1", None),
            ("GeoIP2-Country-Test.mmdb", "10.0.0.1", None),
        ];
        for (file, address, country) in cases {
            let dir = dir_with(&[file]);
            let db = GeoDb::open(dir.path()).unwrap();
            assert_eq!(
                db.lookup(ip(address)),
                geo(country, None, None),
                "{file} {address}"
            );
        }
    }

    #[test]
    fn files_are_recognised_by_database_type_not_by_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::copy(
            fixtures().join("GeoIP2-City-Test.mmdb"),
            dir.path().join("my-geo.MMDB"),
        )
        .unwrap();
        // Not GEO data: must be skipped, not misread.
        fs::copy(
            fixtures().join("GeoLite2-ASN-Test.mmdb"),
            dir.path().join("a-first.mmdb"),
        )
        .unwrap();
        let db = GeoDb::open(dir.path()).unwrap();
        assert_eq!(db.sources().len(), 1);
        assert_eq!(db.sources()[0].database_type, "GeoIP2-City");
        assert_eq!(db.lookup(ip("81.2.69.142")).city.as_deref(), Some("London"));
    }

    #[test]
    fn city_databases_answer_before_country_databases_whatever_the_file_names() {
        let dir = dir_with(&[
            "GeoLite2-Country-Test.mmdb",
            "GeoIP2-Country-Test.mmdb",
            "GeoLite2-City-Test.mmdb",
            "GeoIP2-City-Test.mmdb",
        ]);
        fs::copy(
            shipped_data().join("dbip-country.mmdb"),
            dir.path().join("0-dbip-country.mmdb"),
        )
        .unwrap();
        let db = GeoDb::open(dir.path()).unwrap();
        let order: Vec<String> = db.sources().into_iter().map(|s| s.database_type).collect();
        assert_eq!(
            order,
            [
                "GeoIP2-City",
                "GeoLite2-City",
                "GeoIP2-Country",
                "GeoLite2-Country",
                "country ipvAll"
            ]
        );
        // GeoIP2-City knows no city for 214.78.124.0/24 while GeoLite2-City says San Diego: the
        // better database answers alone rather than being patched from a weaker one.
        assert_eq!(
            db.lookup(ip("214.78.124.1")),
            geo(Some("US"), Some("California"), None)
        );
        // Only the country files know this one.
        assert_eq!(db.lookup(ip("74.209.24.1")), geo(Some("US"), None, None));
        // Unknown to every test file: the shipped country file still answers.
        assert_eq!(db.lookup(ip("8.8.8.8")), geo(Some("US"), None, None));
    }

    #[test]
    fn rank_follows_vendor_and_kind_of_database() {
        let cases = [
            ("GeoIP2-City", Some(GeoRank::GeoIp2City)),
            ("GeoIP2-Enterprise", Some(GeoRank::GeoIp2City)),
            ("GeoIP2-Precision-Enterprise", Some(GeoRank::GeoIp2City)),
            ("GeoLite2-City", Some(GeoRank::GeoLite2City)),
            ("DBIP-City-Lite", Some(GeoRank::OtherCity)),
            ("city ipvAll", Some(GeoRank::OtherCity)),
            ("GeoIP2-Country", Some(GeoRank::GeoIp2Country)),
            ("GeoLite2-Country", Some(GeoRank::GeoLite2Country)),
            ("DBIP-Country-Lite", Some(GeoRank::OtherCountry)),
            ("country ipvAll", Some(GeoRank::OtherCountry)),
            ("GeoLite2-ASN", None),
            ("DBIP-ASN-Lite (compat=GeoLite2-ASN)", None),
            ("GeoIP2-ISP", None),
            ("GeoIP2-Connection-Type", None),
            ("GeoIP2-Anonymous-IP", None),
        ];
        for (database_type, rank) in cases {
            assert_eq!(geo_rank(database_type), rank, "{database_type}");
        }
    }

    #[test]
    fn flat_and_nested_records_decode_alike() {
        // The same decoder reads ip-location-db's flat city schema; checked here on the
        // deserializer level since no flat-schema city file ships.
        let flat = serde_json::json!({
            "country_code": "us", "state1": "California", "state2": "", "city": "San Diego",
            "latitude": 32.7, "longitude": -117.1, "postcode": "92101", "timezone": "America/Los_Angeles"
        });
        let record: GeoRecord = serde_json::from_value(flat).unwrap();
        assert_eq!(record.country_code.as_deref(), Some("us"));
        assert_eq!(record.state1.as_deref(), Some("California"));
        assert_eq!(
            record.city.and_then(Place::name).as_deref(),
            Some("San Diego")
        );

        let nested = serde_json::json!({
            "country": {"iso_code": "GB", "names": {"de": "Vereinigtes Königreich", "en": "United Kingdom"}},
            "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}, {"names": {"en": "West Berkshire"}}],
            "city": {"geoname_id": 1, "names": {"en": "Boxford"}}
        });
        let record: GeoRecord = serde_json::from_value(nested).unwrap();
        assert_eq!(
            record.country.and_then(|p| p.iso_code).as_deref(),
            Some("GB")
        );
        assert_eq!(
            record
                .subdivisions
                .and_then(|s| s.0)
                .and_then(Place::name)
                .as_deref(),
            Some("England")
        );
        assert_eq!(
            record.city.and_then(Place::name).as_deref(),
            Some("Boxford")
        );
    }

    #[test]
    fn country_codes_are_upper_case_iso_or_nothing() {
        let cases = [
            ("us", Some("US")),
            (" GB ", Some("GB")),
            ("ZZ", None),
            ("", None),
            ("USA", None),
            ("T1", None),
        ];
        for (code, expected) in cases {
            assert_eq!(normalise_country(code).as_deref(), expected, "{code:?}");
        }
    }

    #[test]
    fn shipped_country_database_locates_well_known_addresses() {
        let db = GeoDb::open(&shipped_data()).unwrap();
        assert!(!db.is_empty());
        let cases = [
            ("8.8.8.8", "US"),
            ("73.1.2.3", "US"),       // Comcast residential
            ("172.32.1.1", "US"),     // T-Mobile US
            ("81.2.69.142", "GB"),    // BT
            ("2601:1c0::1", "US"),    // Comcast IPv6
            ("2003:e0::1", "DE"),     // Deutsche Telekom IPv6
            ("::ffff:8.8.8.8", "US"), // IPv4-mapped form of the same address
        ];
        for (address, country) in cases {
            assert_eq!(
                db.lookup(ip(address)).country.as_deref(),
                Some(country),
                "{address}"
            );
        }
    }

    #[test]
    fn private_and_reserved_addresses_have_no_geo() {
        let db = GeoDb::open(&shipped_data()).unwrap();
        for address in ["10.1.2.3", "192.168.0.1", "127.0.0.1", "::1", "fe80::1"] {
            assert_eq!(db.lookup(ip(address)), GeoInfo::default(), "{address}");
        }
    }

    #[test]
    fn missing_directory_or_no_geo_files_gives_an_empty_database() {
        let db = GeoDb::open(Path::new("/nonexistent/smartlink-data")).unwrap();
        assert!(db.is_empty());
        assert_eq!(db.lookup(ip("8.8.8.8")), GeoInfo::default());

        let dir = dir_with(&["GeoLite2-ASN-Test.mmdb", "GeoIP2-ISP-Test.mmdb"]);
        fs::write(dir.path().join("notes.txt"), "not a database").unwrap();
        let db = GeoDb::open(dir.path()).unwrap();
        assert!(db.is_empty());
        assert_eq!(db.lookup(ip("81.2.69.142")), GeoInfo::default());
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("GeoLite2-City.mmdb");
        fs::write(&garbage, b"this is not a MaxMind database").unwrap();
        let error = GeoDb::open(dir.path()).unwrap_err();
        assert!(
            matches!(error, ClassifyDataError::Corrupt { .. }),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("GeoLite2-City.mmdb"), "{text}");
        assert!(text.contains("not a valid MaxMind DB file"), "{text}");

        let truncated = dir.path().join("GeoLite2-City.mmdb");
        let bytes = fs::read(fixtures().join("GeoIP2-City-Test.mmdb")).unwrap();
        fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let error = GeoDb::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("GeoLite2-City.mmdb"), "{error}");
    }

    #[test]
    fn verify_accepts_the_fixtures() {
        let dir = dir_with(&["GeoIP2-City-Test.mmdb", "GeoLite2-Country-Test.mmdb"]);
        GeoDb::open(dir.path()).unwrap().verify().unwrap();
    }
}
