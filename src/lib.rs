//! smartlink: a self-hosted Smartlink / Backlink offer router.

pub mod admin_token;
pub mod app;
pub mod bandit;
pub mod caps;
pub mod classify;
pub mod cli;
pub mod click;
pub mod click_id;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod conversion;
pub mod decide;
pub mod deliver;
pub mod http;
pub mod learning;
pub mod metrics;
pub mod money;
pub mod postback;
pub mod report;
pub mod rules;
pub mod store;
pub mod template;
pub mod tokens;
pub mod visitor;
