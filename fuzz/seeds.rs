//! Writes seed images for the `restore` target into fuzz/corpus/restore:
//! small devices holding valid logs as the target writes them (chained,
//! with 512-byte and 4 KiB blocks), so the fuzzer starts from deep inside
//! the format. Run: cargo +nightly run --bin seeds (from fuzz/).
use bow_core::testimg::Image;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/restore");
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for (bs, blocks, free, writes) in [(512u32, 48u64, 24u64, 10usize), (512, 96, 48, 40), (1024, 32, 16, 8), (4096, 12, 6, 3)] {
        for seed in 0..3u64 {
            let mut img = Image::new(bs, blocks, free, seed);
            img.scribble(writes, seed + 7);
            std::fs::write(dir.join(format!("seed-{bs}-{blocks}-{seed}")), &img.data).unwrap();
            n += 1;
        }
    }
    println!("{n} seeds in {}", dir.display());
}
