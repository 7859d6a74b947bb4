//! Probes for tests: commands that read, copy, print or plant on purpose
//! what a job should never let out, so that the tests can attack with
//! them. Only the `iris-probe` image (feature `probes`) has them; the
//! `iris-worker` image that owners approve does not.

use std::process::ExitCode;

#[cfg(feature = "probes")]
use std::fs;

#[cfg(feature = "probes")]
use serde_json::json;

#[cfg(feature = "probes")]
use super::{output_dir, usage};

#[cfg(feature = "probes")]
pub const USAGE: &str =
    " | exit N | tally PATH SECS | touch PATH | cat PATH | copy PATH NAME | update N SEED \
     | netifs | connect HOST:PORT | write NAME TEXT | smuggle PATH NAME | fill PATH|- BYTES \
     | plant FILE [LINK=TARGET]... | unnamed NAME [only]";
#[cfg(not(feature = "probes"))]
pub const USAGE: &str = "";

/// Runs a probe; without the feature, there is none.
#[cfg(not(feature = "probes"))]
pub fn run(_command: &str, _rest: &[String]) -> Result<ExitCode, String> {
    Err(super::usage())
}

/// Runs a probe.
#[cfg(feature = "probes")]
pub fn run(command: &str, rest: &[String]) -> Result<ExitCode, String> {
    match command {
        "exit" => {
            let code: u8 = rest
                .first()
                .and_then(|c| c.parse().ok())
                .ok_or_else(usage)?;
            return Ok(ExitCode::from(code));
        }
        "tally" => {
            // Counts its own runs: adds a line to PATH, waits SECS, then
            // prints how many lines PATH holds. A command carried out twice
            // prints 2 (tests/lost_connections.rs).
            let (Some(path), Some(secs)) = (
                rest.first(),
                rest.get(1)
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0),
            ) else {
                return Err(usage());
            };
            use std::io::Write;
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(b"run\n"))
                .map_err(|e| format!("cannot add to {path}: {e}"))?;
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            println!("runs: {}", text.lines().count());
        }
        "touch" => {
            let path = rest.first().ok_or_else(usage)?;
            fs::write(path, b"written by iris-worker\n")
                .map_err(|e| format!("cannot write {path}: {e}"))?;
            println!("wrote {path}");
        }
        "update" => {
            // A synthetic update of N entries, the same for the same seed:
            // an input for secure sums of any size (benches/secure_sum.rs).
            let (Some(n), Some(seed)) = (
                rest.first().and_then(|n| n.parse::<usize>().ok()),
                rest.get(1).and_then(|s| s.parse::<u64>().ok()),
            ) else {
                return Err(usage());
            };
            let mut state = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let vector: Vec<f64> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 11) as f64 / (1u64 << 53) as f64) * 20.0 - 10.0
                })
                .collect();
            let text = serde_json::to_string(&json!({ "vector": vector, "weight": 1 + seed % 7 }))
                .expect("JSON values serialize");
            fs::write(output_dir().join("update.json"), text)
                .map_err(|e| format!("cannot write update.json: {e}"))?;
            println!("wrote update.json: {n} entries");
        }
        "cat" => {
            // Prints a file: what a job that leaks through its logs does.
            let path = rest.first().ok_or_else(usage)?;
            let text = fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            std::io::Write::write_all(&mut std::io::stdout(), &text)
                .map_err(|e| format!("cannot print {path}: {e}"))?;
        }
        "copy" => {
            // Copies a file into the output directory: what a job that
            // leaks through its outputs does.
            let (Some(from), Some(name)) = (rest.first(), rest.get(1)) else {
                return Err(usage());
            };
            fs::copy(from, output_dir().join(name))
                .map_err(|e| format!("cannot copy {from}: {e}"))?;
            println!("copied {from} to {name}");
        }
        "write" => {
            // Writes TEXT as NAME in the output directory: an update file
            // of the test's choosing (tests/secure_sum.rs).
            let (Some(name), Some(text)) = (rest.first(), rest.get(1)) else {
                return Err(usage());
            };
            fs::write(output_dir().join(name), text)
                .map_err(|e| format!("cannot write {name}: {e}"))?;
        }
        "smuggle" => {
            // Writes PATH's bytes as the "vector" of an update file NAME: a
            // job that hopes a refusal will quote them (tests/secure_sum.rs).
            let (Some(from), Some(name)) = (rest.first(), rest.get(1)) else {
                return Err(usage());
            };
            let text = fs::read_to_string(from).map_err(|e| format!("cannot read {from}: {e}"))?;
            let update = json!({ "weight": 1, "vector": text });
            fs::write(output_dir().join(name), update.to_string())
                .map_err(|e| format!("cannot write {name}: {e}"))?;
        }
        "netifs" => {
            // The container's network interfaces, from the kernel's own list.
            let dev =
                fs::read_to_string("/proc/net/dev").map_err(|e| format!("/proc/net/dev: {e}"))?;
            let names: Vec<&str> = dev
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(str::trim)
                .collect();
            println!("{}", names.join(" "));
        }
        "connect" => {
            let addr = rest.first().ok_or_else(usage)?;
            let target = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
                .map_err(|e| format!("cannot resolve {addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("{addr} resolves to nothing"))?;
            std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(3))
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            println!("connected to {addr}");
        }
        "fill" => {
            use std::io::Write;
            let (Some(path), Some(bytes)) = (
                rest.first(),
                rest.get(1).and_then(|b| b.parse::<usize>().ok()),
            ) else {
                return Err(usage());
            };
            let mut sink: Box<dyn Write> = if path == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(fs::File::create(path).map_err(|e| format!("cannot write {path}: {e}"))?)
            };
            let block = [b'0'; 64 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(block.len());
                sink.write_all(&block[..n])
                    .map_err(|e| format!("cannot write {path}: {e}"))?;
                left -= n;
            }
        }
        "plant" => {
            let (file, links) = rest.split_first().ok_or_else(usage)?;
            let out = output_dir();
            fs::write(out.join(file), b"an honest result\n")
                .map_err(|e| format!("cannot write {file}: {e}"))?;
            for link in links {
                let (at, target) = link.split_once('=').ok_or_else(usage)?;
                let at = out.join(at);
                if let Some(dir) = at.parent() {
                    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                std::os::unix::fs::symlink(target, &at)
                    .map_err(|e| format!("cannot link {}: {e}", at.display()))?;
                println!("planted {} -> {target}", at.display());
            }
        }
        "unnamed" => {
            // Writes NAME, and beside it a file whose name is not UTF-8
            // (NAME's bytes and 0xFF): one bad name must not cost the
            // others (tests/jobs.rs). With `only`, just the bad name: a
            // name is a message too (tests/policy.rs).
            use std::os::unix::ffi::OsStrExt;
            let Some(name) = rest.first() else {
                return Err(usage());
            };
            if rest.get(1).map(String::as_str) != Some("only") {
                fs::write(output_dir().join(name), "kept")
                    .map_err(|e| format!("cannot write {name}: {e}"))?;
            }
            let bad = std::ffi::OsStr::from_bytes(&[name.as_bytes(), b"\xff"].concat()).to_owned();
            fs::write(output_dir().join(bad), "unnamed")
                .map_err(|e| format!("cannot write the unnamed file: {e}"))?;
        }
        _ => return Err(usage()),
    }
    Ok(ExitCode::SUCCESS)
}
