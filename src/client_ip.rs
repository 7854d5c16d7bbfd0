//! The client address of a request (SPEC §7): the peer, or, when the peer is a trusted proxy, the
//! right-most untrusted address of `X-Forwarded-For` (else `X-Real-IP`).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Resolves the visitor's address. Headers from untrusted peers are ignored, so nobody can choose
/// their own GEO by sending a header.
pub fn resolve(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    real_ip: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    if let Some(list) = forwarded_for {
        let mut last_trusted = None;
        for entry in list.rsplit(',') {
            match parse_address(entry) {
                Some(ip) if is_trusted(&ip) => last_trusted = Some(ip),
                Some(ip) => return ip,
                // Anything left of a malformed entry was written by someone we cannot vouch for.
                None => break,
            }
        }
        if let Some(ip) = last_trusted {
            return ip;
        }
    }
    real_ip.and_then(parse_address).unwrap_or(peer)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`, with surrounding space.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if text.len() > 64 {
        return None;
    }
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
        .map(|ip: IpAddr| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn check(peer: &str, xff: Option<&str>, real: Option<&str>, trusted: &[&str], expected: &str) {
        let got = resolve(peer.parse().unwrap(), xff, real, &nets(trusted));
        assert_eq!(
            got,
            expected.parse::<IpAddr>().unwrap(),
            "peer {peer} xff {xff:?}"
        );
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        check(
            "203.0.113.9",
            Some("1.1.1.1"),
            Some("2.2.2.2"),
            &[],
            "203.0.113.9",
        );
        check(
            "203.0.113.9",
            Some("1.1.1.1"),
            None,
            &["10.0.0.0/8"],
            "203.0.113.9",
        );
    }

    #[test]
    fn the_right_most_untrusted_forwarded_address_is_the_client() {
        let trusted = ["10.0.0.0/8", "192.168.0.0/16"];
        check(
            "10.0.0.1",
            Some("6.6.6.6, 1.2.3.4, 192.168.1.1"),
            None,
            &trusted,
            "1.2.3.4",
        );
        check("10.0.0.1", Some("1.2.3.4"), None, &trusted, "1.2.3.4");
        check(
            "10.0.0.1",
            Some(" 1.2.3.4:5555 "),
            None,
            &trusted,
            "1.2.3.4",
        );
        check(
            "10.0.0.1",
            Some("[2001:db8::1]:443"),
            None,
            &trusted,
            "2001:db8::1",
        );
    }

    #[test]
    fn real_ip_is_used_when_there_is_no_forwarded_for() {
        check(
            "10.0.0.1",
            None,
            Some("1.2.3.4"),
            &["10.0.0.0/8"],
            "1.2.3.4",
        );
    }

    #[test]
    fn malformed_forwarded_entries_stop_the_walk() {
        check(
            "10.0.0.1",
            Some("1.2.3.4, garbage"),
            None,
            &["10.0.0.0/8"],
            "10.0.0.1",
        );
        check(
            "10.0.0.1",
            Some("garbage, 10.0.0.7"),
            None,
            &["10.0.0.0/8"],
            "10.0.0.7",
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_are_read_as_ipv4() {
        check(
            "::ffff:10.0.0.1",
            Some("1.2.3.4"),
            None,
            &["10.0.0.0/8"],
            "1.2.3.4",
        );
        check("::ffff:203.0.113.9", None, None, &[], "203.0.113.9");
    }
}

/// The address as stored when `anonymize_ip` is set: IPv4 to its /24, IPv6 to its /48.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

#[cfg(test)]
mod anonymize_tests {
    use super::*;

    #[test]
    fn anonymized_addresses_keep_only_the_network() {
        assert_eq!(
            anonymize("203.0.113.77".parse().unwrap()),
            "203.0.113.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            anonymize("2001:db8:aa:bb:cc::1".parse().unwrap()),
            "2001:db8:aa::".parse::<IpAddr>().unwrap()
        );
    }
}
