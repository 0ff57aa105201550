//! The checksum of the on-disk log.
//!
//! CRC-32 with the reflected polynomial 0xEDB88320 and no inversion before or
//! after, as the kernel's `crc32_le()` computes it. Log entries seed it with the
//! block number of the source.

const POLY: u32 = 0xEDB8_8320;

/// Slicing-by-8 tables: `TABLES[0]` is the classic byte table; `TABLES[k][i]`
/// is the CRC of byte `i` followed by `k` zero bytes.
const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

#[inline(always)]
fn t(k: usize, idx: u32) -> u32 {
    // `k` < 8 and `idx` < 256 at every call site; indexing through `get`
    // keeps this panic-free anyway.
    TABLES
        .get(k)
        .and_then(|row| row.get((idx & 0xff) as usize))
        .copied()
        .unwrap_or(0)
}

/// Continues a CRC-32 (reflected, no pre- or post-inversion) from `seed` over `data`.
///
/// Eight bytes per step (slicing-by-8), so a restore checks checksums at
/// memory speed rather than a byte at a time.
pub fn crc32(seed: u32, data: &[u8]) -> u32 {
    let mut crc = seed;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t(7, lo)
            ^ t(6, lo >> 8)
            ^ t(5, lo >> 16)
            ^ t(4, lo >> 24)
            ^ t(3, hi)
            ^ t(2, hi >> 8)
            ^ t(1, hi >> 16)
            ^ t(0, hi >> 24);
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t(0, crc ^ u32::from(b));
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference, straight from the definition.
    fn slow(seed: u32, data: &[u8]) -> u32 {
        let mut crc = seed;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn standard_check_value_with_inversions() {
        // The usual CRC-32 of "123456789" is 0xCBF43926 with ~ before and after.
        assert_eq!(!crc32(!0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn empty_data_returns_seed() {
        assert_eq!(crc32(0x1234_5678, &[]), 0x1234_5678);
    }

    #[test]
    fn zero_seed_zero_data_is_zero() {
        assert_eq!(crc32(0, &[0u8; 4096]), 0);
    }

    proptest::proptest! {
        #[test]
        fn table_matches_bitwise(seed: u32, data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            proptest::prop_assert_eq!(crc32(seed, &data), slow(seed, &data));
        }

        #[test]
        fn chaining(seed: u32, a in proptest::collection::vec(proptest::num::u8::ANY, 0..300), b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut ab = a.clone();
            ab.extend_from_slice(&b);
            proptest::prop_assert_eq!(crc32(crc32(seed, &a), &b), crc32(seed, &ab));
        }
    }
}
