//! Hot reload: a background thread polls the rule files and swaps in a new `RuleSet` only after
//! the whole set validated, so a half-saved or broken edit never replaces the rules in force.
//!
//! Polling re-reads the (small) files and compares their content hash with the version in
//! force: it works the same across editors that write in place or rename, network and
//! container filesystems, and coarse modification times.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::rules::load::{load_from_sources, read_files, version_of, RuleError};
use crate::rules::model::RuleSet;

/// How often the files are looked at. A change is loaded on the poll after the one that first
/// saw it, so it is in force within two intervals (about 1 s).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What a reload did, for the caller to log.
#[derive(Debug)]
pub enum ReloadEvent {
    /// The files changed and the new set is in force.
    Applied { version: String },
    /// The files changed but do not validate; the set in force stays. Reported once per
    /// distinct content, not on every poll.
    Refused { errors: Vec<RuleError> },
}

/// The polling thread. Dropping it leaves the thread running for the life of the process;
/// `stop` ends it.
#[derive(Debug)]
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// Ends the thread and waits for it (at most one poll).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Starts watching `rules_dir`. Whenever its files differ from `current`'s version they are
/// loaded and validated: a valid set is stored into `current` atomically, an invalid one is
/// reported and ignored. A set stored by someone else (the admin API) with the same content
/// as the files is left alone.
pub fn watch(
    rules_dir: PathBuf,
    current: Arc<ArcSwap<RuleSet>>,
    on_event: impl Fn(ReloadEvent) + Send + 'static,
) -> WatchHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("rules-watch".to_string())
        .spawn(move || {
            let mut state = PollState::default();
            while !stopping.load(Ordering::Relaxed) {
                poll(&rules_dir, &current, &on_event, &mut state);
                std::thread::park_timeout(POLL_INTERVAL);
            }
        })
        .expect("spawning the rules watcher thread");
    WatchHandle {
        stop,
        thread: Some(thread),
    }
}

/// What the previous polls saw, keyed by content version (or by the read errors).
#[derive(Default)]
struct PollState {
    /// Seen on the previous poll: a change is loaded once it has stayed put for one poll, so an
    /// editor caught halfway through writing a file does not produce a spurious refusal.
    last_seen: Option<String>,
    /// Already reported as refused: told once, not on every poll.
    last_refused: Option<String>,
}

fn poll(
    rules_dir: &std::path::Path,
    current: &ArcSwap<RuleSet>,
    on_event: &impl Fn(ReloadEvent),
    state: &mut PollState,
) {
    let (version, files) = match read_files(rules_dir) {
        Ok(files) => (version_of(&files), Ok(files)),
        Err(errors) => {
            let version = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            (version, Err(errors))
        }
    };
    let in_force = current.load_full();
    if version == in_force.version {
        *state = PollState::default();
        return;
    }
    let settled = state.last_seen.as_deref() == Some(version.as_str());
    state.last_seen = Some(version.clone());
    if !settled || state.last_refused.as_deref() == Some(version.as_str()) {
        return;
    }
    match files.and_then(|files| load_from_sources(&files)) {
        Ok(set) => {
            state.last_refused = None;
            let version = set.version.clone();
            // Only over the set this poll compared with: one the admin API swapped in
            // meanwhile (already what the files say) is not replaced by an older reading.
            let previous = current.compare_and_swap(&in_force, Arc::new(set));
            if Arc::ptr_eq(&previous, &in_force) {
                on_event(ReloadEvent::Applied { version });
            }
        }
        Err(errors) => {
            state.last_refused = Some(version.clone());
            on_event(ReloadEvent::Refused { errors });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    use crate::money::Money;
    use crate::rules::load::load;

    const OFFERS: &str =
        "[[offer]]\nid = \"o1\"\nurl = \"https://o.example/?c={clickid}\"\npayout = 1.5\n";

    struct Fixture {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        current: Arc<ArcSwap<RuleSet>>,
        events: mpsc::Receiver<ReloadEvent>,
        watcher: WatchHandle,
    }

    fn start() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rules");
        std::fs::create_dir_all(dir.join("campaigns")).unwrap();
        std::fs::write(dir.join("sources.toml"), "[[source]]\nid = \"src\"\n").unwrap();
        std::fs::write(dir.join("offers.toml"), OFFERS).unwrap();
        std::fs::write(
            dir.join("campaigns/c.toml"),
            "id = \"c\"\nsource = \"src\"\nbacklink = \"https://b.example/\"\n[[fallback]]\noffer = \"o1\"\n",
        )
        .unwrap();
        let current = Arc::new(ArcSwap::from_pointee(load(&dir).unwrap()));
        let (sender, events) = mpsc::channel();
        let watcher = watch(dir.clone(), Arc::clone(&current), move |event| {
            let _ = sender.send(event);
        });
        Fixture {
            _tmp: tmp,
            dir,
            current,
            events,
            watcher,
        }
    }

    fn payout(current: &ArcSwap<RuleSet>) -> Money {
        current.load().offer("o1").unwrap().payout
    }

    #[test]
    fn a_valid_change_applies_within_two_seconds() {
        let f = start();
        let started = Instant::now();
        std::fs::write(f.dir.join("offers.toml"), OFFERS.replace("1.5", "2.75")).unwrap();
        let event = f.events.recv_timeout(Duration::from_secs(2)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        let ReloadEvent::Applied { version } = event else {
            panic!("{event:?}");
        };
        assert_eq!(version, f.current.load().version);
        assert_eq!(payout(&f.current), Money::from_micros(2_750_000));
        f.watcher.stop();
    }

    #[test]
    fn a_new_campaign_file_applies_without_a_restart() {
        let f = start();
        std::fs::write(
            f.dir.join("campaigns/d.toml"),
            "id = \"d\"\nsource = \"src\"\nbacklink = \"https://b.example/d\"\n",
        )
        .unwrap();
        let event = f.events.recv_timeout(Duration::from_secs(2)).unwrap();
        assert!(matches!(event, ReloadEvent::Applied { .. }), "{event:?}");
        assert!(f.current.load().campaign("d").is_some());
        f.watcher.stop();
    }

    #[test]
    fn a_refused_set_never_replaces_the_one_in_force() {
        let f = start();
        let before = f.current.load().version.clone();
        std::fs::write(
            f.dir.join("offers.toml"),
            OFFERS.replace("1.5", "2.75").replace("https://", "ftp://"),
        )
        .unwrap();
        let event = f.events.recv_timeout(Duration::from_secs(2)).unwrap();
        let ReloadEvent::Refused { errors } = event else {
            panic!("{event:?}");
        };
        assert_eq!(errors.len(), 1);
        assert!(errors[0]
            .to_string()
            .contains("offers.toml:3: offer \"o1\": url: not an http(s) URL"));
        assert_eq!(f.current.load().version, before);
        assert_eq!(payout(&f.current), Money::from_micros(1_500_000));

        // Told once, not on every poll.
        assert!(f.events.recv_timeout(POLL_INTERVAL * 3).is_err());
        assert_eq!(f.current.load().version, before);

        // Fixing the file applies it.
        std::fs::write(f.dir.join("offers.toml"), OFFERS.replace("1.5", "2.75")).unwrap();
        let event = f.events.recv_timeout(Duration::from_secs(2)).unwrap();
        assert!(matches!(event, ReloadEvent::Applied { .. }), "{event:?}");
        assert_eq!(payout(&f.current), Money::from_micros(2_750_000));
        f.watcher.stop();
    }

    #[test]
    fn a_set_already_in_force_is_not_reloaded() {
        let f = start();
        assert!(f.events.recv_timeout(POLL_INTERVAL * 3).is_err());
        f.watcher.stop();
    }
}
