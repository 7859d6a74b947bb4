//! Secure sum benchmark, on real node processes on loopback: for n sites
//! and vectors of m entries, the time and bytes of a secure sum of the
//! sites' updates, against a plain gather of the same update files in the
//! same run (the master then has every site's vector).
//!
//! Bytes: for the secure sum, what the protocol moves: every masked
//! vector (8 bytes an entry), the keys, roster, shares, signatures and
//! unmasking shares (counted from their sizes); for the gather, the update
//! files as they travel.
//!
//! Target (issue 12): at 10 sites × 10⁶ entries, at most 0.5 s added per
//! round and at most 1.2× the bytes of the plain gather. With differential
//! privacy (issue 27: each site clips its vector and draws a discrete
//! Gaussian per entry), at most +10% over the noise-free secure sum of the
//! same updates, in the same run (the last two columns). The gather moves
//! the update files as JSON text, so the last column also compares with
//! the same vectors as raw 64-bit floats.
//! Run: `cargo bench --bench secure_sum` (or `-- 3,10,25 100000,1000000`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use serde_json::{json, Value};

fn list(arg: Option<String>, default: &[usize]) -> Vec<usize> {
    arg.map(|a| a.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let sizes = list(args.next(), &[3, 10]);
    let lengths = list(args.next(), &[100_000, 1_000_000]);
    println!("secure sum against a plain gather of the same updates, same run");
    println!(
        "{:>5}  {:>9}  {:>9}  {:>9}  {:>8}  {:>10}  {:>10}  {:>8}  {:>9}  {:>8}  {:>10}",
        "SITES",
        "ENTRIES",
        "GATHER s",
        "SECURE s",
        "ADDED s",
        "GATHER MB",
        "SECURE MB",
        "×GATHER",
        "×BINARY",
        "DP s",
        "DP ×SECURE"
    );
    for &n in &sizes {
        let names: Vec<String> = (0..n).map(|i| format!("site{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let nodes = network(&refs, KEY).await;
        let master = &nodes[0];
        let out = master.cli(&["images", "load", probe_tar()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for node in &nodes[1..] {
            node.owner(&[
                "policy",
                "allow-image",
                "iris-probe:latest",
                "--whole-image",
            ]);
        }
        // Every site recognises the others (the master's own node never
        // counts), takes part in noise-free sums too, and has the budget
        // for one noisy sum per length.
        let sites: Vec<&str> = refs[1..].to_vec();
        for (node, name) in nodes[1..].iter().zip(&sites) {
            let mut args = vec!["policy", "recognise"];
            args.extend(sites.iter().filter(|other| *other != name));
            node.owner(&args);
            node.owner(&["policy", "set", "noise_free_sums", "allow"]);
            node.owner(&["policy", "set", "privacy_epsilon", "100"]);
            if sites.len() < 3 {
                node.owner(&["policy", "set", "min_aggregate", "2"]);
            }
        }
        for &m in &lengths {
            let body = json!({"image": "iris-probe:latest", "on": "all", "memory_mb": 1024,
                              "argv": ["/iris-worker", "update", m.to_string(), "1"]});
            let id = submit(master, body).await;
            let job = wait_job(master, &id).await;
            assert_eq!(job["state"], "succeeded", "{job}");

            let started = Instant::now();
            let (code, gathered) = master
                .post(&format!("/v1/jobs/{id}/gather"), json!({}))
                .await;
            let gather_s = started.elapsed().as_secs_f64();
            assert_eq!(code, 200, "{gathered}");
            let gather_bytes: u64 = nodes[1..]
                .iter()
                .map(|node| {
                    let path = node.dir.join(format!("workspace/outputs/{id}/update.json"));
                    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
                })
                .sum();

            let started = Instant::now();
            let (code, sum) = master
                .post(
                    &format!("/v1/jobs/{id}/secure-sum"),
                    json!({"file": "update.json", "length": m}),
                )
                .await;
            let secure_s = started.elapsed().as_secs_f64();
            assert_eq!(code, 200, "{sum}");
            assert_eq!(sum["nodes"].as_array().map(Vec::len), Some(n), "{sum}");
            let secure_bytes = protocol_bytes(n, m + 1, &sum);
            // The same vectors as raw 64-bit floats, the least a plain
            // gather could move.
            let binary = ((n - 1) * (m + 1) * 8) as f64;

            // The same sum with differential privacy: clip and noise.
            let started = Instant::now();
            let (code, noisy) = master
                .post(
                    &format!("/v1/jobs/{id}/secure-sum"),
                    json!({"file": "update.json", "length": m, "clip": 1000.0, "epsilon": 1.0}),
                )
                .await;
            let noisy_s = started.elapsed().as_secs_f64();
            assert_eq!(code, 200, "{noisy}");
            assert!(noisy["privacy"]["noise_sd"].as_f64() > Some(0.0), "{noisy}");
            println!(
                "{:>5}  {:>9}  {:>9.3}  {:>9.3}  {:>8.3}  {:>10.1}  {:>10.1}  {:>8.2}  {:>9.2}  {:>8.3}  {:>10.2}",
                n,
                m,
                gather_s,
                secure_s,
                secure_s - gather_s,
                gather_bytes as f64 / 1e6,
                secure_bytes as f64 / 1e6,
                secure_bytes as f64 / gather_bytes.max(1) as f64,
                secure_bytes as f64 / binary,
                noisy_s,
                noisy_s / secure_s
            );
        }
    }
}

/// What a session of `n` sites over vectors of `length` words moves
/// between the other sites and the master (the master's own part stays in
/// its process): masked vectors, and per site its key, the roster, n−1
/// share bundles, a signature and one share per site to unmask.
fn protocol_bytes(n: usize, length: usize, _sum: &Value) -> u64 {
    let others = (n - 1) as u64;
    let masked = others * length as u64 * 8;
    let key = 32 + 32 + 64 + 40;
    let roster = n as u64 * key;
    let shares = others * (n as u64 - 1) * 2 * 33;
    let unmask = others * (n as u64 * 33 + n as u64 * 104);
    masked + others * (key + roster + 64) + shares + unmask
}
