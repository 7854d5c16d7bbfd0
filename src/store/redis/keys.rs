//! The key layout. Every key belongs to a shard, named by the hash tag `{sl:N}`, so a
//! shard's keys share one Redis Cluster slot and a Lua script may touch any of them at once.
//! A click belongs to the shard its id hashes to; so do its conversions, the report counters
//! and events they move, and the outbound deliveries they queue. One server uses one shard;
//! a cluster uses `CLUSTER_SHARDS`, spread over its slots.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{sl:N}:c:<click id>` | string | the click (JSON), expiring at click time + retention |
//! | `{sl:N}:v:<click id>` | hash | the click's conversion identities: `event \x1f txid` → state (JSON), same expiry |
//! | `{sl:N}:r:<UTC day>` | hash | report counters of clicks made that day: `metric \x1f quarter \x1f dimensions` → integer |
//! | `{sl:N}:ev` | stream | events every instance follows: residual clicks, approvals, reversals, adjustments |
//! | `{sl:N}:ef` | sorted set | residual clicks by time, for the optimiser's replay at start |
//! | `{sl:N}:ap` | sorted set | approved conversions by approval time, for caps and replay |
//! | `{sl:N}:d` | hash | outbound deliveries: id → JSON |
//! | `{sl:N}:dseq` | string | the shard's delivery counter |
//! | `{sl:N}:dq` | stream | deliveries to make; consumer group `deliver`, one consumer per instance |
//! | `{sl:N}:dl:<state>` | sorted set | delivery ids by creation time, per state, for listings |

/// Shards of a cluster. Delivery ids carry their shard in the low bits (`id % MAX_SHARDS`).
pub(super) const CLUSTER_SHARDS: u32 = 16;
pub(super) const MAX_SHARDS: i64 = 64;

/// Separates the parts of a composite field or member.
pub(super) const SEP: char = '\x1f';

/// The consumer group of every delivery stream.
pub(super) const GROUP: &str = "deliver";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Shard(pub u32);

impl Shard {
    /// The shard of a click id (FNV-1a, stable across versions and machines).
    pub(super) fn of(click_id: &str, shards: u32) -> Shard {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in click_id.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        Shard(hash % shards.max(1))
    }

    /// The shard a delivery id was made in.
    pub(super) fn of_delivery(id: i64) -> Shard {
        Shard(id.rem_euclid(MAX_SHARDS) as u32)
    }

    pub(super) fn delivery_id(self, seq: i64) -> i64 {
        seq * MAX_SHARDS + i64::from(self.0)
    }

    fn tag(self) -> String {
        format!("{{sl:{}}}", self.0)
    }

    pub(super) fn click(self, id: &str) -> String {
        format!("{}:c:{id}", self.tag())
    }

    pub(super) fn identities(self, click_id: &str) -> String {
        format!("{}:v:{click_id}", self.tag())
    }

    pub(super) fn report(self, day: i64) -> String {
        format!("{}:r:{day}", self.tag())
    }

    pub(super) fn events(self) -> String {
        format!("{}:ev", self.tag())
    }

    pub(super) fn residual(self) -> String {
        format!("{}:ef", self.tag())
    }

    pub(super) fn approvals(self) -> String {
        format!("{}:ap", self.tag())
    }

    pub(super) fn deliveries(self) -> String {
        format!("{}:d", self.tag())
    }

    pub(super) fn delivery_seq(self) -> String {
        format!("{}:dseq", self.tag())
    }

    pub(super) fn delivery_stream(self) -> String {
        format!("{}:dq", self.tag())
    }

    pub(super) fn delivery_list(self, state: crate::store::DeliveryState) -> String {
        format!("{}:dl:{}", self.tag(), state.as_str())
    }
}

/// Joins parts with `SEP`, dropping any `SEP` inside a part so the parts read back as written.
pub(super) fn join<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.extend(part.chars().filter(|&c| c != SEP));
    }
    out
}

pub(super) fn split(text: &str) -> Vec<&str> {
    text.split(SEP).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_id_always_lands_in_the_same_shard_and_shards_spread() {
        assert_eq!(Shard::of("abc", 16), Shard::of("abc", 16));
        assert_eq!(Shard::of("anything", 1), Shard(0));
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            seen.insert(Shard::of(&format!("click-{i}"), 16));
        }
        assert_eq!(seen.len(), 16);
    }

    #[test]
    fn a_delivery_id_names_its_shard() {
        let id = Shard(13).delivery_id(42);
        assert_eq!(Shard::of_delivery(id), Shard(13));
        assert_ne!(Shard(12).delivery_id(42), id);
    }

    #[test]
    fn keys_of_one_shard_share_their_hash_tag() {
        let shard = Shard(3);
        for key in [
            shard.click("x"),
            shard.identities("x"),
            shard.report(20000),
            shard.events(),
            shard.delivery_stream(),
        ] {
            assert!(key.starts_with("{sl:3}:"), "{key}");
        }
    }

    #[test]
    fn joined_parts_split_back_even_when_a_part_holds_the_separator() {
        let joined = join(["a", "b\x1fc", ""]);
        assert_eq!(split(&joined), vec!["a", "bc", ""]);
    }
}
