//! The node: its identity and config, and its membership of at most one
//! network at a time. The REST API calls these methods; nothing here knows
//! about HTTP.

use std::{path::Path, sync::Arc, time::Duration};

use iris_behaviours::{
    libp2p::{Multiaddr, PeerId},
    ControlRequest, ControlResponse, Departure, Liveness, MapEntry, NetworkConfig, NetworkMode,
    Role, SwarmSettings,
};
use serde::Serialize;

use crate::{
    config::NodeConfig,
    events::{EventKind, Events},
    executor::{Executor, Workspace},
    files::{Files, Transfer},
    images::{Capabilities, ImageLibrary},
    jobs::{
        resolve_targets,
        runner::TaskRunner,
        store::{Job, JobRequest, JobStore},
        Jobs, NodeAnswer, TaskLogs,
    },
    network::{self, NetworkClient, NetworkContext, NetworkError, Snapshot},
    store::{Store, StoreError},
};

/// Why a request to the node failed. The API maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("this node is in no network: create one with `iris network create` or join one with `iris network join`")]
    NotInNetwork,
    #[error("this node is already in network '{0}': leave it first with `iris network leave`")]
    AlreadyInNetwork(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One node of the map, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    pub peer_id: PeerId,
    pub role: Role,
    pub state: Liveness,
    /// Dialable addresses, each ending in `/p2p/<peer id>`.
    pub addrs: Vec<Multiaddr>,
    pub api_port: u16,
    pub p2p_port: u16,
    pub tags: Vec<String>,
    pub version: u64,
    /// Unix time in milliseconds when this node last heard from it.
    pub last_seen: u64,
    /// Whether it is the node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Whether the node answering has a direct connection to it.
    pub connected: bool,
    pub executor: iris_behaviours::ExecutorState,
    pub images: Vec<iris_behaviours::ImageRef>,
}

/// This node, as `GET /v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub peer_id: PeerId,
    pub addrs: Vec<Multiaddr>,
    pub p2p_port: u16,
    pub api_port: u16,
    pub tags: Vec<String>,
    pub network: Option<NetworkConfig>,
    pub role: Option<Role>,
    /// "available", or "unavailable (why)".
    pub executor: String,
}

/// The images this node's engine has.
#[derive(Debug, Clone, Serialize)]
pub struct Images {
    pub executor: String,
    pub images: Vec<iris_behaviours::ImageRef>,
}

/// The answer to an image load.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedImage {
    /// Where the tar now is, in workspace/image.
    pub file: String,
    pub loaded: Vec<String>,
}

/// The answer to a create or a join.
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub network: NetworkConfig,
    pub role: Role,
    /// Where others can join through this node.
    pub addrs: Vec<Multiaddr>,
    pub nodes: Vec<NodeView>,
}

pub struct Node {
    ctx: Arc<NetworkContext>,
    executor: Arc<Executor>,
    images: Arc<ImageLibrary>,
    /// Serializes create, join and leave.
    membership_change: tokio::sync::Mutex<()>,
    jobs: Arc<Jobs>,
    files: Arc<Files>,
    network: tokio::sync::watch::Sender<Option<NetworkClient>>,
    /// Turns true when the node shuts down, so long-lived streams end.
    stopped: tokio::sync::watch::Sender<bool>,
}

impl Node {
    /// Loads the node in `dir` and, if it belonged to a network when it
    /// stopped, rejoins it.
    pub async fn start(dir: &Path) -> anyhow::Result<Arc<Node>> {
        let config = NodeConfig::load(dir)?;
        let store = Store::new(dir);
        let keypair = store.load_identity()?;
        let membership = store.load_membership()?;
        let settings = SwarmSettings {
            // Ping a little faster than the heartbeat so a hung peer's
            // connection is closed soon after it turns suspect.
            ping_interval: config.liveness.heartbeat(),
            ping_timeout: config.liveness.suspect_after(),
            ..SwarmSettings::default()
        };
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
        let executor =
            Arc::new(Executor::connect(peer_id.to_string(), workspace.clone(), None).await);
        match executor.remove_orphans().await {
            Ok(jobs) if !jobs.is_empty() => {
                tracing::warn!("removed containers left from an earlier run: jobs {jobs:?}")
            }
            _ => {}
        }
        let capabilities = tokio::sync::watch::Sender::new(Capabilities::default());
        let images = ImageLibrary::new(
            executor.clone(),
            workspace.local.join("image"),
            capabilities.clone(),
            events.clone(),
        );
        tokio::spawn(images.clone().watch());

        let network = tokio::sync::watch::Sender::new(None);
        let (deliveries, delivery_queue) = tokio::sync::mpsc::unbounded_channel();
        let runner = TaskRunner::new(
            executor.clone(),
            dir.join("tasks"),
            config.jobs.max_concurrent,
            deliveries.clone(),
        );
        let job_store = JobStore::open(dir.join("jobs"))
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.join("jobs").display()))?;
        let jobs = Jobs::new(
            job_store,
            executor.clone(),
            runner.clone(),
            peer_id,
            events.clone(),
            network.subscribe(),
        );
        tokio::spawn(jobs.clone().deliver(delivery_queue, deliveries));
        runner.recover();
        let (inbound, inbound_queue) = tokio::sync::mpsc::channel(256);
        let files = Files::new(workspace.local.clone(), network.subscribe(), events.clone());
        tokio::spawn(answer_inbound(
            jobs.clone(),
            files.clone(),
            images.clone(),
            inbound_queue,
        ));
        tokio::spawn(watch_departures(jobs.clone(), events.subscribe()));

        let ctx = Arc::new(NetworkContext {
            keypair,
            config,
            store,
            events,
            settings,
            capabilities,
            inbound,
        });
        let node = Arc::new(Node {
            ctx: ctx.clone(),
            executor,
            images,
            jobs,
            files,
            membership_change: tokio::sync::Mutex::new(()),
            network,
            stopped: tokio::sync::watch::Sender::new(false),
        });
        if let Some(membership) = membership {
            let name = membership.network.name.clone();
            let (client, _) = network::resume(ctx, membership)
                .await
                .map_err(|e| anyhow::anyhow!("cannot rejoin network '{name}': {e}"))?;
            node.set_network(Some(client));
        }
        Ok(node)
    }

    pub fn events(&self) -> &Events {
        &self.ctx.events
    }

    pub fn config(&self) -> &NodeConfig {
        &self.ctx.config
    }

    fn client(&self) -> Option<NetworkClient> {
        self.network.borrow().clone()
    }

    fn set_network(&self, client: Option<NetworkClient>) {
        self.network.send_replace(client);
    }

    /// Submits a job to the nodes `request.on` names; returns once every
    /// target has accepted (or refused) its task.
    pub async fn submit_job(&self, request: JobRequest) -> Result<Job, NodeError> {
        let map = match self.snapshot().await {
            Ok(snapshot) => snapshot.map,
            // Alone, a node can still run jobs on itself.
            Err(NodeError::NotInNetwork) => vec![self.own_entry()],
            Err(e) => return Err(e),
        };
        let load = self.jobs.store.load_by_peer();
        let targets =
            resolve_targets(&request.on, request.any, &map, &load).map_err(NodeError::Invalid)?;
        let ship = self.image_shipment(&request.image, &targets, &map);
        self.jobs
            .submit(request, targets, ship)
            .await
            .map_err(NodeError::Invalid)
    }

    /// Which targets lack `image` (by their map records), and the tar this
    /// node loaded it from, if it has one to send them.
    fn image_shipment(
        &self,
        image: &str,
        targets: &[(PeerId, String)],
        map: &[MapEntry],
    ) -> Option<(String, Vec<PeerId>)> {
        let tag = if image.contains(':') {
            image.to_string()
        } else {
            format!("{image}:latest")
        };
        let lacking: Vec<PeerId> = targets
            .iter()
            .filter(|(peer, _)| *peer != self.ctx.peer_id())
            .filter(|(peer, _)| {
                let entry = map.iter().find(|e| e.record.peer_id == *peer);
                !entry.is_some_and(|e| e.record.images.iter().any(|i| i.tags.contains(&tag)))
            })
            .map(|(peer, _)| *peer)
            .collect();
        if lacking.is_empty() {
            return None;
        }
        let tar = self.images.source_of(&tag)?;
        let name = tar.file_name()?.to_string_lossy().into_owned();
        Some((format!("image/{name}"), lacking))
    }

    /// Pulls every task's outputs into this node's
    /// `public/jobs/<id>/<node>/`.
    pub async fn gather(&self, id: &str) -> Result<Vec<String>, NodeError> {
        let job = self.job(id)?;
        let mut gathered = Vec::new();
        for task in job.tasks.values() {
            for file in &task.outputs {
                let source = format!("public/jobs/{id}/{file}");
                let dest = format!("public/jobs/{id}/{}/{file}", task.node);
                if task.peer_id == self.ctx.peer_id() {
                    let from = crate::files::resolve(self.files.workspace(), &source)
                        .map_err(NodeError::Invalid)?;
                    let to = crate::files::resolve(self.files.workspace(), &dest)
                        .map_err(NodeError::Invalid)?;
                    if let Some(dir) = to.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| NodeError::Invalid(e.to_string()))?;
                    }
                    std::fs::copy(&from, &to)
                        .map_err(|e| NodeError::Invalid(format!("{source}: {e}")))?;
                } else {
                    self.files
                        .fetch(task.peer_id, &source, &dest)
                        .await
                        .map_err(|e| {
                            NodeError::Invalid(format!(
                                "cannot gather {file} from {}: {e}",
                                task.node
                            ))
                        })?;
                }
                gathered.push(dest);
            }
        }
        Ok(gathered)
    }

    fn own_entry(&self) -> MapEntry {
        let config = &self.ctx.config;
        MapEntry {
            record: iris_behaviours::NodeRecord {
                name: config.name.clone(),
                peer_id: self.ctx.peer_id(),
                addrs: vec![],
                api_port: config.api.port,
                p2p_port: config.p2p.port,
                role: Role::Master,
                tags: config.tags.clone(),
                executor: Default::default(),
                images: vec![],
                version: 0,
            },
            state: Liveness::Alive,
            last_seen_ms: crate::now_ms(),
        }
    }

    pub fn jobs(&self) -> Vec<Job> {
        self.jobs.store.list()
    }

    pub fn job(&self, id: &str) -> Result<Job, NodeError> {
        self.jobs
            .store
            .get(id)
            .ok_or_else(|| NodeError::NotFound(format!("no job {id} on this node")))
    }

    async fn targets(&self, on: &str, any: bool) -> Result<Vec<(PeerId, String)>, NodeError> {
        let map = match self.snapshot().await {
            Ok(snapshot) => snapshot.map,
            Err(NodeError::NotInNetwork) => vec![self.own_entry()],
            Err(e) => return Err(e),
        };
        resolve_targets(on, any, &map, &self.jobs.store.load_by_peer()).map_err(NodeError::Invalid)
    }

    /// Starts a long-lived container named `name` on every target.
    pub async fn create_containers(
        &self,
        name: &str,
        on: &str,
        request: JobRequest,
    ) -> Result<Vec<NodeAnswer>, NodeError> {
        iris_behaviours::validate_name("container name", name).map_err(NodeError::Invalid)?;
        let spec =
            Jobs::task_spec(&format!("session-{name}"), &request).map_err(NodeError::Invalid)?;
        let targets = self.targets(on, false).await?;
        let request = ControlRequest::ContainerCreate {
            name: name.to_string(),
            spec,
        };
        Ok(self.jobs.on_targets(targets, request).await)
    }

    pub async fn exec_containers(
        &self,
        name: &str,
        on: &str,
        argv: Vec<String>,
        timeout_ms: u64,
    ) -> Result<Vec<NodeAnswer>, NodeError> {
        iris_behaviours::validate_name("container name", name).map_err(NodeError::Invalid)?;
        if argv.is_empty() {
            return Err(NodeError::Invalid(
                "the command is empty: give it after `--`".into(),
            ));
        }
        let targets = self.targets(on, false).await?;
        let request = ControlRequest::ContainerExec {
            name: name.to_string(),
            argv,
            timeout_ms,
        };
        Ok(self.jobs.on_targets(targets, request).await)
    }

    pub async fn remove_containers(
        &self,
        name: &str,
        on: &str,
    ) -> Result<Vec<NodeAnswer>, NodeError> {
        iris_behaviours::validate_name("container name", name).map_err(NodeError::Invalid)?;
        let targets = self.targets(on, false).await?;
        let request = ControlRequest::ContainerRemove {
            name: name.to_string(),
        };
        Ok(self.jobs.on_targets(targets, request).await)
    }

    fn peer_named(&self, map: &[MapEntry], name: &str) -> Result<PeerId, NodeError> {
        map.iter()
            .find(|e| e.record.name == name)
            .map(|e| e.record.peer_id)
            .ok_or_else(|| NodeError::Invalid(format!("no node named '{name}' in the network")))
    }

    /// The public and image files of this node, or of `node`.
    pub async fn list_files(
        &self,
        node: Option<&str>,
    ) -> Result<Vec<iris_behaviours::FileEntry>, NodeError> {
        let Some(node) = node.filter(|n| *n != self.ctx.config.name) else {
            return Ok(self.files.list());
        };
        let snapshot = self.snapshot().await?;
        let peer = self.peer_named(&snapshot.map, node)?;
        let client = self.client().ok_or(NodeError::NotInNetwork)?;
        match client.request(peer, ControlRequest::ListFiles).await? {
            ControlResponse::Files { entries } => Ok(entries),
            other => Err(NodeError::Invalid(format!("unexpected answer {other:?}"))),
        }
    }

    /// Pulls `path` (public/ unless it says image/) from node `from` into
    /// this node's `dest`, or, with `to`, has node `to` pull it directly.
    pub async fn get_file(
        &self,
        from: &str,
        path: &str,
        to: Option<&str>,
        dest: Option<&str>,
    ) -> Result<Transfer, NodeError> {
        let path = workspace_path(path);
        let dest = dest.map(workspace_path).unwrap_or_else(|| {
            format!(
                "public/received/{from}/{}",
                path.split_once('/').map_or(path.as_str(), |(_, rest)| rest)
            )
        });
        let snapshot = self.snapshot().await?;
        let source = self.peer_named(&snapshot.map, from)?;
        match to.filter(|t| *t != self.ctx.config.name) {
            None => self
                .files
                .fetch(source, &path, &dest)
                .await
                .map_err(NodeError::Invalid),
            Some(to) => {
                let target = self.peer_named(&snapshot.map, to)?;
                let client = self.client().ok_or(NodeError::NotInNetwork)?;
                let started = std::time::Instant::now();
                let request = ControlRequest::FetchFile {
                    from: source,
                    path: path.clone(),
                    dest: dest.clone(),
                };
                match client.request(target, request).await? {
                    ControlResponse::Fetched { bytes, sha256 } => Ok(Transfer {
                        path: dest,
                        bytes,
                        sha256,
                        fetched_chunks: 0,
                        resumed_chunks: 0,
                        refetched_chunks: 0,
                        seconds: started.elapsed().as_secs_f64(),
                    }),
                    other => Err(NodeError::Invalid(format!("unexpected answer {other:?}"))),
                }
            }
        }
    }

    /// Copies a local file into this node's workspace (`dest`), then has
    /// every target pull it to the same place.
    pub async fn put_file(
        &self,
        source: &str,
        dest: &str,
        on: &str,
    ) -> Result<Vec<NodeAnswer>, NodeError> {
        let source = Path::new(source);
        require_regular_file(source)?;
        let local =
            crate::files::resolve(self.files.workspace(), dest).map_err(NodeError::Invalid)?;
        if let Some(dir) = local.parent() {
            std::fs::create_dir_all(dir).map_err(|e| NodeError::Invalid(e.to_string()))?;
        }
        if std::fs::canonicalize(source).ok() != std::fs::canonicalize(&local).ok() {
            let partial = local.with_file_name(format!(
                ".{}.copy",
                local.file_name().unwrap_or_default().to_string_lossy()
            ));
            tokio::fs::copy(source, &partial)
                .await
                .map_err(|e| NodeError::Invalid(format!("cannot copy: {e}")))?;
            tokio::fs::rename(&partial, &local)
                .await
                .map_err(|e| NodeError::Invalid(format!("cannot copy: {e}")))?;
        }
        let targets: Vec<_> = self
            .targets(on, false)
            .await?
            .into_iter()
            .filter(|(p, _)| *p != self.ctx.peer_id())
            .collect();
        let request = ControlRequest::FetchFile {
            from: self.ctx.peer_id(),
            path: dest.to_string(),
            dest: dest.to_string(),
        };
        Ok(self.jobs.on_targets(targets, request).await)
    }

    /// The job once it has finished, or as it stands after `wait`.
    pub async fn wait_job(&self, id: &str, wait: Duration) -> Result<Job, NodeError> {
        // Subscribe before looking, so the finish cannot slip in between.
        let mut events = self.ctx.events.subscribe();
        let job = self.job(id)?;
        if job.finished() || wait.is_zero() {
            return Ok(job);
        }
        let finished = async {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if matches!(&event.kind, EventKind::JobFinished { job, .. } if job == id) {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if self.job(id).is_ok_and(|j| j.finished()) {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        };
        let _ = tokio::time::timeout(wait, finished).await;
        self.job(id)
    }

    pub async fn cancel_job(&self, id: &str) -> Result<Job, NodeError> {
        self.job(id)?;
        self.jobs.cancel(id).await.map_err(NodeError::Invalid)
    }

    pub async fn job_logs(
        &self,
        id: &str,
        node: Option<&str>,
        offsets: (u64, u64),
    ) -> Result<Vec<TaskLogs>, NodeError> {
        self.job(id)?;
        self.jobs
            .logs(id, node, offsets)
            .await
            .map_err(NodeError::Invalid)
    }

    async fn snapshot(&self) -> Result<Snapshot, NodeError> {
        let client = self.client().ok_or(NodeError::NotInNetwork)?;
        Ok(client.snapshot().await?)
    }

    pub async fn status(&self) -> Status {
        let snapshot = self.snapshot().await.ok();
        let config = &self.ctx.config;
        let (addrs, p2p_port) = match &snapshot {
            Some(s) => (with_peer_id(&s.own.addrs, s.own.peer_id), s.own.p2p_port),
            None => (Vec::new(), config.p2p.port),
        };
        Status {
            name: config.name.clone(),
            peer_id: self.ctx.peer_id(),
            addrs,
            p2p_port,
            api_port: config.api.port,
            tags: config.tags.clone(),
            role: snapshot.as_ref().map(|s| s.own.role),
            network: snapshot.map(|s| s.network),
            executor: self.executor_state(),
        }
    }

    fn executor_state(&self) -> String {
        match self.executor.availability() {
            Ok(()) => "available".into(),
            Err(reason) => format!("unavailable ({reason})"),
        }
    }

    pub fn images(&self) -> Images {
        Images {
            executor: self.executor_state(),
            images: self.ctx.capabilities.borrow().images.clone(),
        }
    }

    /// Copies a `docker save` tar into workspace/image and loads it.
    pub async fn load_image(&self, source: &str) -> Result<LoadedImage, NodeError> {
        let source = Path::new(source);
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar") && !n.starts_with('.'))
            .ok_or_else(|| {
                NodeError::Invalid(format!("{} is not a .tar file", source.display()))
            })?;
        require_regular_file(source)?;
        let dir = self.executor.workspace().local.join("image");
        let target = dir.join(&name);
        // Copy under a hidden name the watcher ignores, then rename: the tar
        // appears whole or not at all.
        let partial = dir.join(format!(".{name}.partial"));
        let copy = tokio::fs::copy(source, &partial).await;
        if let Err(e) = copy.and(tokio::fs::rename(&partial, &target).await.map(|_| 0)) {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(NodeError::Invalid(format!(
                "cannot copy {} into {}: {e}",
                source.display(),
                dir.display()
            )));
        }
        // A tar the engine refused is not kept in the library.
        let loaded = self
            .images
            .load_or_remove(&target)
            .await
            .map_err(NodeError::Invalid)?;
        Ok(LoadedImage {
            file: target.display().to_string(),
            loaded,
        })
    }

    pub async fn network(&self) -> Result<NetworkConfig, NodeError> {
        Ok(self.snapshot().await?.network)
    }

    pub async fn nodes(&self) -> Result<Vec<NodeView>, NodeError> {
        let snapshot = self.snapshot().await?;
        Ok(self.views(snapshot.map, &snapshot.connected))
    }

    fn views(&self, map: Vec<MapEntry>, connected: &[PeerId]) -> Vec<NodeView> {
        let local = self.ctx.peer_id();
        map.into_iter()
            .map(|e| NodeView {
                addrs: with_peer_id(&e.record.addrs, e.record.peer_id),
                name: e.record.name,
                peer_id: e.record.peer_id,
                role: e.record.role,
                state: e.state,
                api_port: e.record.api_port,
                p2p_port: e.record.p2p_port,
                tags: e.record.tags,
                version: e.record.version,
                last_seen: e.last_seen_ms,
                is_self: e.record.peer_id == local,
                connected: connected.contains(&e.record.peer_id),
                executor: e.record.executor,
                images: e.record.images,
            })
            .collect()
    }

    fn membership(&self, snapshot: Snapshot) -> Membership {
        Membership {
            role: snapshot.own.role,
            addrs: with_peer_id(&snapshot.own.addrs, snapshot.own.peer_id),
            network: snapshot.network,
            nodes: self.views(snapshot.map, &snapshot.connected),
        }
    }

    /// Creates a network with this node as genesis and master.
    pub async fn create_network(
        &self,
        name: &str,
        key: &str,
        mode: &str,
    ) -> Result<Membership, NodeError> {
        iris_behaviours::validate_name("network name", name).map_err(NodeError::Invalid)?;
        validate_key(key)?;
        let mode: NetworkMode = mode.parse().map_err(NodeError::Invalid)?;
        let _guard = self.membership_change.lock().await;
        self.refuse_if_member().await?;
        let (client, snapshot) =
            network::create(self.ctx.clone(), name.to_string(), mode, key).await?;
        self.set_network(Some(client));
        Ok(self.membership(snapshot))
    }

    /// Joins a network through any of its members.
    pub async fn join_network(&self, key: &str, bootstrap: &str) -> Result<Membership, NodeError> {
        validate_key(key)?;
        let bootstrap: Multiaddr = bootstrap.trim().parse().map_err(|e| {
            NodeError::Invalid(format!("bootstrap '{bootstrap}' is not a multiaddr: {e}"))
        })?;
        let _guard = self.membership_change.lock().await;
        self.refuse_if_member().await?;
        let (client, snapshot) = network::join(self.ctx.clone(), key, bootstrap).await?;
        self.set_network(Some(client));
        Ok(self.membership(snapshot))
    }

    /// Leaves the network for good: the others see it as left, and a restart
    /// does not rejoin.
    pub async fn leave_network(&self) -> Result<NetworkConfig, NodeError> {
        let _guard = self.membership_change.lock().await;
        let client = self.client().ok_or(NodeError::NotInNetwork)?;
        let network = client.snapshot().await?.network;
        client.depart(Departure::Leave).await?;
        self.set_network(None);
        self.ctx.store.clear_membership()?;
        self.ctx.events.emit(EventKind::NetworkLeft {
            network: network.name.clone(),
        });
        Ok(network)
    }

    /// Says goodbye for now: the others see the node as left until it
    /// restarts and rejoins.
    pub async fn shutdown(&self) {
        let _guard = self.membership_change.lock().await;
        if let Some(client) = self.client() {
            let _ =
                tokio::time::timeout(Duration::from_secs(3), client.depart(Departure::Shutdown))
                    .await;
            self.set_network(None);
        }
        self.stopped.send_replace(true);
    }

    /// Resolves once [`Node::shutdown`] has finished.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    async fn refuse_if_member(&self) -> Result<(), NodeError> {
        if let Some(client) = self.client() {
            if let Ok(snapshot) = client.snapshot().await {
                return Err(NodeError::AlreadyInNetwork(snapshot.network.name));
            }
        }
        Ok(())
    }
}

fn validate_key(key: &str) -> Result<(), NodeError> {
    if key.is_empty() {
        return Err(NodeError::Invalid("the network key is empty".into()));
    }
    if key.len() > 1024 {
        return Err(NodeError::Invalid(
            "the network key is longer than 1024 bytes".into(),
        ));
    }
    Ok(())
}

fn with_peer_id(addrs: &[Multiaddr], peer: PeerId) -> Vec<Multiaddr> {
    addrs
        .iter()
        .map(|a| a.clone().with_p2p(peer).unwrap_or_else(|a| a))
        .collect()
}

/// Answers peers' requests, each in its own task so a slow one (a Docker
/// call, a transfer) holds up no other.
async fn answer_inbound(
    jobs: Arc<Jobs>,
    files: Arc<Files>,
    images: Arc<ImageLibrary>,
    mut inbound: tokio::sync::mpsc::Receiver<network::Inbound>,
) {
    while let Some(network::Inbound {
        peer,
        request,
        reply,
    }) = inbound.recv().await
    {
        let (jobs, files, images) = (jobs.clone(), files.clone(), images.clone());
        tokio::spawn(async move {
            let answer = match request {
                ControlRequest::ListFiles
                | ControlRequest::FileManifest { .. }
                | ControlRequest::FileChunk { .. } => files.handle(request).await,
                ControlRequest::FetchFile { from, path, dest } => {
                    fetch_into(&files, &images, from, &path, &dest)
                        .await
                        .map(|t| ControlResponse::Fetched {
                            bytes: t.bytes,
                            sha256: t.sha256,
                        })
                }
                request => Ok(jobs.handle(peer, request).await),
            };
            let _ = reply.send(answer.unwrap_or_else(|reason| ControlResponse::Refused { reason }));
        });
    }
}

/// Pulls a file into this node; an image tar is loaded once it is here.
async fn fetch_into(
    files: &Files,
    images: &ImageLibrary,
    from: PeerId,
    path: &str,
    dest: &str,
) -> Result<crate::files::Transfer, String> {
    let transfer = files.fetch(from, path, dest).await?;
    if dest.starts_with("image/") {
        let full = crate::files::resolve(files.workspace(), dest)?;
        images.load(&full).await?;
    }
    Ok(transfer)
}

/// Tasks on a node that is gone (by timeout) or left will never report
/// again. A node that announced its shutdown reports for itself when it is
/// back: queued tasks then run, interrupted ones come back as lost.
async fn watch_departures(
    jobs: Arc<Jobs>,
    mut events: tokio::sync::broadcast::Receiver<crate::events::Event>,
) {
    loop {
        match events.recv().await {
            Ok(event) => match event.kind {
                EventKind::Gone {
                    peer_id, reason, ..
                } if reason != crate::events::SHUT_DOWN => {
                    jobs.node_gone(peer_id, &format!("node gone: {reason}"))
                }
                EventKind::Left { peer_id, .. } => jobs.node_gone(peer_id, "node left the network"),
                _ => {}
            },
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A user's path in a node's workspace: `image/...` stays, anything else
/// is taken as under `public/`.
fn workspace_path(path: &str) -> String {
    let path = path.trim_start_matches("./");
    // An absolute path stays as it is, for resolve() to refuse by name.
    if path.starts_with('/') || path.starts_with("public/") || path.starts_with("image/") {
        path.to_string()
    } else {
        format!("public/{path}")
    }
}

/// A file a user named on this machine must exist and be a regular file.
fn require_regular_file(path: &Path) -> Result<(), NodeError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| NodeError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(NodeError::Invalid(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(())
}
