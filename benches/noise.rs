//! The cost of differential privacy's noise on one site, against the cost
//! of the masks the same site computes for a secure sum, in the same run:
//! for a vector of m entries, m draws of the discrete Gaussian (at the σ
//! of a clip of 1000 at ε = 1 in 32 fraction bits, about 2^45 units) on
//! one thread and on all, against n ChaCha20 mask words per entry (a
//! self mask and n−1 pairwise masks at n sites), on one thread.
//! Run: `cargo bench --bench noise` (or `-- 1000000 10`).

use std::time::Instant;

use chacha20::{
    cipher::{KeyIvInit, StreamCipher},
    ChaCha20,
};
use iris::privacy::{add_noise, Privacy};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let entries: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let sites: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let privacy = Privacy {
        clip: 1000.0,
        epsilon: 1.0,
        delta: 1e-6,
    };
    let noise = privacy.noise(2f64.powi(32), entries).expect("noise fits");

    // Baseline: the masks, as a site applies them (ChaCha20 keystream read
    // as u64 words and added), one per site.
    let mut vector = vec![0u64; entries];
    let started = Instant::now();
    for site in 0..sites {
        let mut cipher = ChaCha20::new(&[site as u8; 32].into(), &[0u8; 12].into());
        let mut bytes = vec![0u8; 4096 * 8];
        for words in vector.chunks_mut(4096) {
            let bytes = &mut bytes[..words.len() * 8];
            bytes.fill(0);
            cipher.apply_keystream(bytes);
            for (word, mask) in words.iter_mut().zip(bytes.chunks_exact(8)) {
                *word = word.wrapping_add(u64::from_le_bytes(mask.try_into().unwrap()));
            }
        }
    }
    let masks_s = started.elapsed().as_secs_f64();

    // The draws on one thread: the cost of one draw.
    let single = {
        let mut words = vec![0u64; entries];
        let started = Instant::now();
        add_noise_on_one_thread(&mut words, &noise);
        started.elapsed().as_secs_f64()
    };
    // As a site draws them: add_noise spreads over the machine's cores.
    let all = {
        let mut words = vec![0u64; entries];
        let started = Instant::now();
        add_noise(&mut words, &noise).unwrap();
        started.elapsed().as_secs_f64()
    };
    println!("noise against masks, one site, {entries} entries, {sites} sites' masks, same run");
    println!(
        "{:>14}  {:>10}  {:>12}  {:>10}",
        "WORK", "SECONDS", "NS / ENTRY", "× MASKS"
    );
    for (what, seconds) in [
        ("masks, 1 core", masks_s),
        ("noise, 1 core", single),
        ("noise, all", all),
    ] {
        println!(
            "{:>14}  {:>10.3}  {:>12.1}  {:>10.2}",
            what,
            seconds,
            seconds * 1e9 / entries as f64,
            seconds / masks_s
        );
    }
    println!("σ = 2^{:.1} units", (noise.variance() as f64).log2() / 2.0);
}

fn add_noise_on_one_thread(words: &mut [u64], noise: &iris::privacy::DiscreteGaussian) {
    use rand::{rngs::StdRng, SeedableRng};
    let mut rng = StdRng::try_from_rng(&mut rand::rngs::SysRng).unwrap();
    noise.add_to(words, &mut rng);
}
