//! What a node keeps on disk besides its config, all readable by the owner
//! only: its identity, the API token, the network's PSK and its membership
//! (network config and last known map).
//!
//! Every write goes to a temporary file that is renamed over the old one, so
//! a crash leaves either the old or the new content, never half of either.

use std::{
    fs,
    path::{Path, PathBuf},
};

mod staged_file;
pub use staged_file::{Recovered, StagedFile};

use iris_behaviours::{libp2p::identity::Keypair, MapEntry, NetworkConfig, PreSharedKey};
use serde::{Deserialize, Serialize};

pub const IDENTITY_FILE: &str = "identity.key";
pub const TOKEN_FILE: &str = "api.token";
pub const PSK_FILE: &str = "network.psk";
pub const STATE_FILE: &str = "state.json";
/// The port the API listens on, written at every start: with `api.port = 0`
/// the node picks a free one and the CLI finds it here.
pub const API_PORT_FILE: &str = "api.port";

/// Why something on disk could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {path}: {source}{hint}", hint = permission_hint(source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({message}); {advice}", advice = advice_for(path))]
    Corrupt { path: PathBuf, message: String },
}

/// What to do about a file this user may not read: a node's directory
/// belongs to the user that made it, and is private to it.
pub fn permission_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (the node's directory is private to the user that ran `iris init`: run this as that user)"
        }
        _ => "",
    }
}

/// What the owner can do about a corrupt file, which depends on the file.
fn advice_for(path: &Path) -> &'static str {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(TOKEN_FILE) => "delete it and start the node: it makes a new token there",
        Some(API_PORT_FILE) => "delete it: the node writes it again when it starts",
        Some(IDENTITY_FILE) => {
            "this node's identity is lost: restore the file from a backup, or `iris init` a new node"
        }
        Some(STATE_FILE) => {
            "move it aside to start without it (the node is then in no network, and joins again)"
        }
        _ => "move it aside to start without it",
    }
}

/// The node's membership of a network, saved so a restart rejoins by itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedMembership {
    pub network: NetworkConfig,
    /// The last version of our own record, so versions keep growing.
    pub own_version: u64,
    /// The last known map, our own entry included.
    pub map: Vec<MapEntry>,
    /// Nodes the master removed.
    #[serde(default)]
    pub removed: Vec<iris_behaviours::libp2p::PeerId>,
    /// The master's latest signed list of them, to pass on to joiners
    /// (none in a state saved before lists were signed).
    #[serde(default)]
    pub removals: iris_behaviours::Removals,
}

/// The files of one node directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates a fresh identity and API token (by `iris init`).
    pub fn create_secrets(&self) -> Result<(), StoreError> {
        let keypair = Keypair::generate_ed25519();
        let encoded = keypair.to_protobuf_encoding().expect("ed25519 keys encode");
        write_private(&self.path(IDENTITY_FILE), &encoded)?;
        self.write_new_token()
    }

    /// A new random API token, in place of any other.
    fn write_new_token(&self) -> Result<(), StoreError> {
        write_private(
            &self.path(TOKEN_FILE),
            format!("{}\n", random_hex(32)).as_bytes(),
        )
    }

    pub fn load_identity(&self) -> Result<Keypair, StoreError> {
        let path = self.path(IDENTITY_FILE);
        let bytes = read(&path)?;
        Keypair::from_protobuf_encoding(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// The API token, or a new one if there is none (the owner deleted
    /// a lost or corrupt one): it guards only this node's own API, and
    /// whoever may delete it may read it.
    pub fn load_or_renew_token(&self) -> Result<String, StoreError> {
        match self.load_token() {
            Err(StoreError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.write_new_token()?;
                tracing::info!(
                    "made a new API token in {}",
                    self.path(TOKEN_FILE).display()
                );
                self.load_token()
            }
            loaded => loaded,
        }
    }

    pub fn load_token(&self) -> Result<String, StoreError> {
        let path = self.path(TOKEN_FILE);
        let text = String::from_utf8(read(&path)?).map_err(|_| StoreError::Corrupt {
            path: path.clone(),
            message: "not UTF-8".into(),
        })?;
        let token = text.trim().to_string();
        if token.len() < 32 {
            return Err(StoreError::Corrupt {
                path,
                message: "token too short".into(),
            });
        }
        Ok(token)
    }

    pub fn save_api_port(&self, port: u16) -> Result<(), StoreError> {
        write_private(&self.path(API_PORT_FILE), format!("{port}\n").as_bytes())
    }

    pub fn load_api_port(&self) -> Result<u16, StoreError> {
        let path = self.path(API_PORT_FILE);
        let text = String::from_utf8_lossy(&read(&path)?).trim().to_string();
        text.parse()
            .ok()
            .filter(|port| *port != 0)
            .ok_or(StoreError::Corrupt {
                path,
                message: format!("'{text}' is not a port"),
            })
    }

    pub fn save_psk(&self, psk: &PreSharedKey) -> Result<(), StoreError> {
        write_private(&self.path(PSK_FILE), psk.to_string().as_bytes())
    }

    pub fn load_psk(&self) -> Result<PreSharedKey, StoreError> {
        let path = self.path(PSK_FILE);
        let text = String::from_utf8(read(&path)?).map_err(|_| StoreError::Corrupt {
            path: path.clone(),
            message: "not UTF-8".into(),
        })?;
        text.parse()
            .map_err(|e| StoreError::Corrupt { path, message: e })
    }

    /// The saved membership, or `None` if this node is in no network.
    pub fn load_membership(&self) -> Result<Option<SavedMembership>, StoreError> {
        let path = self.path(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    pub fn save_membership(&self, membership: &SavedMembership) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(membership).expect("membership serializes");
        write_private(&self.path(STATE_FILE), &json)
    }

    /// Forgets the network: after a leave, a restart does not rejoin.
    pub fn clear_membership(&self) -> Result<(), StoreError> {
        for name in [STATE_FILE, PSK_FILE] {
            let path = self.path(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Write { path, source }),
            }
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, StoreError> {
    fs::read(path).map_err(|source| StoreError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` atomically, readable and writable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    StagedFile::write(path, bytes)
        .and_then(|staged| staged.commit())
        .map_err(|source| StoreError::Write {
            path: path.to_owned(),
            source,
        })
}

/// `n` random bytes from the OS, as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A lost token is made anew at start; a corrupt one says what to do
    /// (before: "move it aside", after which the node would not start).
    #[test]
    fn a_lost_token_is_renewed_and_a_corrupt_one_says_how() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create_secrets().unwrap();
        fs::write(dir.path().join(TOKEN_FILE), "short").unwrap();
        let error = store.load_or_renew_token().unwrap_err().to_string();
        assert!(error.contains("delete it and start the node"), "{error}");
        fs::remove_file(dir.path().join(TOKEN_FILE)).unwrap();
        let token = store.load_or_renew_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(store.load_token().unwrap(), token);
        let denied = StoreError::Read {
            path: dir.path().join(TOKEN_FILE),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(
            denied.to_string().contains("run this as that user"),
            "{denied}"
        );
    }

    #[test]
    fn secrets_are_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create_secrets().unwrap();
        let a = store.load_identity().unwrap().public().to_peer_id();
        let b = store.load_identity().unwrap().public().to_peer_id();
        assert_eq!(a, b);
        for name in [IDENTITY_FILE, TOKEN_FILE] {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(store.load_token().unwrap().len(), 64);
    }

    #[test]
    fn concurrent_writers_of_one_file_all_succeed_and_leave_a_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.json");
        std::thread::scope(|scope| {
            for writer in 0..8u8 {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..50 {
                        write_private(path, &[writer; 4096]).unwrap();
                    }
                });
            }
        });
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|b| *b == bytes[0]), "a torn file");
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "temporary files left behind");
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.load_membership().unwrap().is_none());
        fs::write(dir.path().join(STATE_FILE), b"{ not json").unwrap();
        let err = store.load_membership().unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains(STATE_FILE), "{err}");
        fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        assert!(store
            .load_identity()
            .unwrap_err()
            .to_string()
            .contains("corrupt"));
    }

    #[test]
    fn psk_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let psk = iris_behaviours::derive_psk("k");
        store.save_psk(&psk).unwrap();
        assert_eq!(
            store.load_psk().unwrap().fingerprint().to_string(),
            psk.fingerprint().to_string()
        );
    }
}
