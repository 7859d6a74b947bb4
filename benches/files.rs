//! File transfer benchmark, in one run on one machine: 1 GiB through
//! `iris files get` between two local nodes, through scp over loopback (when
//! /usr/sbin/sshd is installed: a private sshd on a free port is started for
//! the run), and through a plain TCP socket copy. Prints MiB/s for each, the
//! ratio to scp, and how much each node's resident memory grew.
//!
//! Also a push of a quarter of that size to 3 nodes at once (`files put
//! --to all`, the data plane of `images push`) against 3 scp's at once.
//!
//! Target (issue 13): at least 1.0x scp for 1 GiB; each node grows by at
//! most 64 MiB. Run: `cargo bench --bench files` (or `-- 256` for MiB).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;

fn kib_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn tcp_copy(source: &Path, dest: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let source = source.to_path_buf();
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut file = std::fs::File::open(source).unwrap();
        let mut socket = TcpStream::connect(addr).unwrap();
        std::io::copy(&mut file, &mut socket).unwrap();
    });
    let (mut socket, _) = listener.accept().unwrap();
    let mut out = std::fs::File::create(dest).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = socket.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).unwrap();
    }
    out.sync_all().unwrap();
    sender.join().unwrap();
    start.elapsed()
}

/// A throwaway sshd on a free loopback port, for scp to copy through;
/// killed when dropped.
struct Sshd {
    child: std::process::Child,
    port: u16,
    key: std::path::PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn start(work: &Path) -> Option<Self> {
        if !Path::new("/usr/sbin/sshd").exists() {
            return None;
        }
        let keygen = |name: &str| {
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(work.join(name))
                .status()
                .ok()
        };
        // sshd insists on its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        keygen("host")?;
        keygen("client")?;
        std::fs::copy(work.join("client.pub"), work.join("authorized_keys")).ok()?;
        let port = free_port();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
            .arg("-o")
            .arg(format!("HostKey={}", work.join("host").display()))
            .arg("-o")
            .arg(format!(
                "AuthorizedKeysFile={}",
                work.join("authorized_keys").display()
            ))
            .args([
                "-o",
                "ListenAddress=127.0.0.1",
                "-o",
                "StrictModes=no",
                "-o",
                "UsePAM=no",
            ])
            .args(["-o", "Subsystem=sftp internal-sftp"])
            .arg("-o")
            .arg(format!("PidFile={}", work.join("sshd.pid").display()))
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(500));
        Some(Self {
            child,
            port,
            key: work.join("client"),
        })
    }

    /// scp of `source` to each of `dests` at once; the time until all end.
    fn copy(&self, source: &Path, dests: &[std::path::PathBuf]) -> Option<Duration> {
        let start = Instant::now();
        let copies: Vec<_> = dests
            .iter()
            .map(|dest| {
                Command::new("scp")
                    .args([
                        "-q",
                        "-o",
                        "StrictHostKeyChecking=no",
                        "-o",
                        "UserKnownHostsFile=/dev/null",
                        "-o",
                        "BatchMode=yes",
                    ])
                    .arg("-i")
                    .arg(&self.key)
                    .args(["-P", &self.port.to_string()])
                    .arg(format!("root@127.0.0.1:{}", source.display()))
                    .arg(dest)
                    .spawn()
                    .ok()
            })
            .collect();
        let mut ok = true;
        for copy in copies {
            ok &= copy
                .and_then(|mut c| c.wait().ok())
                .is_some_and(|s| s.success());
        }
        let elapsed = start.elapsed();
        ok.then_some(elapsed)
    }
}

fn write_random(path: &Path, mib: usize) {
    let mut file = std::fs::File::create(path).unwrap();
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ mib as u64;
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
}

/// Alternating rounds of each comparison.
const ROUNDS: usize = 3;

fn median(mut samples: Vec<Duration>) -> Option<Duration> {
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let push_mib = (mib / 4).max(1);
    let mut nodes = network(&["alice", "bob", "carol", "dave"], KEY).await;
    let source = nodes[1].dir.join("workspace/public/big.bin");
    write_random(&source, mib);
    let scratch = tempfile::tempdir().unwrap();
    let rate = |d: Duration, mib: usize| mib as f64 / d.as_secs_f64();

    // Warm the page cache the same way for everyone.
    let _ = std::fs::read(&source);
    let tcp = tcp_copy(&source, &scratch.path().join("tcp.bin"));
    let _ = std::fs::remove_file(scratch.path().join("tcp.bin"));
    let sshd = Sshd::start(scratch.path());

    // The first get includes the sender hashing the file for its manifest;
    // the memory growth is measured over it.
    let (pa, pb) = (nodes[0].pid(), nodes[1].pid());
    let (rss_a, rss_b) = (kib_field(pa, "VmRSS:"), kib_field(pb, "VmRSS:"));
    let get = |dest: &'static str| {
        let alice = &nodes[0];
        async move {
            let start = Instant::now();
            let (code, transfer) = alice
                .post(
                    "/v1/files/get",
                    json!({"from": "bob", "path": "big.bin", "dest": dest}),
                )
                .await;
            let took = start.elapsed();
            assert_eq!(code, 200, "{transfer}");
            let _ = std::fs::remove_file(alice.dir.join("workspace").join(dest));
            took
        }
    };
    let first = get("public/first.bin").await;
    let (peak_a, peak_b) = (kib_field(pa, "VmHWM:"), kib_field(pb, "VmHWM:"));

    // Then rounds that alternate scp and iris, so the machine's drift hits
    // both alike; the medians are compared.
    let (mut scps, mut irises) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let scp_dest = scratch.path().join("scp.bin");
        if let Some(s) = sshd
            .as_ref()
            .and_then(|s| s.copy(&source, std::slice::from_ref(&scp_dest)))
        {
            scps.push(s);
        }
        let _ = std::fs::remove_file(scp_dest);
        irises.push(get("public/again.bin").await);
    }

    // A push to 3 nodes at once (what `iris images push` does with a tar),
    // against 3 scp's at once of the same file, alternating likewise.
    let pushed = scratch.path().join("push.bin");
    write_random(&pushed, push_mib);
    let _ = std::fs::read(&pushed);
    let dests: Vec<_> = (0..3)
        .map(|i| scratch.path().join(format!("scp-{i}.bin")))
        .collect();
    let (mut scp3s, mut pushes) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        if let Some(s) = sshd.as_ref().and_then(|s| s.copy(&pushed, &dests)) {
            scp3s.push(s);
        }
        let start = Instant::now();
        let (code, answers) = nodes[0]
            .post(
                "/v1/files/put",
                json!({"source": pushed.display().to_string(), "to": "all"}),
            )
            .await;
        pushes.push(start.elapsed());
        assert_eq!(code, 200, "{answers}");
        assert!(
            answers
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["error"].is_null()),
            "{answers}"
        );
    }
    drop(sshd);
    let (scp, iris, scp3, push) = (
        median(scps),
        median(irises).unwrap(),
        median(scp3s),
        median(pushes).unwrap(),
    );

    println!(
        "file transfer benchmark: {mib} MiB over loopback, both ends on this machine; medians of {ROUNDS} alternating rounds"
    );
    println!("{:<40} {:>10} {:>12}", "", "MiB/s", "ratio to scp");
    let ratio = |d: Duration, base: Option<Duration>| {
        base.map_or("-".to_string(), |s| {
            format!("{:.2}", s.as_secs_f64() / d.as_secs_f64())
        })
    };
    let row = |what: &str, d: Duration, mib: usize, base: Option<Duration>| {
        println!("{what:<40} {:>10.1} {:>12}", rate(d, mib), ratio(d, base))
    };
    row("iris files get (verified)", iris, mib, scp);
    row("  the first, with the sender's hashing", first, mib, scp);
    match scp {
        Some(s) => row("scp (sshd on loopback)", s, mib, scp),
        None => println!("{:<40} {:>10} {:>12}", "scp", "n/a", "(no /usr/sbin/sshd)"),
    }
    row("plain TCP socket copy", tcp, mib, scp);
    println!("push of {push_mib} MiB to 3 nodes at once (MiB/s per node):");
    row("  iris files put --to all", push, push_mib, scp3);
    if let Some(s) = scp3 {
        row("  3 scp at once", s, push_mib, scp3);
    }
    println!(
        "resident memory growth during the first get: receiver {:.1} MiB (peak {:.1} MiB), sender {:.1} MiB (peak {:.1} MiB)",
        peak_a.saturating_sub(rss_a) as f64 / 1024.0,
        peak_a as f64 / 1024.0,
        peak_b.saturating_sub(rss_b) as f64 / 1024.0,
        peak_b as f64 / 1024.0
    );
    println!("(the receiver checks each chunk as it arrives; the sender hashed the file once)");
    nodes.clear();
}
