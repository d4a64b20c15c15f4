//! Keys for the in-memory maps of the silver and gold builds: byte strings
//! are hashed once with xxh3-128 (a collision is as unlikely as a SHA-256
//! one here), and the maps hash those hashes with nothing more than a fold.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A 128-bit hash of a key's bytes.
pub fn key_hash(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
    fn write_u32(&mut self, v: u32) {
        // Small integers (zip prefixes): spread them over the table.
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type KeyHashState = BuildHasherDefault<KeyHasher>;

/// A key's `key_hash` as two words: in a map, 24 bytes a slot with its
/// number where a `u128` (aligned to 16) takes 32. The builds' maps hold a
/// slot per customer, person and order, and their size is what decides
/// whether a build fits its memory in one pass.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Hash128(u64, u64);

impl Hash128 {
    fn of(bytes: &[u8]) -> Hash128 {
        let h = key_hash(bytes);
        Hash128((h >> 64) as u64, h as u64)
    }
}

impl std::hash::Hash for Hash128 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 ^ self.1);
    }
}

/// Distinct byte strings numbered 0, 1, 2, ... in order of first sight,
/// stored back to back in one buffer.
pub struct Interner {
    bytes: Vec<u8>,
    /// Where each key begins in `bytes`, and where the next would: a key
    /// ends where the one after it begins.
    starts: Vec<u64>,
    index: HashMap<Hash128, u32, KeyHashState>,
}

impl Default for Interner {
    fn default() -> Interner {
        Interner::with_capacity(0, 0)
    }
}

impl Interner {
    /// Room for `keys` keys of about `bytes_each` bytes.
    pub fn with_capacity(keys: usize, bytes_each: usize) -> Interner {
        let mut starts = Vec::with_capacity(keys + 1);
        starts.push(0);
        Interner {
            bytes: Vec::with_capacity(keys * bytes_each),
            starts,
            index: HashMap::with_capacity_and_hasher(keys, KeyHashState::default()),
        }
    }

    /// The number of `key`, numbering it if it is new.
    pub fn intern(&mut self, key: &[u8]) -> u32 {
        let next = self.len() as u32;
        let number = *self.index.entry(Hash128::of(key)).or_insert(next);
        if number == next {
            self.bytes.extend_from_slice(key);
            self.starts.push(self.bytes.len() as u64);
        }
        number
    }

    pub fn find(&self, key: &[u8]) -> Option<u32> {
        self.index.get(&Hash128::of(key)).copied()
    }

    pub fn get(&self, number: u32) -> &[u8] {
        let n = number as usize;
        &self.bytes[self.starts[n] as usize..self.starts[n + 1] as usize]
    }

    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }
}

/// One of `count` passes over keys split by their hash: a build whose
/// working set would outgrow `maintenance_work_mem` handles a `count`th of
/// the keys at a time (silver's in-place apply by dedup key, gold's full
/// build by customer_unique_id), each pass reading its input again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    pub index: u64,
    pub count: u64,
}

impl Pass {
    /// Everything in one pass.
    pub const WHOLE: Pass = Pass { index: 0, count: 1 };

    /// The passes that hold `bytes` of working set within
    /// `maintenance_work_mem` each.
    pub fn count_for_bytes(bytes: u64) -> u64 {
        let budget = crate::pg::sort::sort_budget_bytes().max(1) as u64;
        bytes.div_ceil(budget).max(1)
    }

    /// Every pass of `count`, in order.
    pub fn all(count: u64) -> impl Iterator<Item = Pass> {
        (0..count.max(1)).map(move |index| Pass { index, count: count.max(1) })
    }

    /// Whether the key whose hash `hash` gives falls in this pass; with one
    /// pass the hash is not computed.
    pub fn holds_by(&self, hash: impl FnOnce() -> u128) -> bool {
        self.count == 1 || ((hash() >> 64) as u64) % self.count == self.index
    }

    /// Whether key `bytes` (by `key_hash`) falls in this pass.
    pub fn holds_key(&self, bytes: &[u8]) -> bool {
        self.holds_by(|| key_hash(bytes))
    }
}
