//! Fast in-process hashing of series identities, for the per-sample lookups of signal
//! derivation and detection. Not for anything persisted: stored identities use
//! [`SeriesKey::fingerprint`], which must not change between releases.

use crate::SeriesKey;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A 64-bit identity for a series' name and labels, for the per-sample lookup.
///
/// Not [`SeriesKey::fingerprint`]: FNV-1a consumes one byte per dependent multiply, which made
/// it most of the cost of a sample. This consumes eight bytes per multiply (the folded 64×64→128
/// multiply of wyhash and foldhash) and length-terminates every field, so `("ab", "c")` and
/// `("a", "bc")` differ. It is used only inside this process; persisted identities keep using
/// the core fingerprint.
pub fn series_hash(key: &SeriesKey) -> u64 {
    let mut h = WordHash::new();
    h.field(key.metric.as_bytes());
    for (k, v) in &key.labels {
        h.field(k.as_bytes());
        h.field(v.as_bytes());
    }
    h.finish()
}

/// Word-at-a-time hash state behind [`series_hash`].
#[derive(Clone, Copy)]
pub struct WordHash(u64);

impl Default for WordHash {
    fn default() -> Self {
        Self::new()
    }
}

impl WordHash {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;

    pub fn new() -> Self {
        Self(Self::K0)
    }

    fn mix(&mut self, word: u64, key: u64) {
        let p = u128::from(self.0 ^ word) * u128::from(key);
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }

    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w), Self::K1);
        }
        // The length goes into the multiplier of the last word: fields end unambiguously at the
        // cost of one multiply per field.
        self.mix(
            read_tail(chunks.remainder()),
            Self::K1 ^ ((bytes.len() as u64) << 1),
        );
        self
    }

    pub fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        z ^ (z >> 33)
    }
}

/// The last 0–7 bytes of a field as one word, read without a variable-length copy (the length is
/// mixed in separately, so overlapping reads stay unambiguous).
fn read_tail(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        let mut lo = [0u8; 4];
        let mut hi = [0u8; 4];
        lo.copy_from_slice(&b[..4]);
        hi.copy_from_slice(&b[n - 4..]);
        u64::from(u32::from_le_bytes(lo)) | (u64::from(u32::from_le_bytes(hi)) << 32)
    } else if n > 0 {
        (u64::from(b[0]) << 16) | (u64::from(b[n / 2]) << 8) | u64::from(b[n - 1])
    } else {
        0
    }
}

/// Hasher for maps keyed by [`series_hash`] values, which are already well mixed: they are used
/// as they are instead of running SipHash over them again.
#[derive(Default, Clone, Copy)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = WordHash(self.0 ^ WordHash::K0);
        h.field(bytes);
        self.0 = h.finish();
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type FingerprintMap<V> = HashMap<u64, V, BuildHasherDefault<FingerprintHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_hash_separates_fields_and_labels() {
        let keys = [
            SeriesKey::new("up", &[]),
            SeriesKey::new("u", &[("p", "")]),
            SeriesKey::new("up", &[("a", "bc")]),
            SeriesKey::new("up", &[("ab", "c")]),
            SeriesKey::new("up", &[("a", "b"), ("c", "")]),
            SeriesKey::new(
                "http_requests_total",
                &[("service", "checkout"), ("code", "500")],
            ),
            SeriesKey::new(
                "http_requests_total",
                &[("service", "checkout"), ("code", "503")],
            ),
            SeriesKey::new(
                "http_requests_total",
                &[("service", "checkout\0"), ("code", "500")],
            ),
        ];
        let hashes: std::collections::BTreeSet<u64> = keys.iter().map(series_hash).collect();
        assert_eq!(hashes.len(), keys.len());
        let again = SeriesKey::new(
            "http_requests_total",
            &[("code", "500"), ("service", "checkout")],
        );
        assert_eq!(series_hash(&again), series_hash(&keys[5]));
    }
}
