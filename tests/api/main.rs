//! The HTTP suite: every test starts the real server on port 0 with its own rules and store.

mod click;
mod cli;
mod helpers;
mod operations;
mod rules_reload;
