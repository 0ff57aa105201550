//! The on-disk log is untrusted. A deterministic mutation loop on stable
//! (the coverage-guided runs use cargo-fuzz, see fuzz/README.md): images
//! holding valid logs, damaged at random in their log blocks and backups,
//! must give a verdict without a panic, validation must never write, and a
//! log that still validates must replay.

use bow_core::format::{LogEntry, LogHeader};
use bow_core::restore;
use bow_core::testimg::{Image, MemDisk, Rng};

/// Damages `d` in a way aimed at the log: a random field of a header or an
/// entry in block 0 or a saved log block set to an interesting value, or
/// random bytes anywhere.
fn mutate(d: &mut [u8], bs: usize, saved: &[u64], rng: &mut Rng) {
    let interesting = [
        0u64,
        1,
        7,
        8,
        0xffff_ffff,
        u64::MAX,
        u64::MAX - 7,
        d.len() as u64 / 512,
        20,
        28,
        4096,
    ];
    let v = interesting[rng.below(interesting.len() as u64) as usize]
        ^ (rng.below(4).wrapping_mul(rng.next_u64()) % 3);
    let block = if saved.is_empty() || rng.below(2) == 0 {
        0
    } else {
        saved[rng.below(saved.len() as u64) as usize] as usize
    };
    let base = block * bs;
    match rng.below(4) {
        0 => {
            // A header field.
            let (off, len) =
                [(0, 4), (4, 2), (6, 2), (8, 4), (12, 4), (16, 4), (20, 8)][rng.below(7) as usize];
            d[base + off..base + off + len].copy_from_slice(&v.to_le_bytes()[..len]);
        }
        1 => {
            // An entry field.
            let count = LogHeader::decode_raw(&d[base..])
                .map(|h| h.count)
                .unwrap_or(1)
                .clamp(1, 20);
            let i = rng.below(u64::from(count)) as usize;
            let at = base + 28 + i * 24;
            let (off, len) = [(0, 8), (8, 8), (16, 4), (20, 4)][rng.below(4) as usize];
            if at + off + len <= base + bs {
                d[at + off..at + off + len].copy_from_slice(&v.to_le_bytes()[..len]);
            }
        }
        _ => {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(d.len() as u64) as usize;
                d[at] ^= 1 << rng.below(8);
            }
        }
    }
}

#[test]
fn damaged_logs_never_panic_never_write() {
    let mut rng = Rng::new(2026);
    let (mut valid, mut invalid) = (0u32, 0u32);
    for (bs, blocks, free, writes) in [
        (512u32, 48u64, 24u64, 30usize),
        (1024, 40, 20, 12),
        (4096, 12, 6, 3),
    ] {
        for seed in 0..4u64 {
            let mut img = Image::new(bs, blocks, free, seed);
            img.scribble(writes, seed + 1);
            for _ in 0..1000 {
                let mut data = img.data.clone();
                for _ in 0..1 + rng.below(2) {
                    mutate(&mut data, bs as usize, &img.saved_log_blocks, &mut rng);
                }
                if rng.below(8) == 0 {
                    let keep = rng.below(data.len() as u64) as usize;
                    data.truncate(keep);
                }
                let mut d = MemDisk {
                    data: data.clone(),
                    writable: false,
                };
                match restore::validate(&mut d) {
                    Ok(Some(log)) => {
                        valid += 1;
                        d.writable = true;
                        restore::restore(&mut d, &log, &mut ()).expect("a validated log replays");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        invalid += 1;
                        assert!(!e.to_string().is_empty());
                        assert!(d.data == data, "refused log, but the device changed");
                        let mut r = MemDisk {
                            data,
                            writable: true,
                        };
                        let _ = restore::roll_forward(&mut r);
                    }
                }
            }
        }
    }
    assert!(
        invalid > 5000 && valid > 100,
        "{valid} valid, {invalid} invalid: the mutations miss"
    );
}

#[test]
fn entry_fields_at_their_limits() {
    // Sizes and positions at the edges of the device and of u64/u32.
    let img = Image::new(4096, 16, 8, 1);
    let sectors = img.data.len() as u64 / 512;
    for (source, dest, size) in [
        (sectors - 8, sectors - 8, 4096u32),
        (sectors, 8, 4096),
        (8, sectors - 8, 8192),
        (u64::MAX - 7, 8, 4096),
        (8, !7, 4096),
        (8, 16, !4095),
    ] {
        let mut data = img.data.clone();
        let e = LogEntry {
            source,
            dest,
            size,
            checksum: 0,
        };
        e.encode_at(&mut data[..4096], 0).unwrap();
        let mut d = MemDisk {
            data: data.clone(),
            writable: false,
        };
        let _ = restore::validate(&mut d);
        assert!(d.data == data);
    }
}
