//! The egress gate's rules, without a network.

use super::*;
use crate::policy::PolicyConfig;

fn gate(dir: &std::path::Path, policy: PolicyConfig) -> Arc<Egress> {
    let audit = Arc::new(
        AuditLog::create(
            dir.join("audit.log"),
            iris_behaviours::libp2p::identity::Keypair::generate_ed25519(),
            None,
        )
        .unwrap(),
    );
    let policy = Policy::new(
        "bob".into(),
        crate::policy::save_to(dir.join("policy")),
        policy,
        audit.clone(),
    );
    Egress::new(policy, audit, PrivacyLedger::default())
}

const RELEASED: Release = Release::Released {
    by: DecidedBy::Policy,
};

#[tokio::test]
async fn a_chunk_leaves_only_after_its_manifest_was_released_to_the_same_peer() {
    let dir = tempfile::tempdir().unwrap();
    let gate = gate(dir.path(), PolicyConfig::default());
    let (alice, carol) = (PeerId::random(), PeerId::random());
    let chunk = || Outgoing::OutputChunk {
        job_id: "job-1",
        path: "outputs/job-1/r.txt",
    };
    let refused = gate.pass(alice, chunk(), &RELEASED).await.unwrap_err();
    assert!(refused.reason.contains("manifest"), "{}", refused.reason);
    let manifest = Outgoing::OutputFile {
        job_id: "job-1",
        path: "outputs/job-1/r.txt",
        bytes: 3,
        blake3: "abc",
    };
    gate.pass(alice, manifest, &RELEASED).await.unwrap();
    gate.pass(alice, chunk(), &RELEASED).await.unwrap();
    assert!(gate.pass(carol, chunk(), &RELEASED).await.is_err());
    // Held or denied outputs leave neither way.
    for release in [
        Release::Held,
        Release::Pending,
        Release::AggregateOnly,
        Release::Denied {
            reason: "no".into(),
        },
    ] {
        assert!(gate.pass(alice, chunk(), &release).await.is_err());
    }
    let entries = crate::audit::read(&dir.path().join("audit.log")).unwrap();
    let released = entries
        .iter()
        .filter(|e| matches!(e.event, AuditEvent::OutputReleased { .. }))
        .count();
    assert_eq!(released, 1, "the manifest's release, recorded once");
}

#[tokio::test]
async fn logs_are_withheld_by_default_and_capped_when_shared() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = PolicyConfig::default();
    let withheld = gate(dir.path(), policy.clone());
    let (mut out, mut err) = (b"secret rows".to_vec(), Vec::new());
    let logs = Outgoing::Logs {
        job_id: "job-1",
        offsets: (0, 0),
        stdout: &mut out,
        stderr: &mut err,
    };
    let refused = withheld
        .pass(PeerId::random(), logs, &Release::Pending)
        .await
        .unwrap_err();
    assert_eq!(refused.reason, "withheld by bob's policy (logs = withhold)");
    assert!(out.is_empty(), "nothing is left in the buffer");

    policy.set("logs", "share").unwrap();
    policy.set("max_shared_log_bytes", "8").unwrap();
    let shared = gate(dir.path(), policy);
    let (mut out, mut err) = (b"0123456789".to_vec(), b"abc".to_vec());
    let logs = Outgoing::Logs {
        job_id: "job-1",
        offsets: (3, 0),
        stdout: &mut out,
        stderr: &mut err,
    };
    shared
        .pass(PeerId::random(), logs, &Release::Pending)
        .await
        .unwrap();
    assert_eq!((out.as_slice(), err.as_slice()), (&b"01234"[..], &b""[..]));
}

#[test]
fn review_needs_the_owner_and_aggregate_lets_nothing_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = PolicyConfig::default();
    policy.set("release", "review").unwrap();
    let review = gate(dir.path(), policy.clone());
    let by_owner = Release::Released {
        by: DecidedBy::Owner,
    };
    assert!(review.outputs_may_leave("job-1", &RELEASED).is_err());
    assert!(review.outputs_may_leave("job-1", &by_owner).is_ok());
    policy.set("release", "aggregate").unwrap();
    let aggregate = gate(dir.path(), policy);
    let refused = aggregate.outputs_may_leave("job-1", &by_owner).unwrap_err();
    assert!(refused.contains("secure aggregation"), "{refused}");
    // A name alone is held too: a name is a message.
    let (_, unnamed, held) = aggregate.report_outputs("job-1", &by_owner, vec![], vec!["b".into()]);
    assert!(unnamed.is_empty() && held.is_some());
}
