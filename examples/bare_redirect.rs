//! The ceiling the click path is measured against: an actix-web server that answers every
//! `GET /c/{campaign}` with a constant `302`, doing nothing else. Built only for the load tests
//! (`bench/run-compare.sh`); it runs with the same worker count and keep-alive as `serve`.
//!
//! ```sh
//! cargo run --release --example bare_redirect -- 127.0.0.1:18081
//! ```

use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};

async fn redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "https://offer.example/landing?sub=1"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".to_string());
    HttpServer::new(|| App::new().route("/c/{campaign}", web::get().to(redirect)))
        .bind(&listen)?
        .run()
        .await
}
