//! Visitor classification (SPEC §6), pure after loading: IP → GEO and network, User-Agent and
//! Client Hints → OS, browser, device, bot; `Accept-Language` → language.

pub mod agent;
pub mod bot;
pub mod geo;
pub mod language;
pub mod network;
#[cfg(test)]
mod test_data;

use std::net::IpAddr;
use std::path::Path;

use crate::visitor::{Connection, RequestHints, Visitor};

/// All reference data loaded into memory; `classify` does no I/O.
pub struct Classifier {
    geo: geo::GeoDb,
    network: network::NetworkDb,
    agent: agent::AgentClassifier,
}

/// A reference data file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataError(pub String);

impl Classifier {
    /// Loads every database found in `data_dir` (see `data/README.md` for what is recognised).
    pub fn open(data_dir: &Path) -> Result<Classifier, DataError> {
        let geo = geo::GeoDb::open(data_dir).map_err(|e| DataError(e.to_string()))?;
        let network = network::NetworkDb::open(data_dir).map_err(|e| DataError(e.to_string()))?;
        let agent = agent::AgentClassifier::load(data_dir).map_err(|e| DataError(e.to_string()))?;
        Ok(Classifier {
            geo,
            network,
            agent,
        })
    }

    /// Every carrier name the reference data knows (for naming bandit segments).
    pub fn carrier_names(&self) -> Vec<String> {
        self.network.carrier_names()
    }

    pub fn classify(&self, ip: IpAddr, hints: &RequestHints<'_>) -> Visitor {
        let ip = ip.to_canonical();
        let geo = self.geo.lookup(ip);
        let network = self.network.lookup(ip);
        let agent = self.agent.classify(hints);
        Visitor {
            ip,
            country: geo.country,
            region: geo.region,
            city: geo.city,
            asn: network.asn,
            isp: network.isp,
            carrier: network.carrier,
            // Datacenter ranges are where scanners, scrapers and proxies live, not buyers.
            bot: agent.bot || network.connection == Connection::Datacenter,
            connection: network.connection,
            os: agent.os,
            os_version: agent.os_version,
            browser: agent.browser,
            browser_version: agent.browser_version,
            device: agent.device,
            language: language::primary_language(hints.accept_language),
        }
    }
}
