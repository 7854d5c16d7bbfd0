//! X-Forwarded-For and X-Real-IP behind trusted proxies: the client is the peer, or an address
//! written in one of the headers, and only ever a header's address when the peer is trusted.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use smartlink::client_ip::resolve;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let peer: IpAddr = match data[0] % 4 {
        0 => Ipv4Addr::new(10, 0, 0, data[1]).into(),
        1 => Ipv4Addr::new(203, 0, 113, data[1]).into(),
        2 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(data[1])).into(),
        _ => Ipv4Addr::new(10, 0, 0, data[1]).to_ipv6_mapped().into(),
    };
    let trusted: Vec<IpNet> = ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let text = String::from_utf8_lossy(&data[2..]);
    let (xff, real) = match text.split_once('\n') {
        Some((x, r)) => (Some(x), Some(r)),
        None => (Some(&*text), None),
    };
    let got = resolve(peer, xff, real, &trusted);
    let canonical = peer.to_canonical();
    if !trusted.iter().any(|n| n.contains(&canonical)) {
        assert_eq!(got, canonical);
        return;
    }
    if got == canonical {
        return;
    }
    // Otherwise the address must be written in a header, in one of the accepted forms.
    let written = |list: &str| {
        list.split(',').any(|entry| {
            let entry = entry.trim();
            let plain = entry.parse::<IpAddr>().ok();
            let socket = entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip());
            let bracketed = entry
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<IpAddr>().ok());
            [plain, socket, bracketed]
                .into_iter()
                .flatten()
                .any(|ip| ip.to_canonical() == got)
        })
    };
    assert!(
        xff.is_some_and(written) || real.is_some_and(written),
        "{got} is neither the peer nor in the headers {xff:?} {real:?}"
    );
});
