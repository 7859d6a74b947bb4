//! What every member knows about the network it belongs to: its config,
//! signed by the master that founded it, and how it is governed.

use libp2p::{identity::Keypair, PeerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::signed::{hex, signed_bytes, verify};

const CONFIG_CONTEXT: &[u8] = b"iris/network-config/1\0";

/// What every member knows about the network it belongs to. The key is not
/// here: it never leaves the node it was typed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkConfig {
    pub name: String,
    pub mode: NetworkMode,
    /// The genesis node, master in `master_slave` mode.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub master: PeerId,
    /// Unix time in milliseconds when the network was created.
    pub created_at_ms: u64,
    /// The master's signature over the rest ([`NetworkConfig::sign`]).
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl NetworkConfig {
    /// Signs the config with the master's key (only the founder can).
    pub fn sign(&mut self, keypair: &Keypair) {
        self.signature.clear();
        self.signature = keypair
            .sign(&signed_bytes(CONFIG_CONTEXT, self))
            .expect("ed25519 signing does not fail");
    }

    /// Checks that the master it names signed it, as it is.
    pub fn verify(&self) -> Result<(), String> {
        let mut unsigned = self.clone();
        let signature = std::mem::take(&mut unsigned.signature);
        verify(&self.master, CONFIG_CONTEXT, &unsigned, &signature)
            .map_err(|e| format!("the network config of '{}': {e}", self.name))
    }

    /// The network's identity: the SHA-256 of its signed config, in hex. A
    /// join ticket pins it, so a bootstrap cannot pass off another network,
    /// or another master, as the one the ticket names.
    pub fn id(&self) -> String {
        let mut bytes = Vec::new();
        ciborium::into_writer(self, &mut bytes).expect("values encode to memory");
        hex(&Sha256::digest(&bytes))
    }
}

/// How a network is governed. Only one mode exists today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The genesis node is master: only it may run jobs on, or push files to,
    /// other nodes.
    MasterSlave,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "master_slave" => Ok(Self::MasterSlave),
            other => Err(format!(
                "unsupported network mode '{other}': the only mode is 'master_slave'"
            )),
        }
    }
}

/// A node's part in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Slave,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Slave => "slave",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_verifies_only_as_its_master_signed_it_and_its_id_pins_it() {
        let alice = Keypair::generate_ed25519();
        let mallory = Keypair::generate_ed25519();
        let mut config = NetworkConfig {
            name: "lab".into(),
            mode: NetworkMode::MasterSlave,
            master: alice.public().to_peer_id(),
            created_at_ms: 1,
            signature: vec![],
        };
        config.sign(&alice);
        config.verify().unwrap();
        let id = config.id();
        assert_eq!(id.len(), 64);
        let mut usurped = config.clone();
        usurped.master = mallory.public().to_peer_id();
        assert!(usurped.verify().is_err());
        usurped.sign(&mallory);
        usurped.verify().unwrap();
        assert_ne!(usurped.id(), id, "a self-signed usurper has another id");
    }

    #[test]
    fn modes_other_than_master_slave_are_refused() {
        assert_eq!(
            "master_slave".parse::<NetworkMode>(),
            Ok(NetworkMode::MasterSlave)
        );
        let err = "fully_distributed".parse::<NetworkMode>().unwrap_err();
        assert!(err.contains("master_slave"), "{err}");
    }
}
