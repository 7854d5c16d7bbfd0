//! Visitor classification (SPEC §6), pure after loading: IP → GEO and network, User-Agent and
//! Client Hints → OS, browser, device, bot; `Accept-Language` → language.

pub mod agent;
pub mod bot;
pub mod geo;
pub mod language;
pub mod network;
