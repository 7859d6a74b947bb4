//! A node's workspace on disk: `image/` (image tars), `private/` (never
//! leaves the node) and `public/` (what may be served). This module knows
//! where things are and which paths are allowed; it does no networking and
//! runs no containers, so the executor, files and images can all build on it.

use std::{
    path::{Component, Path, PathBuf},
    time::UNIX_EPOCH,
};

use iris_behaviours::{FileEntry, FileVersion};

/// Where a node's workspace is, for the node and for Docker.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// As this process sees it.
    pub local: PathBuf,
    /// As the Docker engine sees it (differs when the node itself runs in a
    /// container with the host's Docker socket mounted).
    pub host: PathBuf,
}

impl Workspace {
    /// A workspace the engine sees where the node does.
    pub fn same_for_engine(local: PathBuf) -> Self {
        Self {
            host: local.clone(),
            local,
        }
    }

    /// The directory of image tars.
    pub fn image_dir(&self) -> PathBuf {
        self.local.join("image")
    }

    /// Where a job's outputs land on this node.
    pub fn output_dir(&self, job_id: &str) -> PathBuf {
        self.public_dirs("jobs", job_id).0
    }

    /// `public/<kind>/<name>` as this process and as the engine see it.
    pub fn public_dirs(&self, kind: &str, name: &str) -> (PathBuf, PathBuf) {
        let relative = Path::new("public").join(kind).join(name);
        (self.local.join(&relative), self.host.join(relative))
    }

    /// Resolves a workspace path given by a peer or a user: see [`resolve`].
    pub fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        resolve(&self.local, path)
    }

    /// The engine's path of an input in `public/`. It must exist, and its
    /// real path (links followed, as the engine will follow them) must stay
    /// inside `public/`.
    pub fn input_source(&self, input: &str) -> Result<PathBuf, String> {
        let local = self.resolve(&format!("public/{input}"))?;
        let real = local
            .canonicalize()
            .map_err(|e| format!("not in this node's public workspace ({e})"))?;
        let root = self
            .local
            .canonicalize()
            .map_err(|e| format!("workspace: {e}"))?;
        let relative = real
            .strip_prefix(&root)
            .map_err(|_| "leads out of the workspace".to_string())?;
        Ok(self.host.join(relative))
    }

    /// The user that owns the workspace, as `uid:gid`: job containers run
    /// as that user, so they can read the private data and write their
    /// outputs without any capability, and their files belong to the node.
    pub fn owner(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.local).ok()?;
        Some(format!("{}:{}", meta.uid(), meta.gid()))
    }

    /// Every regular file under `public/` and `image/` (hidden ones
    /// excluded), as peers may see them.
    pub fn served_files(&self) -> Vec<FileEntry> {
        let mut entries = Vec::new();
        for area in ["image", "public"] {
            walk(&self.local.join(area), &mut |path, meta| {
                if path.iter().any(|p| p.to_string_lossy().starts_with('.')) {
                    return;
                }
                entries.push(FileEntry {
                    path: Path::new(area).join(path).display().to_string(),
                    size: meta.len(),
                    modified_ms: (version_of(meta).modified_ns / 1_000_000) as u64,
                });
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries
    }
}

/// Resolves a workspace path given by a peer or a user. Only `public/...`
/// and `image/...` exist here; absolute paths, `..` and links that lead out
/// of the area are refused.
pub fn resolve(workspace: &Path, path: &str) -> Result<PathBuf, String> {
    let relative = Path::new(path);
    if path.is_empty() || path.len() > 4096 {
        return Err("the path is empty or too long".into());
    }
    if relative.is_absolute() {
        return Err(format!(
            "'{path}' is absolute: give a path inside the workspace"
        ));
    }
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            _ => return Err(format!("'{path}' leaves the workspace")),
        }
    }
    let area = parts.first().and_then(|a| a.to_str()).unwrap_or_default();
    if area != "public" && area != "image" {
        return Err(format!(
            "'{path}' is not under public/ or image/: nothing else is served"
        ));
    }
    let area_root = workspace
        .join(area)
        .canonicalize()
        .map_err(|e| format!("workspace area {area}/ is missing: {e}"))?;
    let full = workspace.join(relative);
    // The deepest part that exists must resolve, links and all, inside the area.
    let mut existing = full.clone();
    while !existing.exists() {
        if !existing.pop() {
            break;
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|e| format!("'{path}': {e}"))?;
    if !real.starts_with(&area_root) {
        return Err(format!(
            "'{path}' leads out of the workspace through a link"
        ));
    }
    Ok(full)
}

/// A user's path in a node's workspace: `image/...` stays, anything else
/// is taken as under `public/`.
pub fn user_path(path: &str) -> String {
    let path = path.trim_start_matches("./");
    // An absolute path stays as it is, for resolve() to refuse by name.
    if path.starts_with('/') || path.starts_with("public/") || path.starts_with("image/") {
        path.to_string()
    } else {
        format!("public/{path}")
    }
}

/// The size and modification time that identify one state of a file.
pub fn version_of(meta: &std::fs::Metadata) -> FileVersion {
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    FileVersion {
        size: meta.len(),
        modified_ns,
    }
}

/// Regular files under `dir`, relative to it, sorted. Links are not
/// followed.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    walk(dir, &mut |path, _| files.push(path.display().to_string()));
    files.sort();
    files
}

/// Calls `visit` with the path relative to `root` and the metadata of every
/// regular file below it. Links are neither followed nor reported.
fn walk(root: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    fn inner(root: &Path, dir: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                inner(root, &path, visit);
            } else if meta.is_file() {
                if let Ok(relative) = path.strip_prefix(root) {
                    visit(relative, &meta);
                }
            }
        }
    }
    inner(root, root, visit)
}

/// A file a user named on this machine must exist and be a regular file.
pub fn require_regular_file(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    Ok(())
}

/// Copies `source` to `target` under a hidden name, then renames it: the
/// file appears whole or not at all. Copying a file onto itself is a no-op.
pub async fn copy_into_place(source: &Path, target: &Path) -> Result<(), String> {
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if tokio::fs::canonicalize(source).await.ok() == tokio::fs::canonicalize(target).await.ok() {
        return Ok(());
    }
    let partial = target.with_file_name(format!(
        ".{}.copy",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let copied = async {
        tokio::fs::copy(source, &partial).await?;
        tokio::fs::rename(&partial, target).await
    };
    if let Err(e) = copied.await {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(format!(
            "cannot copy {} to {}: {e}",
            source.display(),
            target.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_and_image_paths_inside_the_workspace_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        for area in ["public", "image", "private"] {
            std::fs::create_dir_all(ws.join(area)).unwrap();
        }
        std::fs::write(ws.join("private/secret.csv"), "x").unwrap();
        std::os::unix::fs::symlink(ws.join("private"), ws.join("public/escape")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.join("public/etc")).unwrap();

        assert!(resolve(ws, "public/results/out.csv").is_ok());
        assert!(resolve(ws, "image/worker.tar").is_ok());
        for bad in [
            "private/secret.csv",
            "public/../private/secret.csv",
            "/etc/passwd",
            "public/escape/secret.csv",
            "public/etc/passwd",
            "../outside",
            "",
            "iris.toml",
        ] {
            assert!(resolve(ws, bad).is_err(), "{bad:?} resolved");
        }
    }

    #[test]
    fn served_files_skip_hidden_files_links_and_private_data() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::same_for_engine(dir.path().to_path_buf());
        for area in ["public/a", "image", "private"] {
            std::fs::create_dir_all(ws.local.join(area)).unwrap();
        }
        std::fs::write(ws.local.join("public/a/r.json"), "{}").unwrap();
        std::fs::write(ws.local.join("public/a/.r.json.partial"), "").unwrap();
        std::fs::write(ws.local.join("image/w.tar"), "tar").unwrap();
        std::fs::write(ws.local.join("private/s.csv"), "x").unwrap();
        std::os::unix::fs::symlink("../private", ws.local.join("public/p")).unwrap();
        let paths: Vec<String> = ws.served_files().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["image/w.tar", "public/a/r.json"]);
        assert_eq!(
            files_under(&ws.local.join("public")),
            ["a/.r.json.partial", "a/r.json"]
        );
    }
}
