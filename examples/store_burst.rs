//! The SQLite store alone, without HTTP: hands it clicks as fast as its queue takes them and
//! reports how many per second it committed, with the report rollups. For profiling the writer
//! thread under callgrind, where a server could not be driven hard enough:
//!
//! ```sh
//! cargo build --release --example store_burst
//! target/release/examples/store_burst 200000
//! valgrind --tool=callgrind --separate-threads=yes target/release/examples/store_burst 50000
//! ```
//!
//! Clicks rotate through a few thousand combinations of country, OS, browser, carrier and offer,
//! like the load tests' visitors. The file is `var/store-burst/smartlink.db`, made anew each run.

use std::time::{Duration, Instant};

use smartlink::clock::{Clock, SystemClock};
use smartlink::config::Durability;
use smartlink::decide::Route;
use smartlink::money::Money;
use smartlink::store::sqlite::SqliteStore;
use smartlink::store::{ClickRecord, Store};
use smartlink::visitor::{Connection, Device, Os, QueryParams, Visitor};

const COUNTRIES: [&str; 12] = [
    "US", "DE", "BR", "IN", "ID", "MX", "FR", "GB", "TR", "VN", "PH", "NG",
];
const OSES: [Os; 4] = [Os::Android, Os::Ios, Os::Windows, Os::MacOs];
const BROWSERS: [&str; 5] = ["Chrome", "Safari", "Firefox", "Samsung Internet", "Edge"];
const CARRIERS: [Option<&str>; 4] = [None, Some("Verizon"), Some("Vodafone"), Some("Jio")];

/// A fixed xorshift sequence: the same clicks on every run.
struct Sequence(u64);

impl Sequence {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn click(i: usize, seq: &mut Sequence, rng: &mut impl rand::Rng) -> ClickRecord {
    // Twenty clicks a millisecond, from an hour ago on.
    let ts_ms = SystemClock.now_ms() - 3_600_000 + i as i64 / 20;
    let ip = std::net::IpAddr::from([
        1 + seq.below(223) as u8,
        seq.below(256) as u8,
        seq.below(256) as u8,
        seq.below(256) as u8,
    ]);
    let mut pick = |n: usize| seq.below(n as u64) as usize;
    ClickRecord {
        id: smartlink::click_id::generate(ts_ms, rng),
        ts_ms,
        campaign: ["us-android", "global-smartlink"][pick(2)].into(),
        source: "adsterra".into(),
        external_id: Some(format!("ext-{i}")),
        cost: Some(Money::from_micros(3_600)),
        offer: Some(format!("offer-{}", pick(4))),
        route: Route::Fallback,
        visitor: Visitor {
            ip,
            country: Some(COUNTRIES[pick(COUNTRIES.len())].into()),
            region: Some(format!("Region {}", pick(50))),
            city: Some(format!("City {}", pick(300))),
            asn: Some(1000 + pick(40) as u32),
            isp: Some(format!("ISP {}", pick(40))),
            carrier: CARRIERS[pick(CARRIERS.len())].map(str::to_string),
            connection: Connection::Cellular,
            os: OSES[pick(OSES.len())],
            os_version: Some(format!("{}", 10 + pick(5))),
            browser: Some(BROWSERS[pick(BROWSERS.len())].into()),
            browser_version: Some(format!("12{}.0", pick(7))),
            device: Device::Phone,
            bot: false,
            language: Some("en".into()),
        },
        ip,
        params: QueryParams(vec![
            ("clickid".into(), format!("ext-{i}")),
            ("zone".into(), format!("{}", 1000 + pick(50))),
        ]),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 200_000,
        Some(Ok(count)) => count,
        Some(Err(_)) => {
            eprintln!("store_burst: the argument is a number of clicks");
            std::process::exit(2);
        }
    };
    let dir = std::path::Path::new("var/store-burst");
    let _ = std::fs::remove_dir_all(dir);
    let store = SqliteStore::open(
        &dir.join("smartlink.db"),
        Durability::Batched,
        Duration::from_secs(30 * 86_400),
    )
    .expect("the store opens");
    let mut seq = Sequence(0x9e37_79b9_7f4a_7c15);
    let mut rng = rand::rng();
    let clicks: Vec<ClickRecord> = (0..count).map(|i| click(i, &mut seq, &mut rng)).collect();
    let started = Instant::now();
    let mut waits = 0_u64;
    for click in clicks {
        // A full queue refuses the click; here that means waiting for the writer, not losing it.
        while store.record_click(click.clone()).await.is_err() {
            waits += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    store.flush().await.expect("the flush commits");
    let elapsed = started.elapsed();
    println!(
        "{{\"clicks\":{count},\"seconds\":{:.3},\"clicks_per_second\":{:.0},\"queue_full_waits\":{waits}}}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}
