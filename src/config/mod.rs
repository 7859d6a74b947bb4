//! `iris.toml`: what the user may change about a node.
//!
//! `iris init` writes the file with every setting present and commented, so
//! the file documents itself. Missing settings take the defaults below, and
//! unknown ones are an error (a typo should not be silently ignored).

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use iris_behaviours::{validate_name, validate_tag};

use crate::policy::PolicyConfig;
use serde::{Deserialize, Serialize};

mod p2p;

pub use p2p::{P2pConfig, RelayMode};

pub const CONFIG_FILE: &str = "iris.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's name in the network map.
    pub name: String,
    /// Tags other nodes can target with `--on tag:T`.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub p2p: P2pConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub workspace: WorkspaceConfig,
    #[serde(default)]
    pub liveness: LivenessConfig,
    #[serde(default)]
    pub jobs: JobsConfig,
    /// The data owner's policy ([`crate::policy`]).
    #[serde(default)]
    pub policy: PolicyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Tasks this node runs at once; the rest wait in a queue.
    pub max_concurrent: usize,
    /// Each of a task's stdout and stderr kept on disk, at most.
    pub max_log_bytes: u64,
    /// A task's outputs together, at most; past it the task is killed.
    pub max_output_bytes: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_log_bytes: 64 << 20,
            max_output_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Interface of the REST API. Loopback keeps it to this machine.
    pub bind: IpAddr,
    /// 0 picks a free port at start and writes it to `DIR/api.port`.
    pub port: u16,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bind: [127, 0, 0, 1].into(),
            port: 8000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkspaceConfig {
    /// The workspace, relative to the node directory unless absolute.
    pub path: PathBuf,
    /// Where Docker finds the workspace when this node itself runs in a
    /// container (Docker-out-of-Docker): the host's path of `path`.
    pub host_path: Option<PathBuf>,
}

impl Default for WorkspaceConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("workspace"),
            host_path: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessConfig {
    /// How often this node probes one of its neighbours (in turn). Read
    /// from `heartbeat_ms` too, its name before probes replaced heartbeats.
    #[serde(alias = "heartbeat_ms")]
    pub probe_interval_ms: u64,
    /// How long a probe may go unanswered, directly (a third of it) and
    /// then through other members (the rest), before the neighbour is
    /// suspect. A node that finds itself slow stretches it.
    pub suspect_after_ms: u64,
    /// Time as suspect after which a member is gone.
    pub gone_after_ms: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            probe_interval_ms: 200,
            suspect_after_ms: 1500,
            gone_after_ms: 10_000,
        }
    }
}

impl LivenessConfig {
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms)
    }
    pub fn suspect_after(&self) -> Duration {
        Duration::from_millis(self.suspect_after_ms)
    }
    pub fn gone_after(&self) -> Duration {
        Duration::from_millis(self.gone_after_ms)
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no node in {dir}: create one with `iris init --dir {dir}`", dir = .dir.display())]
    Missing { dir: PathBuf },
    #[error("cannot read {path}: {source}{hint}", hint = crate::store::permission_hint(source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid node config: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl NodeConfig {
    pub fn new(name: String) -> Self {
        Self {
            name,
            tags: Vec::new(),
            p2p: P2pConfig::default(),
            api: ApiConfig::default(),
            workspace: WorkspaceConfig::default(),
            liveness: LivenessConfig::default(),
            jobs: JobsConfig::default(),
            policy: PolicyConfig::default(),
        }
    }

    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join(CONFIG_FILE);
        // Read, not checked for first: a directory this user may not read
        // is "permission denied", not "no node".
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing {
                dir: dir.to_owned(),
            },
            _ => ConfigError::Read {
                path: path.clone(),
                source,
            },
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        config
            .validate()
            .map_err(|message| ConfigError::Invalid { path, message })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        validate_name("node name", &self.name)?;
        for tag in &self.tags {
            validate_tag(tag)?;
        }
        self.p2p.proxy_parts()?;
        for addr in &self.p2p.external {
            addr.parse::<libp2p::Multiaddr>()
                .map_err(|e| format!("p2p.external address '{addr}' is not a multiaddr: {e}"))?;
        }
        let l = &self.liveness;
        if l.probe_interval_ms == 0
            || l.suspect_after_ms < 30
            || l.suspect_after_ms <= l.probe_interval_ms
            || l.gone_after_ms == 0
        {
            return Err(format!(
                "liveness: need probe_interval_ms > 0, suspect_after_ms >= 30 and > probe_interval_ms, \
                 and gone_after_ms > 0 (got {}, {}, {})",
                l.probe_interval_ms, l.suspect_after_ms, l.gone_after_ms
            ));
        }
        self.policy.validate()?;
        Ok(())
    }

    /// The config in `dir` (read anew, so the rest stays as it is on
    /// disk) with `policy` in `[policy]`, written beside it and synced:
    /// in place once committed.
    pub fn stage_policy(
        dir: &Path,
        policy: &PolicyConfig,
    ) -> Result<crate::store::StagedFile, String> {
        let mut config = NodeConfig::load(dir).map_err(|e| e.to_string())?;
        config.policy = policy.clone();
        let path = dir.join(CONFIG_FILE);
        crate::store::StagedFile::write(&path, config.to_commented_toml().as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The workspace directory, resolved against the node directory.
    pub fn workspace_dir(&self, node_dir: &Path) -> PathBuf {
        node_dir.join(&self.workspace.path)
    }

    /// The config as `iris init` writes it: every setting, with comments.
    pub fn to_commented_toml(&self) -> String {
        let tags = self
            .tags
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let external = self
            .p2p
            .external
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let host_path = match &self.workspace.host_path {
            Some(p) => format!("host_path = {:?}", p.display().to_string()),
            None => "# host_path = \"/srv/iris/alice/workspace\"".to_string(),
        };
        format!(
            r#"# Iris node configuration, written by `iris init`. Restart the node after editing
# (except [policy], which `iris policy set` changes at once).

# This node's name in the network map: letters, digits, '-', '_' and '.'.
name = "{name}"
# Tags other nodes can target, e.g. `iris job run --on tag:gpu`.
tags = [{tags}]

[p2p]
# Interface and TCP port for peer-to-peer traffic (0.0.0.0: every interface).
listen = "{p2p_listen}"
port = {p2p_port}
# Extra addresses to announce, e.g. behind NAT: ["/ip4/203.0.113.7/tcp/7001"]
external = [{external}]
# Relay for members that cannot be dialed (behind NAT or a firewall):
# "auto" (the master relays), "serve" (this node does: it needs an address
# every site can reach) or "off".
relay = "{relay}"
# An HTTP proxy that every connection out goes through (CONNECT), when the
# site's firewall allows nothing else: "10.0.0.1:3128", or with a name and
# Basic credentials, "http://user:password@proxy.example:3128" (keep this
# file private then). Others reach this node through a relay.
{proxy}

[api]
# The local REST API and CLI endpoint. Every route needs the token in api.token.
# Keep it on 127.0.0.1 unless the node runs in a container you publish it from.
bind = "{api_bind}"
# 0 picks a free port at each start and writes it to api.port for the CLI.
port = {api_port}

[workspace]
# image/ (image tars), private/ (never leaves this node), public/ (shared).
# Relative paths are relative to this directory.
path = {workspace:?}
# When this node runs in a container with the host's Docker socket mounted,
# the host's path of the workspace, so job containers can mount it.
{host_path}

[liveness]
# How often this node probes one of its few neighbours, in milliseconds.
probe_interval_ms = {probe_interval}
# How long a probe may go unanswered, directly and then through other
# members, before the neighbour is marked suspect (stretched by the node
# itself when it finds itself slow).
suspect_after_ms = {suspect}
# Time as suspect after which a node is marked gone.
gone_after_ms = {gone}

[jobs]
# Tasks this node runs at once; more wait in a queue (kept across restarts).
max_concurrent = {max_concurrent}
# Each of a task's stdout and stderr kept, at most (bytes).
max_log_bytes = {max_log_bytes}
# A task's outputs together, at most (bytes); past it the task is killed.
max_output_bytes = {max_output_bytes}

{policy}"#,
            name = self.name,
            p2p_listen = self.p2p.listen,
            p2p_port = self.p2p.port,
            relay = self.p2p.relay.name(),
            proxy = match &self.p2p.proxy {
                Some(p) => format!("proxy = {p:?}"),
                None => "# proxy = \"10.0.0.1:3128\"".to_string(),
            },
            api_bind = self.api.bind,
            api_port = self.api.port,
            workspace = self.workspace.path.display().to_string(),
            probe_interval = self.liveness.probe_interval_ms,
            suspect = self.liveness.suspect_after_ms,
            gone = self.liveness.gone_after_ms,
            max_concurrent = self.jobs.max_concurrent,
            max_log_bytes = self.jobs.max_log_bytes,
            max_output_bytes = self.jobs.max_output_bytes,
            policy = self.policy_toml(),
        )
    }

    /// `[policy]`, commented: what the owner of this node's data allows.
    fn policy_toml(&self) -> String {
        let p = &self.policy;
        let mut text = format!(
            r#"[policy]
# What other nodes may do with this node's private data. `iris policy set KEY
# VALUE` changes a setting through the running node, at once, and records the
# change in the audit log; `iris policy` shows them all. Jobs this node's own
# owner runs on this node are not bound by it.
#
# approve: another node's job or session runs only with an image digest this
# node's owner approved (`iris policy allow-image`, or `iris approvals
# approve`); until then it waits as awaiting_approval. any: every image runs.
images = "{images}"
# deny: another node's job or session that asks for a network is refused.
network = "{network}"
# deny: container sessions from other nodes are refused (their command
# output goes straight back to the requester). allow: sessions of approved
# images, and their output leaves only when release = "auto".
sessions = "{sessions}"
# auto: the node that asked for a job fetches its outputs when it ends.
# review: outputs wait until this node's owner releases them (`iris releases`).
# aggregate: outputs leave only as an input of a secure sum.
release = "{release}"
# withhold: a job's logs stay here (its submitter reads "withheld by this
# node's policy"). share: they go back to the submitter, capped below.
logs = "{logs}"
# The fewest participants of a secure sum this node contributes to.
min_aggregate = {min_aggregate}
# With logs = "share": the most bytes of a task's logs (stdout and stderr
# together) that leave this node.
max_shared_log_bytes = {max_shared_log_bytes}
# Under release = "review" or "aggregate": the most tasks from other nodes
# that run on one dataset (or on private/ as a whole) in any hour. Each
# tells the master whether it succeeded and a class of its time, a few bits
# (docs/security.md); the cap bounds how many an hour.
max_tasks_per_hour = {max_tasks_per_hour}
# allow: this node also takes part in secure sums without differential
# privacy. Over chosen subsets of sites, or repeated, such sums tell the
# master this site's update exactly; deny takes part only in sums that add
# noise and spend the budget below (docs/data-owners.md).
noise_free_sums = "{noise_free_sums}"
# The privacy budget of each dataset, and of private/ as a whole: what
# every noisy secure sum from it may cost over its whole life, as epsilon
# at delta. `iris policy budget DATASET EPSILON` gives one dataset its own:
# [[policy.budgets]]
# dataset = "heart"
# epsilon = 0.5
# delta = 1e-6
privacy_epsilon = {privacy_epsilon:?}
privacy_delta = {privacy_delta:?}
# Image digests approved ahead of time, each pinned to the content it had
# when approved (`iris policy allow-image NAME`, `iris policy revoke-image`):
# [[policy.approved]]
# digest = "sha256:..."
# name = "iris-worker:latest"
# command = {{ match = "prefix", argv = ["/iris-worker", "stats"] }}
#   (or match = "exact": only that command; match = "any": the whole image)
# The sites this node's owner recognises as co-participants of secure sums,
# each pinned to its identity (`iris policy recognise NAME`, `iris policy
# forget NAME`). This node takes part in a secure sum only when at least
# min_aggregate of its sites, this node included and the master's own node
# never, are recognised: a master cannot make up the rest with nodes of its
# own. None by default, so no secure sum until the owner picks:
# [[policy.recognised]]
# name = "bob"
# peer_id = "12D3KooW..."
"#,
            images = word(&p.images),
            network = word(&p.network),
            sessions = word(&p.sessions),
            release = word(&p.release),
            logs = word(&p.logs),
            min_aggregate = p.min_aggregate,
            max_shared_log_bytes = p.max_shared_log_bytes,
            max_tasks_per_hour = p.max_tasks_per_hour,
            noise_free_sums = word(&p.noise_free_sums),
            privacy_epsilon = p.privacy_epsilon,
            privacy_delta = p.privacy_delta,
        );
        for image in &p.approved {
            text += &format!(
                "\n[[policy.approved]]\ndigest = {:?}\nname = {:?}\n",
                image.digest, image.name
            );
            if let Some(dataset) = &image.dataset {
                text += &format!("dataset = {dataset:?}\n");
            }
            // An inline table, its strings quoted as TOML quotes them.
            let command = toml::Value::try_from(&image.command).expect("rules serialize");
            text += &format!("command = {command}\n");
        }
        for budget in &p.budgets {
            text += &format!(
                "\n[[policy.budgets]]\ndataset = {}\nepsilon = {:?}\ndelta = {:?}\n",
                toml::Value::String(budget.dataset.clone()),
                budget.epsilon,
                budget.delta
            );
        }
        for site in &p.recognised {
            // Names are as TOML quotes them; a peer id is base58.
            text += &format!(
                "\n[[policy.recognised]]\nname = {}\npeer_id = \"{}\"\n",
                toml::Value::String(site.name.clone()),
                site.peer_id
            );
        }
        text
    }
}

/// A policy value as the word `iris.toml` spells it (`"approve"`).
pub fn word(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(word)) => word,
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a missing config is "no node": a directory that cannot be
    /// read says why (before, any error read as "no node in DIR").
    #[test]
    fn a_config_that_cannot_be_read_is_not_a_missing_node() {
        let dir = tempfile::tempdir().unwrap();
        let missing = NodeConfig::load(dir.path()).unwrap_err().to_string();
        assert!(missing.starts_with("no node in"), "{missing}");
        // A file where the directory should be: ENOTDIR, as root too.
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let unreadable = NodeConfig::load(&file).unwrap_err().to_string();
        assert!(unreadable.starts_with("cannot read"), "{unreadable}");
    }

    #[test]
    fn commented_toml_parses_back_to_the_same_config() {
        let mut config = NodeConfig::new("alice".into());
        config.tags = vec!["gpu".into(), "site=paris".into()];
        config.api.port = 8001;
        let back: NodeConfig = toml::from_str(&config.to_commented_toml()).unwrap();
        assert_eq!(back.name, "alice");
        assert_eq!(back.tags, config.tags);
        assert_eq!(back.api.port, 8001);
        assert!(back.validate().is_ok());
        assert_eq!(back.policy, PolicyConfig::default());
        config.policy.set("release", "review").unwrap();
        config.policy.approved.push(crate::policy::ApprovedImage {
            digest: format!("sha256:{}", "ab".repeat(32)),
            name: "iris-worker:latest".into(),
            dataset: Some("heart".into()),
            command: crate::policy::CommandRule::Prefix {
                argv: vec!["/iris-worker".into(), "st\"ats\u{1b}]".into()],
            },
        });
        config.policy.recognised.push(crate::policy::KnownSite {
            name: "bob".into(),
            peer_id: iris_behaviours::libp2p::identity::Keypair::generate_ed25519()
                .public()
                .to_peer_id(),
        });
        // Every setting `iris policy set` takes, away from its default: an
        // owner's choice that the file forgot would be undone by a restart.
        for (key, value) in [
            ("noise_free_sums", "allow"),
            ("privacy_epsilon", "0.25"),
            ("privacy_delta", "1e-9"),
            ("min_aggregate", "4"),
            ("max_tasks_per_hour", "7"),
        ] {
            config.policy.set(key, value).unwrap();
        }
        config.policy.budgets.push(crate::policy::DatasetBudget {
            dataset: "heart".into(),
            epsilon: 0.5,
            delta: 1e-7,
        });
        let back: NodeConfig = toml::from_str(&config.to_commented_toml()).unwrap();
        assert_eq!(back.policy, config.policy);
    }

    #[test]
    fn unknown_settings_and_bad_values_are_errors() {
        assert!(toml::from_str::<NodeConfig>("name = \"a\"\nnmae = \"b\"").is_err());
        let mut config = NodeConfig::new("a".into());
        config.liveness.suspect_after_ms = 100;
        assert!(config.validate().unwrap_err().contains("suspect_after_ms"));
        config = NodeConfig::new("../evil".into());
        assert!(config.validate().is_err());
    }
}
