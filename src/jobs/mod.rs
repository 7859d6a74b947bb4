//! Jobs: a container image run on a set of nodes.
//!
//! The node that submits a job keeps its record ([`store`]) and sends each
//! target a `RunTask`; every node runs what it is given in its
//! [`runner`] and reports each change of state back with `TaskUpdate`.
//! Only the network's master may give tasks to other nodes; the event loop
//! checks that against the authenticated PeerId before a request gets here.

pub mod runner;
pub mod store;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use iris_behaviours::{
    libp2p::PeerId, ControlRequest, ControlResponse, Liveness, MapEntry, Role, TaskSpec, TaskState,
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::{
    events::{EventKind, Events},
    executor::Executor,
    network::NetworkClient,
};
use runner::{Delivery, TaskRunner};
use store::{Job, JobRequest, JobStore, Task};

/// How long to wait before sending an unacknowledged report again: it
/// doubles with each failure, up to [`MAX_REDELIVERY_DELAY`].
const REDELIVER_AFTER: Duration = Duration::from_secs(2);
const MAX_REDELIVERY_DELAY: Duration = Duration::from_secs(10);
/// Failed attempts after which a report waits for the next start (about
/// an hour of trying).
const MAX_DELIVERY_FAILURES: u32 = 360;

fn redelivery_delay(failures: u32) -> Duration {
    REDELIVER_AFTER
        .saturating_mul(1 << failures.min(16))
        .min(MAX_REDELIVERY_DELAY)
}

/// One node's answer to a session command.
#[derive(Debug, Clone, Serialize)]
pub struct NodeAnswer {
    pub node: String,
    pub ok: bool,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub truncated: bool,
}

impl NodeAnswer {
    fn new(node: String, answer: Result<ControlResponse, String>) -> Self {
        let mut out = Self {
            node,
            ok: true,
            error: None,
            exit_code: None,
            stdout: None,
            stderr: None,
            truncated: false,
        };
        match answer {
            Ok(ControlResponse::Exec {
                exit_code,
                stdout,
                stderr,
                truncated,
            }) => {
                out.ok = exit_code == Some(0);
                out.exit_code = exit_code;
                out.stdout = Some(String::from_utf8_lossy(&stdout).into_owned());
                out.stderr = Some(String::from_utf8_lossy(&stderr).into_owned());
                out.truncated = truncated;
            }
            Ok(ControlResponse::Refused { reason }) | Err(reason) => {
                out.ok = false;
                out.error = Some(reason);
            }
            Ok(_) => {}
        }
        out
    }
}

/// One task's output, as `GET /v1/jobs/:id/logs` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskLogs {
    pub node: String,
    pub state: TaskState,
    pub stdout: String,
    pub stderr: String,
    /// Offsets to ask from next time (for `--follow`).
    pub stdout_offset: u64,
    pub stderr_offset: u64,
}

pub struct Jobs {
    pub store: JobStore,
    executor: Arc<Executor>,
    pub runner: Arc<TaskRunner>,
    local: PeerId,
    events: Events,
    network: watch::Receiver<Option<NetworkClient>>,
}

impl Jobs {
    pub fn new(
        store: JobStore,
        executor: Arc<Executor>,
        runner: Arc<TaskRunner>,
        local: PeerId,
        events: Events,
        network: watch::Receiver<Option<NetworkClient>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            executor,
            runner,
            local,
            events,
            network,
        })
    }

    fn client(&self) -> Option<NetworkClient> {
        self.network.borrow().clone()
    }

    /// Validates a request and turns it into the spec every target runs.
    pub fn task_spec(job_id: &str, request: &JobRequest) -> Result<TaskSpec, String> {
        let mut env = Vec::new();
        for pair in &request.env {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("environment entry '{pair}' must be KEY=VALUE"))?;
            env.push((key.to_string(), value.to_string()));
        }
        let network = match request.network.as_deref() {
            None | Some("none") => None,
            Some(other) => Some(other.to_string()),
        };
        if !request.cpus.is_finite() || !request.timeout_secs.is_finite() {
            return Err("cpus and timeout must be finite numbers".into());
        }
        let spec = TaskSpec {
            job_id: job_id.to_string(),
            image: request.image.clone(),
            argv: request.argv.clone(),
            env,
            network,
            memory_bytes: i64::try_from(request.memory_mb.saturating_mul(1 << 20))
                .unwrap_or(i64::MAX),
            nano_cpus: (request.cpus * 1e9) as i64,
            pids_limit: 256,
            timeout_ms: (request.timeout_secs * 1000.0) as u64,
            inputs: request.inputs.clone(),
        };
        spec.validate_allowing_image_command()?;
        Ok(spec)
    }

    /// Records the job and hands each target its task. Returns the job as it
    /// stands once every target has accepted or refused.
    /// `ship`: the workspace path of this node's image tar, and the targets
    /// that lack the image and must fetch it first.
    pub async fn submit(
        &self,
        request: JobRequest,
        targets: Vec<(PeerId, String)>,
        ship: Option<(String, Vec<PeerId>)>,
    ) -> Result<Job, String> {
        let id = format!("job-{}", crate::store::random_hex(6));
        let spec = Self::task_spec(&id, &request)?;
        spec.validate()?;
        let tasks = targets
            .iter()
            .map(|(peer, name)| {
                let task = Task {
                    node: name.clone(),
                    peer_id: *peer,
                    state: TaskState::Queued,
                    exit_code: None,
                    started_ms: None,
                    finished_ms: None,
                    outputs: Vec::new(),
                    outputs_truncated: false,
                    error: None,
                };
                (name.clone(), task)
            })
            .collect();
        let job = Job {
            id: id.clone(),
            state: String::new(),
            request,
            created_ms: crate::now_ms(),
            tasks,
        };
        self.store.insert(job.with_state());
        // All targets at once: each waits only for its own acknowledgement.
        let dispatches = targets.into_iter().map(|(peer, _)| {
            let spec = spec.clone();
            let ship = ship
                .as_ref()
                .filter(|(_, to)| to.contains(&peer))
                .map(|(tar, _)| tar.clone());
            async move {
                let sent = if peer == self.local {
                    self.runner.submit(self.local, spec)
                } else {
                    match self.client() {
                        Some(client) => {
                            async {
                                if let Some(tar) = ship {
                                    // The target lacks the image: it pulls our tar
                                    // first (once; its record lists it afterwards).
                                    let fetch = ControlRequest::FetchFile {
                                        from: self.local,
                                        path: tar.clone(),
                                        dest: tar,
                                    };
                                    client
                                        .request(peer, fetch)
                                        .await
                                        .map_err(|e| format!("cannot ship the image: {e}"))?;
                                }
                                client
                                    .request(peer, ControlRequest::RunTask { spec })
                                    .await
                                    .map(|_| ())
                                    .map_err(|e| e.to_string())
                            }
                            .await
                        }
                        None => Err("this node is in no network".into()),
                    }
                };
                (peer, sent)
            }
        });
        for (peer, sent) in futures::future::join_all(dispatches).await {
            if let Err(error) = sent {
                self.fail_task(&id, peer, error);
            }
        }
        self.store.get(&id).ok_or_else(|| "the job vanished".into())
    }

    fn fail_task(&self, id: &str, peer: PeerId, error: String) {
        let job = self.store.update_task(id, peer, |task| {
            task.state = TaskState::Failed;
            task.finished_ms = Some(crate::now_ms());
            task.error = Some(error);
            true
        });
        self.announce_if_finished(job);
    }

    fn announce_if_finished(&self, job: Option<Job>) {
        if let Some(job) = job.filter(Job::finished) {
            self.events.emit(EventKind::JobFinished {
                job: job.id.clone(),
                state: job.state().to_string(),
            });
        }
    }

    /// Answers a peer's job request (authority already checked).
    pub async fn handle(&self, peer: PeerId, request: ControlRequest) -> ControlResponse {
        let result = match request {
            ControlRequest::RunTask { spec } => {
                self.runner.submit(peer, spec).map(|_| ControlResponse::Ack)
            }
            ControlRequest::CancelTask { job_id } => self
                .runner
                .cancel(&job_id, peer)
                .map(|_| ControlResponse::Ack),
            ControlRequest::FetchLogs {
                job_id,
                stdout_offset,
                stderr_offset,
            } => self
                .runner
                .logs(&job_id, peer, (stdout_offset, stderr_offset))
                .map(|(stdout, stderr)| ControlResponse::Logs { stdout, stderr }),
            ControlRequest::TaskUpdate { report } => {
                let job = self.store.apply(peer, report);
                self.announce_if_finished(job);
                Ok(ControlResponse::Ack)
            }
            ControlRequest::ContainerCreate { name, spec } => self
                .create_session(&name, spec)
                .await
                .map(|_| ControlResponse::Ack),
            ControlRequest::ContainerExec {
                name,
                argv,
                timeout_ms,
            } => self.exec(&name, argv, timeout_ms).await,
            ControlRequest::ContainerRemove { name } => self
                .remove_session(&name)
                .await
                .map(|_| ControlResponse::Ack),
            other => Err(format!("unexpected request {other:?}")),
        };
        result.unwrap_or_else(|reason| ControlResponse::Refused { reason })
    }

    /// Starts a session here.
    pub async fn create_session(&self, name: &str, spec: TaskSpec) -> Result<(), String> {
        iris_behaviours::validate_name("container name", name)?;
        spec.validate_allowing_image_command()?;
        self.executor
            .create_session(name, &spec)
            .await
            .map_err(|e| e.to_string())
    }

    /// Runs a command in a session here.
    pub async fn exec(
        &self,
        name: &str,
        argv: Vec<String>,
        timeout_ms: u64,
    ) -> Result<ControlResponse, String> {
        iris_behaviours::validate_name("container name", name)?;
        if argv.is_empty() {
            return Err("the command is empty: give it after `--`".into());
        }
        let timeout = Duration::from_millis(timeout_ms.clamp(1, 24 * 3600 * 1000));
        let limit = iris_behaviours::MAX_LOG_CHUNK;
        let out = self
            .executor
            .exec(name, &argv, timeout, limit)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ControlResponse::Exec {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            truncated: out.truncated,
        })
    }

    pub async fn remove_session(&self, name: &str) -> Result<(), String> {
        iris_behaviours::validate_name("container name", name)?;
        self.executor
            .remove_session(name)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a session request to every target (this node included) and
    /// gathers each node's answer.
    pub async fn on_targets(
        &self,
        targets: Vec<(PeerId, String)>,
        request: ControlRequest,
    ) -> Vec<NodeAnswer> {
        let calls = targets.into_iter().map(|(peer, node)| {
            let request = request.clone();
            async move {
                let answer = if peer == self.local {
                    Ok(self.handle(peer, request).await)
                } else {
                    match self.client() {
                        Some(client) => client
                            .request(peer, request)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Err("this node is in no network".to_string()),
                    }
                };
                NodeAnswer::new(node, answer)
            }
        });
        futures::future::join_all(calls).await
    }

    /// Passes the runner's reports to the nodes that asked for the tasks,
    /// again until they are acknowledged, waiting longer after each failure.
    /// A report is given up when its node has left the network, or after
    /// [`MAX_DELIVERY_FAILURES`]; it stays on disk, unacknowledged, and the
    /// next start of this node sends it again.
    pub async fn deliver(
        self: Arc<Self>,
        mut deliveries: mpsc::UnboundedReceiver<Delivery>,
        retry: mpsc::UnboundedSender<Delivery>,
    ) {
        while let Some(delivery) = deliveries.recv().await {
            let Delivery {
                origin,
                report,
                failures,
            } = delivery.clone();
            if origin == self.local {
                let job = self.store.apply(origin, report.clone());
                self.announce_if_finished(job);
                self.runner.delivered(&report);
                continue;
            }
            let jobs = self.clone();
            let retry = retry.clone();
            tokio::spawn(async move {
                // Not in a network (yet: a restarting node delivers before
                // it has rejoined) counts as a failed attempt.
                let client = jobs.client();
                if let Some(client) = &client {
                    let request = ControlRequest::TaskUpdate {
                        report: report.clone(),
                    };
                    if client.request(origin, request).await.is_ok() {
                        return jobs.runner.delivered(&report);
                    }
                }
                let left = match &client {
                    Some(client) => client.snapshot().await.is_ok_and(|snapshot| {
                        snapshot
                            .map
                            .iter()
                            .any(|e| e.record.peer_id == origin && e.state == Liveness::Left)
                    }),
                    None => false,
                };
                let give_up = if left {
                    Some("it left the network".to_string())
                } else if failures + 1 >= MAX_DELIVERY_FAILURES {
                    Some(format!("{MAX_DELIVERY_FAILURES} attempts failed"))
                } else {
                    None
                };
                if let Some(why) = give_up {
                    return tracing::warn!(
                        job = %report.job_id,
                        "dropped the report of job {} for {origin}: {why}",
                        report.job_id
                    );
                }
                tokio::time::sleep(redelivery_delay(failures)).await;
                let _ = retry.send(Delivery {
                    failures: failures + 1,
                    ..delivery
                });
            });
        }
    }

    /// Marks a departed node's unfinished tasks lost.
    pub fn node_gone(&self, peer: PeerId, reason: &str) {
        for job in self.store.node_lost(peer, reason) {
            self.announce_if_finished(Some(job));
        }
    }

    pub async fn cancel(&self, id: &str) -> Result<Job, String> {
        let job = self.store.get(id).ok_or_else(|| format!("no job {id}"))?;
        for task in job.tasks.values().filter(|t| !t.state.is_terminal()) {
            let result = if task.peer_id == self.local {
                self.runner.cancel(id, self.local)
            } else if let Some(client) = self.client() {
                let request = ControlRequest::CancelTask {
                    job_id: id.to_string(),
                };
                client
                    .request(task.peer_id, request)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                Err("this node is in no network".into())
            };
            if let Err(e) = result {
                // The node cannot be told; the job should not wait on it.
                tracing::warn!(job = %id, node = %task.node, "cancel not delivered: {e}");
                self.store.update_task(id, task.peer_id, |t| {
                    t.state = TaskState::Cancelled;
                    t.finished_ms = Some(crate::now_ms());
                    t.error = Some(format!("cancelled here; the node could not be told: {e}"));
                    true
                });
            }
        }
        self.store.get(id).ok_or_else(|| format!("no job {id}"))
    }

    pub async fn logs(
        &self,
        id: &str,
        node: Option<&str>,
        offsets: (u64, u64),
    ) -> Result<Vec<TaskLogs>, String> {
        let job = self.store.get(id).ok_or_else(|| format!("no job {id}"))?;
        if let Some(node) = node {
            if !job.tasks.contains_key(node) {
                return Err(format!("job {id} has no task on node '{node}'"));
            }
        }
        let mut all = Vec::new();
        for task in job
            .tasks
            .values()
            .filter(|t| node.is_none_or(|n| n == t.node))
        {
            let (stdout, stderr) = if task.peer_id == self.local {
                self.runner.logs(id, self.local, offsets)?
            } else {
                let client = self.client().ok_or("this node is in no network")?;
                let request = ControlRequest::FetchLogs {
                    job_id: id.to_string(),
                    stdout_offset: offsets.0,
                    stderr_offset: offsets.1,
                };
                match client.request(task.peer_id, request).await {
                    Ok(ControlResponse::Logs { stdout, stderr }) => (stdout, stderr),
                    Ok(_) => return Err(format!("{} sent no logs", task.node)),
                    Err(e) => return Err(format!("cannot fetch logs from {}: {e}", task.node)),
                }
            };
            all.push(TaskLogs {
                node: task.node.clone(),
                state: task.state,
                stdout_offset: offsets.0 + stdout.len() as u64,
                stderr_offset: offsets.1 + stderr.len() as u64,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            });
        }
        Ok(all)
    }
}

/// Which nodes `--on` names, among the alive ones. `any` keeps the least
/// loaded one, so a tag or a list acts as one load-balanced cluster.
pub fn resolve_targets(
    on: &str,
    any: bool,
    map: &[MapEntry],
    load: &BTreeMap<PeerId, usize>,
) -> Result<Vec<(PeerId, String)>, String> {
    let alive = |e: &&MapEntry| e.state == Liveness::Alive;
    let mut chosen: Vec<&MapEntry> = match on.split_once(':') {
        _ if on == "all" => map.iter().filter(alive).collect(),
        Some(("role", role)) => {
            let role = match role {
                "master" => Role::Master,
                "slave" => Role::Slave,
                other => {
                    return Err(format!(
                        "unknown role '{other}': use role:master or role:slave"
                    ))
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
        Some((kind, _)) => {
            return Err(format!(
                "unknown target '{kind}:': use all, names, role:R or tag:T"
            ))
        }
        None => {
            let mut named = Vec::new();
            for name in on.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let entry = map
                    .iter()
                    .find(|e| e.record.name == name)
                    .ok_or_else(|| format!("no node named '{name}' in the network"))?;
                if entry.state != Liveness::Alive {
                    return Err(format!("node '{name}' is {}", entry.state));
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
        return Err(format!("no alive node matches --on {on}"));
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
                tags: tags.iter().map(|t| t.to_string()).collect(),
                executor: Default::default(),
                images: vec![],
                version: 1,
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
            .contains("suspect"));
        assert!(resolve_targets("zoe", false, &map, &load)
            .unwrap_err()
            .contains("no node named"));
        assert!(resolve_targets("tag:tpu", false, &map, &load)
            .unwrap_err()
            .contains("no alive node"));
        assert!(resolve_targets("role:king", false, &map, &load).is_err());
        assert!(resolve_targets("zone:x", false, &map, &load).is_err());
    }

    #[test]
    fn redelivery_backs_off_to_ten_seconds_and_gives_up_within_about_an_hour() {
        assert_eq!(redelivery_delay(0), Duration::from_secs(2));
        assert_eq!(redelivery_delay(1), Duration::from_secs(4));
        assert_eq!(redelivery_delay(40), MAX_REDELIVERY_DELAY);
        let total: Duration = (0..MAX_DELIVERY_FAILURES).map(redelivery_delay).sum();
        assert!(total > Duration::from_secs(50 * 60), "{total:?}");
        assert!(total < Duration::from_secs(70 * 60), "{total:?}");
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
