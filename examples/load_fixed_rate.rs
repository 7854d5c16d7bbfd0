//! Open-loop load at a fixed rate, for latency percentiles that a closed-loop tool (wrk) hides:
//! request `i` is due at `start + i / rate` whatever happened to the ones before it, and its
//! latency is measured from that due time, so a stalled server shows up as the queueing it causes
//! (no coordinated omission). Clicks rotate through 1,024 client addresses (X-Forwarded-For) and
//! the User-Agents of `bench/user-agents.txt`, like `bench/click.lua`.
//!
//! ```sh
//! cargo run --release --example load_fixed_rate -- \
//!     --addr 127.0.0.1:18080 --rate 8000 --seconds 20 --connections 64
//! ```
//!
//! Prints one JSON object: requests sent, answered, errors, the rate achieved, and latency
//! percentiles in milliseconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    addr: SocketAddr,
    rate: f64,
    seconds: f64,
    connections: usize,
    campaigns: Vec<String>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        addr: "127.0.0.1:18080".parse().expect("a valid default"),
        rate: 1000.0,
        seconds: 10.0,
        connections: 64,
        campaigns: vec!["us-android".into(), "global-smartlink".into()],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag}: a value is missing"))?;
        let bad = |what: &str| format!("{flag}: `{value}` is not {what}");
        match flag.as_str() {
            "--addr" => options.addr = value.parse().map_err(|_| bad("host:port"))?,
            "--rate" => options.rate = value.parse().map_err(|_| bad("a rate"))?,
            "--seconds" => options.seconds = value.parse().map_err(|_| bad("a duration"))?,
            "--connections" => options.connections = value.parse().map_err(|_| bad("a count"))?,
            "--campaigns" => options.campaigns = value.split(',').map(str::to_string).collect(),
            _ => return Err(format!("{flag}: unknown option")),
        }
    }
    if options.rate <= 0.0 || options.seconds <= 0.0 || options.connections == 0 {
        return Err("--rate, --seconds and --connections must be positive".into());
    }
    Ok(options)
}

fn list(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run from the repository root)"))
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Requests, pre-rendered, cycled through: rendering is not part of what is measured.
fn requests(campaigns: &[String]) -> Vec<Vec<u8>> {
    let prefixes = list("bench/addresses.txt");
    let agents = list("bench/user-agents.txt");
    // A fixed linear congruential sequence: the same addresses on every run.
    let mut state: u64 = 20_261_123;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    (0..1024usize)
        .map(|i| {
            let ip = format!(
                "{}.{}.{}",
                prefixes[i % prefixes.len()],
                next(256),
                1 + next(254)
            );
            let agent = &agents[i % agents.len()];
            let campaign = &campaigns[i % campaigns.len()];
            format!(
                "GET /c/{campaign}?clickid=ext{i}&zone={}&cost=1.25 HTTP/1.1\r\nHost: bench\r\n\
                 X-Forwarded-For: {ip}\r\nUser-Agent: {agent}\r\n\
                 Accept-Language: en-US,en;q=0.9\r\n\r\n",
                1000 + i % 50
            )
            .into_bytes()
        })
        .collect()
}

/// Reads one response (headers and a `Content-Length` body); returns its status.
async fn response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<u16> {
    let broken =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).map_err(|_| broken("headers"))?;
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| broken("status line"))?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            while buffer.len() < total {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(broken("closed mid-body"));
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..total);
            return Ok(status);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(broken("closed"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until `due` to within microseconds. Tokio's timer ticks in whole milliseconds, so
/// sleeping on it alone sends each request up to a millisecond late, and that lateness would be
/// counted as the server's latency: sleep on it only to a millisecond before, then yield until
/// due (this generator has a core of its own).
async fn wait_until(due: Instant) {
    let early = Duration::from_millis(2);
    if let Some(far) = due.checked_sub(early).filter(|at| *at > Instant::now()) {
        tokio::time::sleep_until(far.into()).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load_fixed_rate: {e}");
            std::process::exit(2);
        }
    };
    let requests = Arc::new(requests(&options.campaigns));
    let total = (options.rate * options.seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        let (requests, issued, errors) = (requests.clone(), issued.clone(), errors.clone());
        let addr = options.addr;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut stream = TcpStream::connect(addr).await.ok();
            let mut buffer = Vec::with_capacity(8192);
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = start + interval.mul_f64(i as f64);
                wait_until(due).await;
                if stream.is_none() {
                    stream = TcpStream::connect(addr).await.ok();
                    buffer.clear();
                }
                let Some(s) = stream.as_mut() else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let request = &requests[i as usize % requests.len()];
                let outcome = match s.write_all(request).await {
                    Ok(()) => response(s, &mut buffer).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(status) if status < 400 => {
                        latencies.push(due.elapsed().as_micros() as u64);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        stream = None;
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(
                ((latencies.len() as f64 * p / 100.0) as usize)
                    .min(latencies.len().saturating_sub(1)),
            )
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    println!(
        "{{\"target_rate\":{},\"sent\":{},\"answered\":{},\"errors\":{},\"achieved_rate\":{:.0},\
         \"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}}}",
        options.rate,
        total,
        latencies.len(),
        errors.load(Ordering::Relaxed),
        latencies.len() as f64 / elapsed,
        percentile(50.0),
        percentile(90.0),
        percentile(99.0),
        percentile(99.9),
        latencies.last().map_or(0.0, |&us| us as f64 / 1000.0),
    );
}
