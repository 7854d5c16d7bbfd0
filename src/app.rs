//! `Application::build(settings)`: load rules and data, open the store, bind the listener (so
//! the real port is known, port 0 included), and return a server that tests and `serve` run.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use arc_swap::ArcSwap;

use crate::admin_token;
use crate::bandit::Allocator;
use crate::caps::CapTracker;
use crate::classify::Classifier;
use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, StoreKind};
use crate::decide::Route;
use crate::deliver::{Backoff, Deliverer, StoreQueue};
use crate::http::{self, error::json_error, AppState};
use crate::learning::{self, Learner};
use crate::metrics::Metrics;
use crate::rules;
use crate::store::redis::{self as redis_store, RedisStore, SharedEvent};
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

pub struct Application {
    admin_token_source: admin_token::TokenSource,
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    rules_watch: rules::WatchHandle,
    delivery_task: tokio::task::JoinHandle<()>,
    learner: Learner,
}

impl Application {
    pub async fn build(mut settings: Settings) -> anyhow::Result<Application> {
        let (token, token_source) =
            admin_token::resolve(&settings.config.admin_token, &settings.config.var_dir)
                .with_context(|| {
                    format!(
                        "{}: admin token: cannot keep it in {}",
                        settings.origin,
                        settings.config.var_dir.display()
                    )
                })?;
        settings.config.admin_token = token;
        let config = &settings.config;
        let rule_set = rules::load(&config.rules_dir).map_err(|errors| {
            anyhow::anyhow!(errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"))
        })?;
        let classifier = Classifier::open(&config.data_dir)?;
        let (store, shared) = open_store(&settings).await?;
        let metrics = Arc::new(Metrics::default());
        let rules = Arc::new(ArcSwap::from_pointee(rule_set));
        let rules_watch = watch_rules(&settings, &rules, &metrics);

        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let caps = Arc::new(CapTracker::new(clock.clone()));
        let started_ms = clock.now_ms();
        rebuild_caps(&caps, store.as_ref(), started_ms).await?;
        let deliverer = Arc::new(
            Deliverer::new(
                Arc::new(StoreQueue(store.clone())),
                clock.clone(),
                Backoff::from(&config.delivery),
                crate::deliver::DEFAULT_TIMEOUT,
            )
            .context("cannot set up outbound postbacks")?,
        );
        let delivery_task = deliverer.clone().spawn();
        let allocator = Arc::new(Allocator::new());
        let (learner, learning) = Learner::spawn(
            learning::Inputs {
                rules: rules.clone(),
                availability: caps.clone(),
                clock: clock.clone(),
                allocator: allocator.clone(),
                metrics: metrics.clone(),
                refresh: std::time::Duration::from_millis(config.bandit.refresh_ms),
                payout: {
                    let settings = settings.clone();
                    Arc::new(move |offer| settings.payout_in_base(offer).to_f64())
                },
            },
            Some(history(&store, started_ms)),
        )
        .context("cannot start the fallback optimiser")?;
        if let Some(shared) = &shared {
            // What other instances record reaches this one's caps and learner from the moment
            // its own history was read.
            follow_instances(shared, &caps, &learning, started_ms);
        }
        let editor = Arc::new(rules::RuleEditor::new(
            settings.config.rules_dir.clone(),
            rules.clone(),
        ));
        let limits = settings.config.limits.clone();
        let state = web::Data::new(AppState {
            settings,
            rules,
            classifier: Arc::new(classifier),
            store,
            policy: allocator.clone(),
            allocator,
            editor,
            sessions: Arc::default(),
            learning,
            metrics,
            clock,
            caps,
            deliverer: Some(deliverer),
            limits: Arc::new(http::limit::RateLimits::new(&limits)),
        });
        forget_idle_callers(state.limits.clone());
        let server_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(http::limit::middleware))
                .app_data(server_state.clone())
                .configure(http::routes)
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .shutdown_timeout(15)
        .run();
        Ok(Application {
            admin_token_source: token_source,
            port,
            server,
            state,
            rules_watch,
            delivery_task,
            learner,
        })
    }

    /// The admin token when it was generated by this start (to be shown once), else `None`.
    pub fn generated_admin_token(&self) -> Option<(&str, &std::path::Path)> {
        match &self.admin_token_source {
            admin_token::TokenSource::Generated(path) => Some((
                self.state.settings.config.admin_token.as_str(),
                path.as_path(),
            )),
            _ => None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store the server records into (tests read clicks back through it).
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// Stops the server from elsewhere (tests; `serve` stops on SIGTERM / SIGINT by itself).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped, then, with in-flight requests answered, flushes the store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        self.rules_watch.stop();
        // The worker records the outcome of what it has in flight, then stops; its queue is
        // durable, so the next start resumes what is left.
        if let Some(deliverer) = &self.state.deliverer {
            deliverer.shutdown();
        }
        let _ = self.delivery_task.await;
        // What it learnt is in the store; the next start replays it.
        self.learner.stop().await;
        self.state.store.flush().await?;
        tracing::info!("stopped; store flushed");
        Ok(())
    }
}

/// The configured store, and the same store as a Redis store when it is one (for following the
/// other instances).
async fn open_store(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<RedisStore>>)> {
    let config = &settings.config;
    let retention = settings.store_retention();
    match config.store.kind {
        StoreKind::Sqlite => {
            let store = SqliteStore::open(&config.store.path, config.store.durability, retention)?;
            Ok((Arc::new(store), None))
        }
        StoreKind::Redis => {
            let store = RedisStore::open(
                &config.store.url.urls(),
                redis_store::Options::new(config.store.durability, retention),
            )
            .await
            .with_context(|| format!("{}: store.url", settings.origin))?;
            let store = Arc::new(store);
            Ok((store.clone(), Some(store)))
        }
    }
}

/// Applies other instances' approvals and reversals to the caps, and their residual clicks and
/// conversion outcomes to the learner, as the click and postback handlers do for this one's.
fn follow_instances(
    store: &RedisStore,
    caps: &Arc<CapTracker>,
    learning: &learning::Feed,
    since_ms: i64,
) {
    let caps = caps.clone();
    let learning = learning.clone();
    store.follow(since_ms, move |event| match event {
        SharedEvent::Click {
            campaign,
            offer,
            segment,
            at_ms,
        } => learning.event(learning::Event::Click {
            campaign,
            offer,
            segment,
            at_ms,
        }),
        SharedEvent::Conversion {
            campaign,
            offer,
            route,
            segment,
            outcome,
            click_ms,
            at_ms,
        } => {
            match outcome {
                learning::Outcome::Approved(_) => caps.approved(&offer, at_ms),
                learning::Outcome::Reversed(_) => caps.revoked(&offer),
                learning::Outcome::Adjusted(_) => {}
            }
            if route == Route::Fallback {
                learning.event(learning::Event::Conversion {
                    campaign,
                    offer,
                    segment,
                    outcome,
                    click_ms,
                    at_ms,
                });
            }
        }
    });
}

fn watch_rules(
    settings: &Settings,
    rules: &Arc<ArcSwap<crate::rules::RuleSet>>,
    metrics: &Arc<Metrics>,
) -> rules::WatchHandle {
    let metrics = metrics.clone();
    rules::watch(
        settings.config.rules_dir.clone(),
        rules.clone(),
        move |event| match event {
            rules::ReloadEvent::Applied { version } => {
                metrics
                    .rules_reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(%version, "rules reloaded");
            }
            rules::ReloadEvent::Refused { errors } => {
                metrics
                    .rules_reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for error in errors {
                    tracing::warn!(%error, "rules change refused; the previous rules stay in force");
                }
            }
        },
    )
}

/// Approvals that can still count towards today's cap in some time zone.
pub const CAP_HISTORY_MS: i64 = 50 * 3_600_000;

/// Daily caps count approvals of the current day in any time zone; the store has them durably.
async fn rebuild_caps(caps: &CapTracker, store: &dyn Store, now_ms: i64) -> anyhow::Result<()> {
    let since = now_ms - CAP_HISTORY_MS;
    let approvals = store
        .approved_since(since)
        .await
        .context("cannot read approved conversions for the daily caps")?;
    // Approvals from `now_ms` on reach the caps live (another instance's through
    // `follow_instances`), so none is counted twice.
    for (offer, at_ms) in approvals {
        if at_ms < now_ms {
            caps.approved(&offer, at_ms);
        }
    }
    Ok(())
}

/// The optimiser's history up to `now_ms`, read page by page on the learner's thread. Clicks and
/// approvals from `now_ms` on reach it live, so none is counted twice.
fn history(store: &Arc<dyn Store>, now_ms: i64) -> learning::History {
    let store = store.clone();
    let runtime = tokio::runtime::Handle::current();
    let since = now_ms - learning::REPLAY_WINDOW_MS;
    Box::new(move |after| {
        runtime.block_on(store.evidence_page(since, now_ms, after, learning::REPLAY_PAGE))
    })
}

async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Once a minute, forgets the rate-limit state of callers that have been quiet long enough for
/// their budget to be full again.
fn forget_idle_callers(limits: Arc<http::limit::RateLimits>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            limits.forget_idle();
        }
    });
}
