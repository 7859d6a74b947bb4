//! `iris events`: the node's events, live, a line each.

use anyhow::bail;
use futures::StreamExt;

use super::{
    output::{clock, printable},
    NodeDir,
};
use crate::events::{Event, EventKind};

pub async fn follow(dir: &NodeDir, as_json: bool) -> anyhow::Result<()> {
    let client = dir.client()?;
    let mut events = Box::pin(client.events().await?);
    while let Some(event) = events.next().await {
        let event = event?;
        if as_json {
            println!("{}", serde_json::to_string(&event)?);
        } else {
            println!("{}", printable(&describe(&event)));
        }
    }
    bail!("the node closed the event stream (did it stop?)")
}

/// One line per event, with exactly what the event carries.
fn describe(event: &Event) -> String {
    let what = match &event.kind {
        EventKind::Joined { name, peer_id } => format!("joined   {name} ({peer_id})"),
        EventKind::Alive { name, peer_id } => format!("alive    {name} ({peer_id})"),
        EventKind::Suspect {
            name,
            peer_id,
            reason,
        } => format!("suspect  {name} ({peer_id}): {reason}"),
        EventKind::Gone {
            name,
            peer_id,
            reason,
        } => format!("gone     {name} ({peer_id}): {reason}"),
        EventKind::Left { name, peer_id } => format!("left     {name} ({peer_id})"),
        EventKind::Removed { name, peer_id } => format!("removed  {name} ({peer_id})"),
        EventKind::AuditRewritten {
            name,
            peer_id,
            before,
            now,
        } => format!(
            "ALERT    {name} ({peer_id}): its audit log was rewritten: {} entries (root {}) \
             before, {} entries (root {}) now, which do not extend them",
            before.entries, before.root, now.entries, now.root
        ),
        EventKind::NetworkCreated { network } => format!("created  network '{network}'"),
        EventKind::NetworkJoined { network, via } => {
            format!("joined   network '{network}' via {via}")
        }
        EventKind::NetworkLeft { network } => format!("left     network '{network}'"),
        EventKind::ImageLoaded { file, images } => {
            format!("loaded   {} from {file}", images.join(", "))
        }
        EventKind::ImageFailed { file, error } => format!("failed   to load {file}: {error}"),
        EventKind::JobFinished { job, state } => format!("job      {job} {state}"),
        EventKind::ApprovalRequested { job, from, image } => {
            format!("approval {job}: {from} asks to run {image}; see `iris approvals`")
        }
        EventKind::AwaitingApproval { job, node } => {
            format!("job      {job} awaits the approval of {node}'s owner")
        }
        EventKind::ReleaseHeld { job } => {
            format!("release  {job}: outputs held for review; see `iris releases`")
        }
        EventKind::Transfer { path, bytes, total } => {
            format!("transfer {path}: {bytes} of {total} bytes")
        }
    };
    format!("{}  {what}", clock(event.at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_behaviours::libp2p::PeerId;

    #[test]
    fn events_show_the_reasons_they_carry_and_no_others() {
        let peer_id = PeerId::random();
        let gone = Event {
            at_ms: 0,
            kind: EventKind::Gone {
                name: "bob".into(),
                peer_id,
                reason: "no heartbeat for 10 s".into(),
            },
        };
        let line = describe(&gone);
        assert!(
            line.contains("gone") && line.ends_with(": no heartbeat for 10 s"),
            "{line}"
        );
        let left = Event {
            at_ms: 0,
            kind: EventKind::Left {
                name: "bob".into(),
                peer_id,
            },
        };
        assert!(describe(&left).ends_with(&format!("({peer_id})")));
    }
}
