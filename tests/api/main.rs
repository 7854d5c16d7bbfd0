//! The HTTP suite: every test starts the real server on port 0 with its own rules and store.

mod admin;
mod bad_input;
mod cli;
mod click;
mod helpers;
mod learning;
mod operations;
mod postback;
mod redis;
mod report;
mod rules_reload;
mod security;
mod shutdown;
