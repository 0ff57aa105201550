//! The checksum of the on-disk log.
//!
//! CRC-32 with the reflected polynomial 0xEDB88320 and no inversion before or
//! after, as the kernel's `crc32_le()` computes it. Log entries seed it with the
//! block number of the source.

const POLY: u32 = 0xEDB8_8320;

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table();

/// Continues a CRC-32 (reflected, no pre- or post-inversion) from `seed` over `data`.
pub fn crc32(seed: u32, data: &[u8]) -> u32 {
    let mut crc = seed;
    for &b in data {
        let idx = usize::from((crc as u8) ^ b);
        // `idx` is below 256 by construction; `get` keeps this panic-free anyway.
        crc = (crc >> 8) ^ TABLE.get(idx).copied().unwrap_or(0);
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
