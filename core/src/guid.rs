//! Session GUIDs from a seeded generator (DESIGN.md §2: no unseeded randomness).
//!
//! `HttpService:GenerateGUID(false)` gives 36 characters without braces: 32 upper-case hex digits
//! in 8-4-4-4-12 groups; the
//! session GUID names the owner's MessagingService topic `PS_<guid>` (spec §5.3, §10.4).

use serde::{Deserialize, Serialize};

/// The MessagingService topic of the session with `guid`: `PS_<guid>` (spec §5.3, §10.4).
pub fn session_topic(guid: &str) -> String {
    ["PS_", guid].concat()
}

/// SplitMix64: small, fast, and the same sequence on every platform.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuidGenerator {
    state: u64,
}

impl GuidGenerator {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        GuidGenerator { state: seed }
    }

    /// A server's session-GUID generator: its sequence fixed by `seed` and the server's
    /// `game.PlaceId` and `game.JobId` together, so servers given one seed (a host copying an
    /// example) still draw GUIDs of their own (spec §5.3 (a): a new GUID every attempt; a GUID
    /// two servers shared would carry one's end requests to the other's session, §10.4), and
    /// a server draws the same ones on every run.
    pub fn for_server(seed: u64, place_id: i64, job_id: &str) -> Self {
        // FNV-1a over the identity; SplitMix scrambles what it gives.
        let mut hash = 0xCBF2_9CE4_8422_2325_u64;
        for byte in place_id.to_le_bytes().iter().chain(job_id.as_bytes()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01B3);
        }
        GuidGenerator::new(seed ^ hash)
    }

    /// The next raw 64-bit number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)` from the sequence.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next GUID, version-4 layout, upper case, e.g. `6C1E5B2A-9D3F-4E8B-A1C2-0F9E8D7C6B5A`.
    pub fn next_guid(&mut self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        // 8-4-4-4-12 upper-case hex digits: `hi` gives the first 16, `lo` the last 16.
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut text = [0u8; 36];
        let mut at = 0;
        for (word, groups) in [(hi, &[8, 4, 4][..]), (lo, &[4, 12][..])] {
            let mut shift = 64;
            for &digits in groups {
                if at > 0 {
                    text[at] = b'-';
                    at += 1;
                }
                for _ in 0..digits {
                    shift -= 4;
                    text[at] = HEX[((word >> shift) & 0xF) as usize];
                    at += 1;
                }
            }
        }
        String::from_utf8(text.to_vec()).expect("hex digits and dashes are ASCII")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_seeded_and_well_formed() {
        let mut a = GuidGenerator::new(7);
        let mut b = GuidGenerator::new(7);
        let g = a.next_guid();
        assert_eq!(g, b.next_guid());
        assert_ne!(g, a.next_guid());
        assert_eq!(g.len(), 36);
        assert_eq!(g, g.to_uppercase());
        assert_eq!(&g[14..15], "4");
        assert_eq!(g.matches('-').count(), 4);
    }

    /// The digits are the two numbers' hex digits in order, as `format!` would print them.
    #[test]
    fn guid_text_is_the_hex_of_the_two_numbers() {
        for seed in [0, 1, 7, u64::MAX] {
            let mut raw = GuidGenerator::new(seed);
            let hi = (raw.next_u64() & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
            let lo = (raw.next_u64() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
            let expected = format!(
                "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
                hi >> 32,
                (hi >> 16) & 0xFFFF,
                hi & 0xFFFF,
                lo >> 48,
                lo & 0xFFFF_FFFF_FFFF
            );
            assert_eq!(GuidGenerator::new(seed).next_guid(), expected);
        }
    }
}
