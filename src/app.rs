//! `Application::build(settings)`: load rules and data, open the store, bind the listener (so
//! the real port is known, port 0 included), and return a server that tests and `serve` run.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use arc_swap::ArcSwap;

use crate::bandit::WeightedRandom;
use crate::classify::Classifier;
use crate::clock::SystemClock;
use crate::config::{Settings, StoreKind};
use crate::http::{self, error::json_error, AppState};
use crate::metrics::Metrics;
use crate::rules;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    rules_watch: rules::WatchHandle,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let config = &settings.config;
        let rule_set = rules::load(&config.rules_dir).map_err(|errors| {
            anyhow::anyhow!(errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"))
        })?;
        let classifier = Classifier::open(&config.data_dir)?;
        let store = open_store(&settings)?;
        let metrics = Arc::new(Metrics::default());
        let rules = Arc::new(ArcSwap::from_pointee(rule_set));
        let rules_watch = watch_rules(&settings, &rules, &metrics);

        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            settings,
            rules,
            classifier: Arc::new(classifier),
            store,
            policy: Arc::new(WeightedRandom),
            metrics,
            clock: Arc::new(SystemClock),
        });
        let server_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(server_state.clone())
                .configure(http::routes)
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .shutdown_timeout(15)
        .run();
        Ok(Application {
            port,
            server,
            state,
            rules_watch,
        })
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
        self.state.store.flush().await?;
        tracing::info!("stopped; store flushed");
        Ok(())
    }
}

fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let config = &settings.config;
    match config.store.kind {
        StoreKind::Sqlite => {
            // Twice the window, so a postback just past it is told `click_expired`, not
            // `unknown_click`.
            let retention = std::time::Duration::from_secs(
                2 * u64::from(config.attribution_window_days) * 86_400,
            );
            let store = SqliteStore::open(&config.store.path, config.store.durability, retention)?;
            Ok(Arc::new(store))
        }
        StoreKind::Redis => anyhow::bail!(
            "{}: store.kind: \"redis\" is not available in this build yet; use \"sqlite\"",
            settings.origin
        ),
    }
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

async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
