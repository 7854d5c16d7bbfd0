//! Click ids: 22 URL-safe characters carrying a 48-bit millisecond timestamp and 80 random bits.
//!
//! The timestamp prefix keeps ids roughly time-ordered, so the store's index grows at its end
//! instead of splitting random pages; the 80 random bits from a CSPRNG make ids unguessable.

use rand::Rng;

/// Base64 digits in ASCII order, so ids sort like their timestamps; all URL-safe.
const ALPHABET: &[u8; 64] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

pub const LEN: usize = 22;

/// A new click id for a click at `now_ms` (milliseconds since the epoch).
pub fn generate(now_ms: i64, rng: &mut impl Rng) -> String {
    let mut random = [0u8; 10];
    rng.fill_bytes(&mut random);
    let mut value: u128 = (now_ms.clamp(0, (1 << 48) - 1) as u128) << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - i));
    }
    // 22 digits of 6 bits hold 132 bits; the top 4 are always zero.
    let mut out = [0u8; LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 6 * (LEN - 1 - i);
        *slot = ALPHABET[((value >> shift) & 63) as usize];
    }
    String::from_utf8(out.to_vec()).expect("alphabet is ASCII")
}

/// True for strings that could be one of our click ids (used to refuse junk before a lookup).
pub fn looks_valid(text: &str) -> bool {
    text.len() == LEN && text.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_url_safe_and_22_characters() {
        let id = generate(1_700_000_000_000, &mut rand::rng());
        assert_eq!(id.len(), LEN);
        assert!(looks_valid(&id));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn ids_sort_by_their_time() {
        let mut rng = rand::rng();
        let earlier = generate(1_700_000_000_000, &mut rng);
        let later = generate(1_700_000_000_001, &mut rng);
        assert!(earlier < later);
    }

    #[test]
    fn ids_of_the_same_millisecond_differ() {
        let mut rng = rand::rng();
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| generate(5, &mut rng)).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
