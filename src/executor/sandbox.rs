//! The sandbox every job container runs in, as its owner would ask: the
//! private data read-only, a fresh writable output directory, the inputs
//! read-only, no network unless asked, memory, CPU and pid limits, a
//! read-only root, no capabilities, no new privileges, never as root, and
//! argv as an array (no shell anywhere).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use super::{DataMount, ExecutorError, TaskSpec, Workspace, JOB_USER, LABEL_NODE};

/// What a container of this node is made of, beyond its spec.
pub struct Sandbox {
    /// The value of [`LABEL_NODE`] on every container: the node's peer id.
    pub node_label: String,
    pub workspace: Workspace,
}

impl Sandbox {
    /// The user a job's container runs as: the workspace's owner, so its
    /// files belong to the node, but never root: a root-owned workspace
    /// gets [`JOB_USER`].
    pub fn job_user(&self) -> String {
        match self.workspace.owner() {
            Some(owner) if !owner.starts_with("0:") => owner,
            _ => JOB_USER.into(),
        }
    }

    /// For [`JOB_USER`], the workspace's group as a supplementary group, so
    /// the job reads `private/` through its group bits (`iris init` makes it
    /// 0750); checked here, so a directory it cannot read is a clear error
    /// rather than a failing program.
    pub fn job_groups(&self) -> Result<Option<Vec<String>>, ExecutorError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if self.workspace.owner().as_deref() == Some(self.job_user().as_str()) {
            return Ok(None);
        }
        let private = self.workspace.local.join("private");
        let meta = std::fs::metadata(&private).map_err(|e| ExecutorError::File {
            path: private.clone(),
            message: e.to_string(),
        })?;
        if meta.permissions().mode() & 0o050 != 0o050 {
            return Err(ExecutorError::File {
                path: private,
                message: format!(
                    "jobs run as {JOB_USER} with the workspace's group, which cannot read \
                     this directory: make it group-readable (chmod g+rx, and g+r on its files)"
                ),
            });
        }
        Ok(Some(vec![meta.gid().to_string()]))
    }

    /// Makes a directory a container writes into writable for the job's
    /// user (only needed when that is not the workspace's owner).
    pub async fn give_to_job_user(&self, dir: &Path) -> Result<(), ExecutorError> {
        let user = self.job_user();
        if self.workspace.owner().as_deref() == Some(user.as_str()) {
            return Ok(());
        }
        let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
        let (uid, gid) = (uid.parse().ok(), gid.parse().ok());
        let path = dir.to_owned();
        let changed =
            tokio::task::spawn_blocking(move || std::os::unix::fs::chown(&path, uid, gid))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        changed.map_err(|e| ExecutorError::File {
            path: dir.to_owned(),
            message: format!("cannot hand it to the job's user {user}: {e}"),
        })
    }

    pub fn container_body(
        &self,
        spec: &TaskSpec,
        host_out: &Path,
        own_job: bool,
        data: &DataMount,
        kind: (&str, &str),
    ) -> Result<ContainerCreateBody, ExecutorError> {
        let bind = |source: PathBuf, target: &str, read_only: bool| Mount {
            target: Some(target.to_string()),
            source: Some(source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(read_only),
            ..Default::default()
        };
        let labels = HashMap::from([
            (LABEL_NODE.to_string(), self.node_label.clone()),
            (kind.0.to_string(), kind.1.to_string()),
        ]);
        let data = match data {
            DataMount::Private => bind(
                self.workspace.host.join("private"),
                "/workspace/private",
                true,
            ),
            DataMount::Dataset(path) => {
                bind(self.workspace.host.join(path), "/workspace/data", true)
            }
        };
        let mut mounts = vec![data, bind(host_out.to_path_buf(), "/workspace/out", false)];
        for input in &spec.inputs {
            let source = self
                .workspace
                .input_source(input, own_job)
                .map_err(|reason| ExecutorError::BadInput {
                    input: input.clone(),
                    reason,
                })?;
            mounts.push(bind(source, &format!("/workspace/in/{input}"), true));
        }
        Ok(ContainerCreateBody {
            image: Some(spec.image.clone()),
            user: Some(self.job_user()),
            // Empty: the image's own command.
            cmd: (!spec.argv.is_empty()).then(|| spec.argv.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            working_dir: Some("/workspace".into()),
            network_disabled: Some(spec.network.is_none()),
            host_config: Some(HostConfig {
                group_add: self.job_groups()?,
                mounts: Some(mounts),
                network_mode: Some(spec.network.clone().unwrap_or_else(|| "none".into())),
                memory: Some(spec.memory_bytes),
                memory_swap: Some(spec.memory_bytes),
                nano_cpus: Some(spec.nano_cpus),
                pids_limit: Some(spec.pids_limit),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}
