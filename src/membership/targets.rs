//! Which nodes a command goes to: `--on all`, names, `role:R`, `tag:T`,
//! `dataset:NAME` (the nodes whose record lists that dataset), and `--any`
//! for the least loaded of them.

use std::collections::BTreeMap;

use iris_behaviours::{libp2p::PeerId, Liveness, MapEntry, Role};

/// Why `--on` names no node to send to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// `--on` is not a target expression.
    #[error("{0}")]
    Invalid(String),
    /// It is one, but names no node that is in the map and alive.
    #[error("{0}")]
    NoSuchTarget(String),
}

/// Which nodes `--on` names, among the alive ones. `any` keeps the least
/// loaded one, so a tag or a list acts as one load-balanced cluster.
pub fn resolve_targets(
    on: &str,
    any: bool,
    map: &[MapEntry],
    load: &BTreeMap<PeerId, usize>,
) -> Result<Vec<(PeerId, String)>, TargetError> {
    let alive = |e: &&MapEntry| e.state == Liveness::Alive;
    let mut chosen: Vec<&MapEntry> = match on.split_once(':') {
        _ if on == "all" => map.iter().filter(alive).collect(),
        Some(("role", role)) => {
            let role = match role {
                "master" => Role::Master,
                "slave" => Role::Slave,
                other => {
                    return Err(TargetError::Invalid(format!(
                        "unknown role '{other}': use role:master or role:slave"
                    )))
                }
            };
            map.iter()
                .filter(alive)
                .filter(|e| e.record.role == role)
                .collect()
        }
        Some(("tag", tag)) => map
            .iter()
            .filter(alive)
            .filter(|e| e.record.tags.iter().any(|t| t == tag))
            .collect(),
        Some(("dataset", name)) => map
            .iter()
            .filter(alive)
            .filter(|e| e.record.datasets.iter().any(|d| d.name == name))
            .collect(),
        Some((kind, _)) => {
            return Err(TargetError::Invalid(format!(
                "unknown target '{kind}:': use all, names, role:R, tag:T or dataset:NAME"
            )))
        }
        None => {
            let mut named = Vec::new();
            for name in on.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let entry = map.iter().find(|e| e.record.name == name).ok_or_else(|| {
                    TargetError::NoSuchTarget(format!("no node named '{name}' in the network"))
                })?;
                if entry.state != Liveness::Alive {
                    return Err(TargetError::NoSuchTarget(format!(
                        "node '{name}' is {}",
                        entry.state
                    )));
                }
                if !named
                    .iter()
                    .any(|e: &&MapEntry| e.record.peer_id == entry.record.peer_id)
                {
                    named.push(entry);
                }
            }
            named
        }
    };
    if chosen.is_empty() {
        return Err(TargetError::NoSuchTarget(format!(
            "no alive node matches --on {on}"
        )));
    }
    if any {
        chosen.sort_by_key(|e| {
            (
                load.get(&e.record.peer_id).copied().unwrap_or(0),
                e.record.name.clone(),
            )
        });
        chosen.truncate(1);
    }
    Ok(chosen
        .into_iter()
        .map(|e| (e.record.peer_id, e.record.name.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_behaviours::{libp2p::identity::Keypair, NodeRecord};

    fn entry(name: &str, role: Role, tags: &[&str], state: Liveness) -> MapEntry {
        MapEntry {
            record: NodeRecord {
                name: name.into(),
                peer_id: Keypair::generate_ed25519().public().to_peer_id(),
                addrs: vec![],
                api_port: 1,
                p2p_port: 2,
                role,
                relay: false,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                executor: Default::default(),
                images: vec![],
                version: 1,
                audit: None,
                signed_at_ms: 0,
                signature: vec![],
                datasets: Vec::new(),
            },
            state,
            last_seen_ms: 0,
        }
    }

    fn map() -> Vec<MapEntry> {
        vec![
            entry("alice", Role::Master, &[], Liveness::Alive),
            entry("bob", Role::Slave, &["gpu"], Liveness::Alive),
            entry("carol", Role::Slave, &["gpu"], Liveness::Alive),
            entry("dave", Role::Slave, &["gpu"], Liveness::Suspect),
        ]
    }

    fn names(targets: Vec<(PeerId, String)>) -> Vec<String> {
        targets.into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn targets_by_all_names_role_and_tag_skip_nodes_that_are_not_alive() {
        let (map, load) = (map(), BTreeMap::new());
        assert_eq!(
            names(resolve_targets("all", false, &map, &load).unwrap()),
            ["alice", "bob", "carol"]
        );
        assert_eq!(
            names(resolve_targets("role:slave", false, &map, &load).unwrap()),
            ["bob", "carol"]
        );
        assert_eq!(
            names(resolve_targets("tag:gpu", false, &map, &load).unwrap()),
            ["bob", "carol"]
        );
        assert_eq!(
            names(resolve_targets("carol, bob,carol", false, &map, &load).unwrap()),
            ["carol", "bob"]
        );
        assert!(resolve_targets("dave", false, &map, &load)
            .unwrap_err()
            .to_string()
            .contains("suspect"));
        assert!(resolve_targets("zoe", false, &map, &load)
            .unwrap_err()
            .to_string()
            .contains("no node named"));
        assert!(resolve_targets("tag:tpu", false, &map, &load)
            .unwrap_err()
            .to_string()
            .contains("no alive node"));
        assert!(resolve_targets("role:king", false, &map, &load).is_err());
        assert!(resolve_targets("zone:x", false, &map, &load).is_err());
    }

    #[test]
    fn any_picks_the_least_loaded_target() {
        let map = map();
        let load = BTreeMap::from([(map[1].record.peer_id, 3), (map[2].record.peer_id, 1)]);
        assert_eq!(
            names(resolve_targets("tag:gpu", true, &map, &load).unwrap()),
            ["carol"]
        );
        let load = BTreeMap::from([(map[2].record.peer_id, 5)]);
        assert_eq!(
            names(resolve_targets("tag:gpu", true, &map, &load).unwrap()),
            ["bob"]
        );
    }
}
