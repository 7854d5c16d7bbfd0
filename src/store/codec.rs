//! Compact on-disk encodings shared by the SQLite tables: integer codes for the closed
//! vocabularies, client addresses as raw octets and query parameters as one form-encoded string.
//!
//! The codes are part of the file format: a code once written is never reused for another value,
//! so the tables below only ever grow. Each encoder is an exhaustive `match`, so a new variant
//! does not compile until it is given a code on purpose.

use std::net::{IpAddr, Ipv4Addr};

use rusqlite::types::{Value, ValueRef};

use crate::conversion::ConversionStatus;
use crate::decide::Route;
use crate::store::DeliveryState;
use crate::visitor::{Connection, Device, Os, QueryParams};

pub(crate) fn route_code(route: Route) -> i64 {
    match route {
        Route::Primary => 1,
        Route::Fallback => 2,
        Route::Backlink => 3,
        Route::Bot => 4,
    }
}

pub(crate) fn route_from_code(code: i64) -> Option<Route> {
    Route::ALL.into_iter().find(|&r| route_code(r) == code)
}

pub(crate) fn connection_code(connection: Connection) -> i64 {
    match connection {
        Connection::Unknown => 0,
        Connection::Cellular => 1,
        Connection::Broadband => 2,
        Connection::Datacenter => 3,
    }
}

pub(crate) fn connection_from_code(code: i64) -> Option<Connection> {
    Connection::ALL
        .iter()
        .copied()
        .find(|&c| connection_code(c) == code)
}

pub(crate) fn os_code(os: Os) -> i64 {
    match os {
        Os::Other => 0,
        Os::Android => 1,
        Os::Ios => 2,
        Os::Windows => 3,
        Os::MacOs => 4,
        Os::Linux => 5,
        Os::ChromeOs => 6,
        Os::KaiOs => 7,
        Os::Tizen => 8,
        Os::WebOs => 9,
        Os::PlayStation => 10,
        Os::Xbox => 11,
    }
}

pub(crate) fn os_from_code(code: i64) -> Option<Os> {
    Os::ALL.iter().copied().find(|&o| os_code(o) == code)
}

pub(crate) fn device_code(device: Device) -> i64 {
    match device {
        Device::Other => 0,
        Device::Phone => 1,
        Device::Tablet => 2,
        Device::Desktop => 3,
        Device::Tv => 4,
        Device::Console => 5,
        Device::FeaturePhone => 6,
    }
}

pub(crate) fn device_from_code(code: i64) -> Option<Device> {
    Device::ALL
        .iter()
        .copied()
        .find(|&d| device_code(d) == code)
}

pub(crate) fn conversion_status_code(status: ConversionStatus) -> i64 {
    match status {
        ConversionStatus::Approved => 1,
        ConversionStatus::Pending => 2,
        ConversionStatus::Rejected => 3,
        ConversionStatus::Chargeback => 4,
    }
}

pub(crate) fn conversion_status_from_code(code: i64) -> Option<ConversionStatus> {
    ConversionStatus::ALL
        .into_iter()
        .find(|&s| conversion_status_code(s) == code)
}

pub(crate) fn delivery_state_code(state: DeliveryState) -> i64 {
    match state {
        DeliveryState::Pending => 0,
        DeliveryState::Delivered => 1,
        DeliveryState::Failed => 2,
    }
}

pub(crate) fn delivery_state_from_code(code: i64) -> Option<DeliveryState> {
    DeliveryState::ALL
        .into_iter()
        .find(|&s| delivery_state_code(s) == code)
}

/// An address is its 4 or 16 octets (a third of its text).
pub(crate) fn encode_ip(ip: IpAddr) -> Value {
    match ip {
        IpAddr::V4(v4) => Value::Blob(v4.octets().to_vec()),
        IpAddr::V6(v6) => Value::Blob(v6.octets().to_vec()),
    }
}

/// Octets, or the text that files of earlier versions kept for spellings they did not
/// recognise (an unreadable one, or none, reads as the unspecified address).
pub(crate) fn decode_ip(value: ValueRef<'_>) -> Option<IpAddr> {
    match value {
        ValueRef::Blob(octets) => {
            if let Ok(v4) = <[u8; 4]>::try_from(octets) {
                Some(IpAddr::from(v4))
            } else if let Ok(v6) = <[u8; 16]>::try_from(octets) {
                Some(IpAddr::from(v6))
            } else {
                None
            }
        }
        ValueRef::Text(text) => Some(
            std::str::from_utf8(text)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ),
        ValueRef::Null => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ValueRef::Integer(_) | ValueRef::Real(_) => None,
    }
}

/// `application/x-www-form-urlencoded`: short for the ASCII tokens sources send, exact for any
/// Unicode, and keeps order and repeated names. `None` when there is nothing to store.
pub(crate) fn encode_params(params: &QueryParams) -> Option<String> {
    if params.0.is_empty() {
        return None;
    }
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in &params.0 {
        form.append_pair(name, value);
    }
    Some(form.finish())
}

pub(crate) fn decode_params(encoded: Option<&str>) -> QueryParams {
    QueryParams(
        encoded
            .map(|text| {
                url::form_urlencoded::parse(text.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_vocabulary_value_has_its_own_code_and_reads_back() {
        let routes: HashSet<i64> = Route::ALL.into_iter().map(route_code).collect();
        assert_eq!(routes.len(), Route::ALL.len());
        for route in Route::ALL {
            assert_eq!(route_from_code(route_code(route)), Some(route));
        }
        let connections: HashSet<i64> = Connection::ALL
            .iter()
            .map(|&c| connection_code(c))
            .collect();
        assert_eq!(connections.len(), Connection::ALL.len());
        for &connection in Connection::ALL {
            assert_eq!(
                connection_from_code(connection_code(connection)),
                Some(connection)
            );
        }
        let oses: HashSet<i64> = Os::ALL.iter().map(|&o| os_code(o)).collect();
        assert_eq!(oses.len(), Os::ALL.len());
        for &os in Os::ALL {
            assert_eq!(os_from_code(os_code(os)), Some(os));
        }
        let devices: HashSet<i64> = Device::ALL.iter().map(|&d| device_code(d)).collect();
        assert_eq!(devices.len(), Device::ALL.len());
        for &device in Device::ALL {
            assert_eq!(device_from_code(device_code(device)), Some(device));
        }
        let statuses: HashSet<i64> = ConversionStatus::ALL
            .into_iter()
            .map(conversion_status_code)
            .collect();
        assert_eq!(statuses.len(), ConversionStatus::ALL.len());
        for status in ConversionStatus::ALL {
            assert_eq!(
                conversion_status_from_code(conversion_status_code(status)),
                Some(status)
            );
        }
        let states: HashSet<i64> = DeliveryState::ALL
            .into_iter()
            .map(delivery_state_code)
            .collect();
        assert_eq!(states.len(), DeliveryState::ALL.len());
        for state in DeliveryState::ALL {
            assert_eq!(
                delivery_state_from_code(delivery_state_code(state)),
                Some(state)
            );
        }
        assert_eq!(os_from_code(99), None);
    }

    #[test]
    fn addresses_read_back_exactly_as_they_were_given() {
        for ip in [
            "203.0.113.7",
            "203.0.113.0",
            "2001:db8::1",
            "2001:db8:85a3::",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let stored = encode_ip(ip);
            assert_eq!(decode_ip(ValueRef::from(&stored)), Some(ip), "{ip}");
        }
        assert!(matches!(encode_ip([203, 0, 113, 7].into()), Value::Blob(b) if b.len() == 4));
        assert!(
            matches!(encode_ip("2001:db8::1".parse().unwrap()), Value::Blob(b) if b.len() == 16)
        );
    }

    #[test]
    fn addresses_older_files_kept_as_text_read_as_addresses() {
        let text = |text: &str| decode_ip(ValueRef::Text(text.as_bytes()));
        assert_eq!(text("2001:DB8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(text("unknown"), Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(text(""), Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    }

    #[test]
    fn params_keep_order_repeats_empty_values_and_unicode() {
        let params = QueryParams(vec![
            ("zone".into(), "123 456".into()),
            ("zone".into(), "again".into()),
            ("empty".into(), String::new()),
            ("a&b=c".into(), "x+y%z".into()),
            ("ключ".into(), "значение 🎯".into()),
            (String::new(), String::new()),
        ]);
        let encoded = encode_params(&params);
        assert_eq!(decode_params(encoded.as_deref()), params);
        assert_eq!(encode_params(&QueryParams::default()), None);
        assert_eq!(decode_params(None), QueryParams::default());
    }
}
