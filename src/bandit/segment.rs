//! Visitor segments the bandit learns per, and the hierarchy that lets sparse segments borrow
//! strength: (country, device, os, carrier) → (country, device, os) → (country, device) →
//! (country) → everyone.
//!
//! Keys are 64-bit FNV-1a hashes so the click path looks a segment up without allocating; a
//! collision merely pools two segments' evidence.

use crate::visitor::{Device, Os, Visitor};

/// Number of pooling levels, from everyone (0) to the finest segment (`LEVELS - 1`).
pub const LEVELS: usize = 5;

/// The visitor fields the bandit segments by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    pub country: Option<String>,
    pub device: Device,
    pub os: Os,
    pub carrier: Option<String>,
}

impl Segment {
    pub fn of(visitor: &Visitor) -> Segment {
        Segment {
            country: visitor.country.clone(),
            device: visitor.device,
            os: visitor.os,
            carrier: visitor.carrier.clone(),
        }
    }

    /// Keys of this segment at every level, coarsest first; `keys()[0]` is the same for all.
    pub fn keys(&self) -> [u64; LEVELS] {
        keys_of(
            self.country.as_deref(),
            self.device,
            self.os,
            self.carrier.as_deref(),
        )
    }
}

/// Number of marginal keys: device, OS and carrier each on their own, across countries.
pub const MARGINALS: usize = 3;

impl Segment {
    /// Keys of the device, the OS and the carrier alone. An offer that converts better on iOS
    /// tends to do so in every country; these keys name the bandit's per-offer device, OS and
    /// carrier factors, learnt from all countries at once.
    pub fn marginal_keys(&self) -> [u64; MARGINALS] {
        let one = |tag: u8, value: Option<&str>| {
            let mut hash = Fnv::new();
            hash.byte(tag);
            hash.field(value);
            hash.0
        };
        [
            one(b'd', Some(self.device.as_str())),
            one(b'o', Some(self.os.as_str())),
            one(b'c', self.carrier.as_deref()),
        ]
    }
}

/// `Segment::keys` for a visitor, without cloning its strings (the click path).
pub fn visitor_keys(visitor: &Visitor) -> [u64; LEVELS] {
    keys_of(
        visitor.country.as_deref(),
        visitor.device,
        visitor.os,
        visitor.carrier.as_deref(),
    )
}

fn keys_of(country: Option<&str>, device: Device, os: Os, carrier: Option<&str>) -> [u64; LEVELS] {
    let mut keys = [0u64; LEVELS];
    let mut hash = Fnv::new();
    keys[0] = hash.0;
    // Separators keep ("US", None) apart from a country spelt "US\u{1}..."; `None` differs from
    // every string, so an unknown carrier is its own segment.
    hash.field(country);
    keys[1] = hash.0;
    hash.field(Some(device.as_str()));
    keys[2] = hash.0;
    hash.field(Some(os.as_str()));
    keys[3] = hash.0;
    hash.field(carrier);
    keys[4] = hash.0;
    keys
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    fn field(&mut self, value: Option<&str>) {
        match value {
            None => self.byte(0xfe),
            Some(text) => {
                self.byte(0xff);
                for b in text.bytes() {
                    self.byte(b.to_ascii_lowercase());
                }
            }
        }
        self.byte(0x01);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(country: &str, carrier: Option<&str>) -> Segment {
        Segment {
            country: Some(country.into()),
            device: Device::Phone,
            os: Os::Android,
            carrier: carrier.map(str::to_string),
        }
    }

    #[test]
    fn segments_share_their_coarser_keys() {
        let a = seg("US", Some("Verizon")).keys();
        let b = seg("US", None).keys();
        let c = seg("DE", None).keys();
        assert_eq!(a[..4], b[..4]);
        assert_ne!(a[4], b[4]);
        assert_eq!(a[0], c[0]);
        assert_ne!(a[1], c[1]);
    }
}
