//! `/metrics`: what a node has done and holds, in the Prometheus text
//! format. docs/metrics.md lists every metric.
//!
//! Two kinds of figures. Counters of what happened (messages, requests,
//! transfers, task durations) live in [`Metrics`], which the parts of the
//! node share and bump as things happen. Figures of what the node holds
//! now (nodes by state, jobs, pending approvals, the audit chain) are read
//! from the node at each scrape, so they cannot drift from what the API
//! shows. The API's handler reads them ([`Held`]), so this module needs
//! nothing of the node.

use iris_behaviours::{Liveness, ProtocolTraffic, TaskState};
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// One metric's labels, as `(name, value)` pairs.
type Labels = Vec<(&'static str, String)>;

/// What the parts of a node count as they work; clones share the counts.
#[derive(Clone)]
pub struct Metrics {
    /// Messages and bytes by protocol, counted where they are framed.
    pub traffic: ProtocolTraffic,
    /// REST requests by outcome: served (2xx/3xx), refused (4xx), failed
    /// (5xx).
    api_requests: Family<Labels, Counter>,
    /// Requests from peers answered by outcome: served, refused.
    peer_requests: Family<Labels, Counter>,
    /// How long the tasks this node ran took, from start to end.
    task_seconds: Histogram,
    /// File transfers into this node by outcome: done, failed.
    transfers: Family<Labels, Counter>,
    transfers_active: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            traffic: ProtocolTraffic::default(),
            api_requests: outcomes(&["served", "refused", "failed"]),
            peer_requests: outcomes(&["served", "refused"]),
            // 0.1 s to about 55 min, doubling.
            task_seconds: Histogram::new(exponential_buckets(0.1, 2.0, 16)),
            transfers: outcomes(&["done", "failed"]),
            transfers_active: Gauge::default(),
        }
    }
}

/// Counters by outcome, each at 0 until it happens (a series that appears
/// only once something went wrong is one an alert cannot watch).
fn outcomes(names: &[&str]) -> Family<Labels, Counter> {
    let family = Family::default();
    for name in names {
        let _ = family.get_or_create(&outcome_label(name));
    }
    family
}

fn outcome_label(outcome: &str) -> Labels {
    vec![("outcome", outcome.to_string())]
}

impl Metrics {
    /// A REST request was answered with `status`.
    pub fn api_request(&self, status: u16) {
        let outcome = match status {
            ..400 => "served",
            400..500 => "refused",
            _ => "failed",
        };
        self.api_requests
            .get_or_create(&outcome_label(outcome))
            .inc();
    }

    /// A peer's request was answered; `refused` if with a refusal.
    pub fn peer_request(&self, refused: bool) {
        let outcome = if refused { "refused" } else { "served" };
        self.peer_requests
            .get_or_create(&outcome_label(outcome))
            .inc();
    }

    /// A task this node ran has ended after `seconds`.
    pub fn task_ended(&self, seconds: f64) {
        self.task_seconds.observe(seconds);
    }

    /// A transfer into this node began; dropping the guard ends it, as
    /// failed unless [`TransferGuard::done`] was called.
    pub fn transfer(&self) -> TransferGuard {
        self.transfers_active.inc();
        TransferGuard {
            metrics: self.clone(),
            done: false,
        }
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self, held: &Held) -> String {
        let mut registry = Registry::with_prefix("iris");
        self.register_counted(&mut registry);
        held.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }

    fn register_counted(&self, registry: &mut Registry) {
        let messages = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter>::default();
        for (protocol, counts) in self.traffic.counts() {
            for (direction, n_messages, n_bytes) in [
                ("in", counts.messages_in, counts.bytes_in),
                ("out", counts.messages_out, counts.bytes_out),
            ] {
                let labels = vec![
                    ("protocol", protocol.to_string()),
                    ("direction", direction.to_string()),
                ];
                messages.get_or_create(&labels).inc_by(n_messages);
                bytes.get_or_create(&labels).inc_by(n_bytes);
            }
        }
        registry.register(
            "messages",
            "Messages exchanged with peers, by protocol and direction",
            messages,
        );
        registry.register(
            "bytes",
            "Bytes exchanged with peers (framing included), by protocol and direction",
            bytes,
        );
        registry.register(
            "api_requests",
            "REST API requests answered, by outcome",
            self.api_requests.clone(),
        );
        registry.register(
            "peer_requests",
            "Requests from peers answered, by outcome",
            self.peer_requests.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "How long the tasks this node ran took",
            self.task_seconds.clone(),
        );
        registry.register(
            "transfers",
            "File transfers into this node that ended, by outcome",
            self.transfers.clone(),
        );
        registry.register(
            "transfers_active",
            "File transfers into this node in progress",
            self.transfers_active.clone(),
        );
    }
}

/// What the node holds at the moment of a scrape.
#[derive(Debug, Default)]
pub struct Held {
    /// The state of each node of the map.
    pub nodes: Vec<Liveness>,
    /// The state of each job this node submitted, as the API names it,
    /// and every state a job can be in (each is shown, none or not).
    pub jobs: Vec<String>,
    pub job_states: Vec<String>,
    /// The state of each task of those jobs.
    pub tasks: Vec<TaskState>,
    pub pending_approvals: usize,
    pub pending_releases: usize,
    pub audit_entries: u64,
    /// Whether the Docker engine answered at the last check.
    pub engine_available: bool,
}

impl Held {
    fn register(&self, registry: &mut Registry) {
        let all_nodes = [
            Liveness::Alive,
            Liveness::Suspect,
            Liveness::Gone,
            Liveness::Left,
        ];
        registry.register(
            "nodes",
            "Nodes of this node's map, by state",
            gauges(&all_nodes, &self.nodes),
        );
        registry.register(
            "jobs",
            "Jobs this node submitted, by state",
            gauges(&self.job_states, &self.jobs),
        );
        registry.register(
            "tasks",
            "Tasks of the jobs this node submitted, by state",
            gauges(&TaskState::ALL, &self.tasks),
        );
        for (name, help, value) in [
            (
                "pending_approvals",
                "Other nodes' tasks waiting for this node's owner to approve their image",
                self.pending_approvals as i64,
            ),
            (
                "pending_releases",
                "Task outputs held for this node's owner to release",
                self.pending_releases as i64,
            ),
            (
                "audit_entries",
                "Entries in this node's audit chain",
                self.audit_entries as i64,
            ),
            (
                "engine_available",
                "1 if the Docker engine answered at the last check (every 2 s), else 0",
                self.engine_available as i64,
            ),
        ] {
            let gauge = Gauge::<i64>::default();
            gauge.set(value);
            registry.register(name, help, gauge);
        }
    }
}

/// A gauge per state: how many of `values` are in each; every state in
/// `all` appears, with 0 if none is in it.
fn gauges<S: ToString>(all: &[S], values: &[S]) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    for state in all {
        let _ = family.get_or_create(&vec![("state", state.to_string())]);
    }
    for value in values {
        family
            .get_or_create(&vec![("state", value.to_string())])
            .inc();
    }
    family
}

/// A transfer in progress, for [`Metrics::transfer`].
pub struct TransferGuard {
    metrics: Metrics,
    done: bool,
}

impl TransferGuard {
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.metrics.transfers_active.dec();
        let outcome = if self.done { "done" } else { "failed" };
        self.metrics
            .transfers
            .get_or_create(&outcome_label(outcome))
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_figures_appear_in_the_text() {
        let metrics = Metrics::default();
        metrics.traffic.control.sent(100);
        metrics.api_request(200);
        metrics.api_request(401);
        metrics.peer_request(true);
        metrics.task_ended(1.5);
        metrics.transfer().done();
        drop(metrics.transfer());
        let mut registry = Registry::with_prefix("iris");
        metrics.register_counted(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"iris_bytes_total{protocol="control",direction="out"} 100"#,
            r#"iris_messages_total{protocol="control",direction="out"} 1"#,
            r#"iris_api_requests_total{outcome="served"} 1"#,
            r#"iris_api_requests_total{outcome="refused"} 1"#,
            r#"iris_peer_requests_total{outcome="refused"} 1"#,
            "iris_task_duration_seconds_count 1",
            r#"iris_transfers_total{outcome="done"} 1"#,
            r#"iris_transfers_total{outcome="failed"} 1"#,
            "iris_transfers_active 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
