//! `smartlink serve`.

use std::process::ExitCode;

use crate::app::Application;
use crate::config::Settings;

pub fn run(settings: Settings) -> ExitCode {
    init_logs(&settings.config.log);
    let listen = settings.listen;
    let outcome = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        // Printed, never logged: logs must not carry the token.
        if let Some((token, path)) = app.generated_admin_token() {
            println!(
                "Generated the admin token (shown only now, kept in {}): {token}",
                path.display()
            );
        }
        tracing::info!(address = %listen, port = app.port(), "listening");
        app.run_until_stopped().await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail([format!("{e:#}")]),
    }
}

/// One JSON object per line on stderr; `RUST_LOG` overrides the configured filter.
fn init_logs(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .try_init();
}
