//! Visitor classification (SPEC §6), pure after loading: IP → GEO and network, User-Agent and
//! Client Hints → OS, browser, device, bot; `Accept-Language` → language.

pub mod agent;
pub mod geo;
pub mod network;
