//! smartlink: a self-hosted Smartlink / Backlink offer router.

pub mod classify;
pub mod decide;
pub mod money;
pub mod rules;
pub mod store;
pub mod template;
pub mod visitor;
