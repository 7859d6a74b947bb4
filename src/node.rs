//! The node: it starts its services, one per capability, hands them out,
//! and stops them. Nothing here knows about HTTP or the wire.
//!
//! - [`Membership`]: create, join, leave, the map, who is out there;
//! - [`Jobs`]: jobs submitted here, and tasks run here for others;
//! - [`Sessions`]: long-lived containers;
//! - [`Files`]: serving and fetching workspace files;
//! - [`ImageLibrary`]: the image tars in the workspace;
//! - [`Witness`]: checks that the other members' audit logs only grow.
//!
//! Peers' requests reach them through the [`Router`]. The background tasks
//! (the image watcher, report delivery, the router, the departure watch)
//! run under one cancellation token and end together at shutdown.

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    api_types::Status,
    audit::{AuditLog, SavedFile},
    config::{NodeConfig, CONFIG_FILE},
    egress::Egress,
    events::Events,
    executor::{Executor, TaskLimits, Workspace},
    files::Files,
    images::ImageLibrary,
    jobs::{deliver::Courier, runner::TaskRunner, store::JobStore, Jobs},
    membership::Membership,
    network::{Capabilities, NetworkContext, NodeSettings},
    peer::Router,
    policy::Policy,
    secagg::SecureSums,
    sessions::Sessions,
    store::{Recovered, StagedFile, Store},
    witness::Witness,
};
use iris_behaviours::{proxy::Proxy, SwarmSettings};

use crate::{datasets::Datasets, metrics::Metrics};

/// How long background tasks get to end at shutdown.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

pub struct Node {
    pub membership: Arc<Membership>,
    /// What touched this node's private data ([`crate::audit`]).
    pub audit: Arc<AuditLog>,
    /// The data owner's policy ([`crate::policy`]).
    pub policy: Arc<Policy>,
    pub jobs: Arc<Jobs>,
    pub sessions: Arc<Sessions>,
    pub files: Arc<Files>,
    pub images: Arc<ImageLibrary>,
    /// This node's part in secure sums, and the sums it asks for.
    pub sums: Arc<SecureSums>,
    /// The datasets its owner declared ([`crate::datasets`]).
    pub datasets: Arc<Datasets>,
    /// The one egress gate, which also keeps the privacy budgets' ledger.
    pub egress: Arc<Egress>,
    /// What it counts for `/metrics`.
    pub metrics: Metrics,
    events: Events,
    config: NodeConfig,
    shutdown: CancellationToken,
    tasks: tokio::sync::Mutex<JoinSet<&'static str>>,
    /// Carries task reports; its deliveries are stopped at shutdown.
    courier: Arc<Courier>,
    /// Turns true once [`Node::shutdown`] has finished.
    stopped: watch::Sender<bool>,
}

impl Node {
    /// Loads the node in `dir` and, if it belonged to a network when it
    /// stopped, rejoins it.
    pub async fn start(dir: &Path) -> anyhow::Result<Arc<Node>> {
        // Before anything reads them: the owner's changes that a crash cut
        // short are in force if the audit log recorded them, gone if not.
        finish_changes_cut_short(dir)
            .map_err(|e| anyhow::anyhow!("cannot finish a change cut short by a crash: {e}"))?;
        let config = NodeConfig::load(dir)?;
        let store = Store::new(dir);
        let keypair = store.load_identity()?;
        let saved = store.load_membership()?;
        let events = Events::default();
        let workspace_dir = config.workspace_dir(dir);
        let local = std::fs::canonicalize(&workspace_dir).map_err(|e| {
            anyhow::anyhow!(
                "workspace {} is missing ({e}); run `iris init`",
                workspace_dir.display()
            )
        })?;
        let host = config.workspace.host_path.clone().unwrap_or(local.clone());
        let workspace = Workspace { host, local };
        let peer_id = keypair.public().to_peer_id();
        // Each step of the start is logged: a restarted node in a test once
        // logged nothing at all for 30 s, and the next one must say where.
        let started = std::time::Instant::now();
        tracing::debug!("starting: asking the Docker engine for its version");
        let executor = Arc::new(
            Executor::connect(peer_id.to_string(), workspace.clone(), None)
                .await
                .with_limits(TaskLimits {
                    max_log_bytes: config.jobs.max_log_bytes,
                    max_output_bytes: config.jobs.max_output_bytes,
                }),
        );
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "starting: the Docker engine answered; removing orphaned job containers"
        );
        match executor.remove_orphans().await {
            Ok(jobs) if !jobs.is_empty() => {
                tracing::warn!("removed containers left from an earlier run: jobs {jobs:?}")
            }
            _ => {}
        }

        let capabilities = watch::Sender::new(Capabilities::default());
        let (inbound, inbound_queue) = tokio::sync::mpsc::channel(256);
        let (inbound_streams, stream_queue) = tokio::sync::mpsc::channel(64);
        let metrics = Metrics::default();
        let settings = SwarmSettings {
            traffic: metrics.traffic.clone(),
            proxy: config
                .p2p
                .proxy()
                .map_err(anyhow::Error::msg)?
                .map(|(addr, credentials)| Proxy { addr, credentials }),
            ..Default::default()
        };
        let membership = Membership::new(Arc::new(NetworkContext {
            keypair: keypair.clone(),
            config: network_settings(&config),
            store,
            events: events.clone(),
            settings,
            capabilities: capabilities.clone(),
            inbound,
            inbound_streams,
            activity: Default::default(),
            metrics: metrics.clone(),
            tasks: Default::default(),
        }));
        let images = ImageLibrary::new(
            executor.clone(),
            workspace.image_dir(),
            capabilities.clone(),
            events.clone(),
        );
        let files = Files::new(
            workspace.local.clone(),
            membership.clone(),
            images.clone(),
            events.clone(),
            metrics.clone(),
        );
        let (deliveries, delivery_queue) = tokio::sync::mpsc::unbounded_channel();
        let audit = Arc::new(AuditLog::open(dir.join("audit.log"), keypair.clone())?);
        let datasets = Datasets::open(
            dir,
            workspace.local.clone(),
            capabilities.clone(),
            audit.clone(),
        );
        let node_dir = dir.to_path_buf();
        let policy = Policy::new(
            config.name.clone(),
            Box::new(move |policy| NodeConfig::stage_policy(&node_dir, policy)),
            config.policy.clone(),
            audit.clone(),
        );
        // Every spend of a privacy budget is an audit entry: the ledger is
        // read back from the log (and privacy.json, which outlives a log).
        let ledger = crate::privacy::PrivacyLedger::open(
            dir.join("privacy.json"),
            &crate::audit::read(audit.path())?,
        )
        .map_err(anyhow::Error::msg)?;
        let egress = Egress::new(policy.clone(), audit.clone(), ledger);
        let runner = TaskRunner::new(
            executor.clone(),
            egress.clone(),
            events.clone(),
            metrics.clone(),
            datasets.clone(),
            peer_id,
            dir.join("tasks"),
            config.jobs.max_concurrent,
            deliveries.clone(),
        );
        let courier = Courier::new(membership.clone(), runner.clone());
        let job_store = JobStore::open(dir.join("jobs"))
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.join("jobs").display()))?;
        let sums = SecureSums::new(
            keypair,
            runner.clone(),
            workspace.clone(),
            egress.clone(),
            membership.clone(),
        );
        let jobs = Jobs::new(
            job_store,
            runner.clone(),
            membership.clone(),
            files.clone(),
            images.clone(),
            events.clone(),
        );
        let sessions = Sessions::new(executor, membership.clone(), egress.clone());
        let router = Router::new(
            audit.clone(),
            jobs.clone(),
            sessions.clone(),
            files.clone(),
            egress.clone(),
            sums.clone(),
        );

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut supervise =
            |name: &'static str, task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
                let token = shutdown.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        _ = task => tracing::warn!("{name} ended on its own"),
                        _ = token.cancelled() => {}
                    }
                    name
                });
            };
        supervise("image watcher", Box::pin(images.clone().watch()));
        supervise(
            "audit head",
            Box::pin(publish_audit_head(audit.subscribe(), capabilities.clone())),
        );
        supervise(
            "report delivery",
            Box::pin(courier.clone().run(delivery_queue, deliveries)),
        );
        supervise("departure watch", Box::pin(jobs.clone().watch_departures()));
        supervise("deadline watch", Box::pin(jobs.clone().watch_deadlines()));
        supervise(
            "warm workers",
            Box::pin(runner.clone().watch_warm_workers()),
        );
        supervise(
            "audit witness",
            Box::pin(
                Witness::open(dir.join("witnessed.json")).run(membership.clone(), events.clone()),
            ),
        );
        supervise(
            "router",
            Box::pin(router.clone().run(inbound_queue, shutdown.clone())),
        );
        supervise(
            "chunk streams",
            Box::pin(router.serve_chunks(stream_queue, shutdown.clone())),
        );
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "starting: recovering this node's tasks"
        );
        runner.recover().await;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "starting: services up"
        );

        if let Some(saved) = saved {
            let name = saved.network.name.clone();
            membership
                .resume(saved)
                .await
                .map_err(|e| anyhow::anyhow!("cannot rejoin network '{name}': {e}"))?;
        }
        // The tasks a shutdown kept this node from handing out go now.
        let (handing, token) = (jobs.clone(), shutdown.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = handing.hand_out_queued() => {}
                _ = token.cancelled() => {}
            }
            "hand-out of queued tasks"
        });
        Ok(Arc::new(Node {
            audit,
            policy,
            membership,
            jobs,
            sessions,
            files,
            images,
            sums,
            datasets,
            egress,
            metrics,
            events,
            config,
            shutdown,
            tasks: tokio::sync::Mutex::new(tasks),
            courier,
            stopped: watch::Sender::new(false),
        }))
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// This node, as `GET /v1/status` shows it.
    pub async fn status(&self) -> Status {
        self.membership.status(self.images.executor_state()).await
    }

    /// Says goodbye to the network for now (the map is saved), then ends
    /// every background task and waits for them.
    pub async fn shutdown(&self) {
        // Marks the node as stopping first (`is_shutting_down`).
        self.membership.shut_down().await;
        self.shutdown.cancel();
        let mut tasks = self.tasks.lock().await;
        let ended = tokio::time::timeout(STOP_DEADLINE, async {
            while let Some(ended) = tasks.join_next().await {
                match ended {
                    Ok(name) => tracing::debug!("{name} stopped"),
                    Err(e) => tracing::error!("a background task failed: {e}"),
                }
            }
            // What the services spawned: tasks being run (their containers
            // are found again at the next start), reports on their way,
            // fetches for other nodes.
            tokio::join!(
                self.jobs.runner.stop(),
                self.courier.stop(),
                self.files.stop()
            );
        })
        .await;
        match ended {
            Ok(()) => tracing::info!("every background task ended"),
            Err(_) => {
                tracing::warn!("background tasks did not stop in time; aborting them");
                tasks.shutdown().await;
            }
        }
        self.stopped.send_replace(true);
    }

    /// Whether [`Node::shutdown`] has begun: what is asked of the node now
    /// would meet services half stopped (a network already left, say).
    pub fn is_shutting_down(&self) -> bool {
        self.membership.is_stopping()
    }

    /// Resolves once [`Node::shutdown`] has finished.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// Puts the audit log's signed head into the node's record after every
/// append, so other members can tell if the log is ever rewritten.
async fn publish_audit_head(
    mut heads: watch::Receiver<iris_behaviours::AuditHead>,
    capabilities: watch::Sender<Capabilities>,
) {
    loop {
        let head = heads.borrow_and_update().clone();
        capabilities.send_modify(|c| c.audit = Some(head));
        if heads.changed().await.is_err() {
            return;
        }
    }
}

/// What the network needs of `config`.
fn network_settings(config: &NodeConfig) -> NodeSettings {
    NodeSettings {
        name: config.name.clone(),
        tags: config.tags.clone(),
        api_port: config.api.port,
        listen: config.p2p.listen,
        p2p_port: config.p2p.port,
        external: config.p2p.external.clone(),
        serve_relay: match config.p2p.relay {
            crate::config::RelayMode::Auto => None,
            mode => Some(mode.serves(false)),
        },
        probe_interval: config.liveness.probe_interval(),
        suspect_after: config.liveness.suspect_after(),
        gone_after: config.liveness.gone_after(),
    }
}

/// A site's secure sums learn of its tasks from the task runner.
impl crate::secagg::SiteTasks for TaskRunner {
    fn task_of<'a>(
        &'a self,
        job_id: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<crate::secagg::SiteTask>> {
        Box::pin(async move {
            let task = TaskRunner::task_of(self, job_id).await?;
            Some(crate::secagg::SiteTask {
                origin: task.origin,
                state: task.report.state,
                release: task.release,
                dataset: task.spec.dataset,
            })
        })
    }
}

/// The owner's changes that a crash cut short, for the config, the
/// datasets' index and every file the audit log recorded a change of: the
/// content left beside a file goes in place if the log recorded its hash
/// last, and is removed if not (`audit/recovery.rs`).
fn finish_changes_cut_short(dir: &Path) -> std::io::Result<()> {
    let recorded = crate::audit::last_recorded(&dir.join("audit.log"));
    let owned = [CONFIG_FILE, crate::datasets::INDEX_FILE].map(|f| dir.join(f));
    let mut files: Vec<String> = owned
        .iter()
        .filter_map(|f| SavedFile::name_of(f).ok())
        .chain(recorded.keys().cloned())
        .collect();
    files.sort();
    files.dedup();
    for file in files {
        let hash = recorded.get(&file).map(String::as_str);
        for done in StagedFile::recover(Path::new(&file), hash)? {
            match done {
                Recovered::PutInPlace(from) => tracing::warn!(
                    "a change the audit log recorded was cut short by a crash: put {} in place",
                    from.display()
                ),
                Recovered::Removed(from) => tracing::info!(
                    "removed {}, left by a crash before its change was recorded",
                    from.display()
                ),
            }
        }
    }
    Ok(())
}
