//! A node's workspace on disk, and who may see each part of it:
//!
//! | area | what | written by | served to |
//! |---|---|---|---|
//! | `image/` | image tars | the node | members |
//! | `public/` | what the node's user shares | the node, its user | members |
//! | `private/` | the site's data | its user | no one; jobs read it |
//! | `outputs/<job>/` | a task's outputs | the task's container | the node that submitted the job |
//! | `gathered/<job>/<node>/` | what this node gathered | the node | no one |
//! | `sessions/<name>/` | a session's outputs | its container | no one |
//!
//! Containers write only `outputs/` and `sessions/`, so what the node
//! writes and serves elsewhere is out of their reach; what it reads from
//! `outputs/` it opens through [`crate::safe_fs`], never through a link.
//! This module knows where things are and which paths are allowed; it does
//! no networking and runs no containers.

use std::{
    path::{Component, Path, PathBuf},
    time::UNIX_EPOCH,
};

use iris_behaviours::{FileEntry, FileVersion};

use crate::safe_fs::Dir;

/// The parts of a workspace a path can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Image,
    Public,
    Outputs,
    Gathered,
}

impl Area {
    pub fn name(self) -> &'static str {
        match self {
            Area::Image => "image",
            Area::Public => "public",
            Area::Outputs => "outputs",
            Area::Gathered => "gathered",
        }
    }
}

/// A path in a workspace, checked without touching the disk: an area and
/// plain names below it (no `..`, nothing absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspacePath {
    pub area: Area,
    /// Below the area's directory; never empty.
    pub relative: PathBuf,
}

impl WorkspacePath {
    pub fn parse(path: &str) -> Result<Self, String> {
        if path.is_empty() || path.len() > 4096 {
            return Err("the path is empty or too long".into());
        }
        if Path::new(path).is_absolute() {
            return Err(format!(
                "'{path}' is absolute: give a path inside the workspace"
            ));
        }
        let mut parts = Vec::new();
        for component in Path::new(path).components() {
            match component {
                // No file system keeps a longer name: refused here, not
                // failed at the disk.
                Component::Normal(part) if part.len() > 255 => {
                    return Err(format!("a name in '{path}' is longer than 255 bytes"))
                }
                Component::Normal(part) => parts.push(part),
                Component::CurDir => {}
                _ => return Err(format!("'{path}' leaves the workspace")),
            }
        }
        let area = match parts.first().and_then(|a| a.to_str()) {
            Some("image") => Area::Image,
            Some("public") => Area::Public,
            Some("outputs") => Area::Outputs,
            Some("gathered") => Area::Gathered,
            _ => {
                return Err(format!(
                    "'{path}' is not under public/, image/, outputs/ or gathered/"
                ))
            }
        };
        if parts.len() < 2 {
            return Err(format!("'{path}' names an area, not a file in it"));
        }
        Ok(Self {
            area,
            relative: parts[1..].iter().collect(),
        })
    }

    /// The job an `outputs/<job>/...` or `gathered/<job>/...` path is of.
    pub fn job(&self) -> Option<String> {
        matches!(self.area, Area::Outputs | Area::Gathered)
            .then(|| self.relative.iter().next())
            .flatten()
            .map(|j| j.to_string_lossy().into_owned())
    }

    /// Only the given areas are acceptable here.
    pub fn require(self, areas: &[Area], what: &str) -> Result<Self, String> {
        if areas.contains(&self.area) {
            return Ok(self);
        }
        let names: Vec<String> = areas.iter().map(|a| format!("{}/", a.name())).collect();
        Err(format!(
            "{what} must be under {}, not {}/",
            names.join(" or "),
            self.area.name()
        ))
    }
}

impl std::fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.area.name(), self.relative.display())
    }
}

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

    /// A handle on an area's directory (made if missing), through which
    /// every path below it is opened without following links.
    pub fn area(&self, area: Area) -> std::io::Result<Dir> {
        let dir = self.local.join(area.name());
        std::fs::create_dir_all(&dir)?;
        Dir::open(&dir)
    }

    /// Where a job's task writes its outputs on this node, as this process
    /// and as the engine see it: `outputs/<job>/`.
    pub fn output_dirs(&self, job_id: &str) -> (PathBuf, PathBuf) {
        self.dirs(&Path::new("outputs").join(job_id))
    }

    /// A session's output directory: `sessions/<name>/`.
    pub fn session_dirs(&self, name: &str) -> (PathBuf, PathBuf) {
        self.dirs(&Path::new("sessions").join(name))
    }

    fn dirs(&self, relative: &Path) -> (PathBuf, PathBuf) {
        (self.local.join(relative), self.host.join(relative))
    }

    /// The engine's path of a job's input: a directory or file of
    /// `public/`, or, for a job this node submitted itself, of `gathered/`.
    /// No container writes either area, so none can redirect the path
    /// between this check and the mount. It must exist, and its real path
    /// (links followed, as the engine will follow them) must stay inside
    /// its area.
    pub fn input_source(&self, input: &str, own_job: bool) -> Result<PathBuf, String> {
        let (area, relative) = self.input_place(input, own_job)?;
        Ok(self.host.join(area).join(relative))
    }

    /// As [`Workspace::input_source`], the path on this node's side: what a
    /// warm worker's round copies in.
    pub fn input_local(&self, input: &str, own_job: bool) -> Result<PathBuf, String> {
        let (area, relative) = self.input_place(input, own_job)?;
        Ok(self.local.join(area).join(relative))
    }

    /// An input's area and its real path inside it, checked.
    fn input_place(&self, input: &str, own_job: bool) -> Result<(&'static str, PathBuf), String> {
        let path = WorkspacePath::parse(&user_path(input))?;
        let areas: &[Area] = if own_job {
            &[Area::Public, Area::Gathered]
        } else {
            &[Area::Public]
        };
        let path = path.require(areas, "an input")?;
        let area = self.local.join(path.area.name());
        let real = area
            .join(&path.relative)
            .canonicalize()
            .map_err(|e| format!("not in this node's workspace ({e})"))?;
        let root = area.canonicalize().map_err(|e| format!("workspace: {e}"))?;
        let relative = real
            .strip_prefix(&root)
            .map_err(|_| format!("leads out of {}/", path.area.name()))?;
        Ok((path.area.name(), relative.to_path_buf()))
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

/// A user's path in a node's workspace: one that names an area stays,
/// anything else is taken as under `public/`.
pub fn user_path(path: &str) -> String {
    let path = path.trim_start_matches("./");
    // An absolute path stays as it is, to be refused by name.
    let areas = ["public/", "image/", "outputs/", "gathered/"];
    if path.starts_with('/') || areas.iter().any(|a| path.starts_with(a)) {
        path.to_string()
    } else {
        format!("public/{path}")
    }
}

/// The size, modification time and inode that identify one state of a
/// file (a file replaced by a rename within the same nanosecond is still
/// another file).
pub fn version_of(meta: &std::fs::Metadata) -> FileVersion {
    use std::os::unix::fs::MetadataExt;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    FileVersion {
        size: meta.len(),
        modified_ns,
        inode: meta.ino(),
    }
}

/// The regular files under `dir`, relative to it: those whose names are
/// UTF-8, sorted, and the others, each shown with its bytes escaped (a
/// name that is not UTF-8 cannot be asked for by name, so it is refused
/// on its own instead of failing a gather of the rest).
pub fn outputs_under(dir: &Path) -> (Vec<String>, Vec<String>) {
    use std::os::unix::ffi::OsStrExt;
    let (mut named, mut unnamed) = (Vec::new(), Vec::new());
    walk(dir, &mut |path, _| match path.to_str() {
        Some(name) => named.push(name.to_string()),
        None => unnamed.push(path.as_os_str().as_bytes().escape_ascii().to_string()),
    });
    named.sort();
    unnamed.sort();
    (named, unnamed)
}

/// The bytes of the regular files under `dir`. Links are not followed.
pub fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    walk(dir, &mut |_, meta| total += meta.len());
    total
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

/// Why a file a user named on this machine cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserFileError {
    /// There is nothing at that path.
    #[error("{0}")]
    Missing(String),
    /// There is something, but not a regular file this node can read.
    #[error("{0}")]
    Unusable(String),
}

/// A file a user named on this machine must exist and be a regular file.
pub fn require_regular_file(path: &Path) -> Result<(), UserFileError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let said = format!("cannot read {}: {e}", path.display());
        match e.kind() {
            std::io::ErrorKind::NotFound => UserFileError::Missing(said),
            _ => UserFileError::Unusable(said),
        }
    })?;
    if !meta.is_file() {
        return Err(UserFileError::Unusable(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(())
}

/// Copies `source` to `relative` in `area`: under a hidden name made with
/// `O_EXCL`, then renamed, so the file appears whole or not at all and no
/// link on the way is followed. Copying a file onto itself is a no-op.
/// Blocking: call it on a blocking thread.
pub fn copy_into_place(
    source: &mut std::fs::File,
    area: &Dir,
    relative: &Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let name = relative
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", relative.display())))?;
    let dir = area.subdir(relative.parent().unwrap_or(Path::new("")), true)?;
    let (from, to) = (
        source.metadata()?,
        area.open_file(relative).and_then(|f| f.metadata()),
    );
    if to.is_ok_and(|to| (to.dev(), to.ino()) == (from.dev(), from.ino())) {
        return Ok(());
    }
    let partial = format!(".{name}.copy");
    dir.remove(&partial)?;
    let copied = dir.write_file(&partial, true).and_then(|mut target| {
        std::io::copy(source, &mut target)?;
        target.sync_all()?;
        dir.rename(&partial, name)
    });
    if copied.is_err() {
        let _ = dir.remove(&partial);
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_in_an_area_parse() {
        let ok = WorkspacePath::parse("public/results/./out.csv").unwrap();
        assert_eq!(
            (ok.area, ok.relative.as_path()),
            (Area::Public, Path::new("results/out.csv"))
        );
        let output = WorkspacePath::parse("outputs/job-1/r.json").unwrap();
        assert_eq!(output.job().as_deref(), Some("job-1"));
        assert!(WorkspacePath::parse("image/worker.tar").is_ok());
        for bad in [
            "private/secret.csv",
            "public/../private/secret.csv",
            "/etc/passwd",
            "../outside",
            "",
            "public",
            "iris.toml",
            "sessions/s/out.txt",
            &format!("public/{}", "0".repeat(256)),
        ] {
            assert!(WorkspacePath::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(WorkspacePath::parse(&format!("public/{}", "0".repeat(255))).is_ok());
        let gathered = WorkspacePath::parse("gathered/j/bob/x").unwrap();
        assert!(gathered
            .require(&[Area::Public, Area::Image], "a destination")
            .is_err());
    }

    #[test]
    fn inputs_must_stay_in_public_or_what_this_node_gathered() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::same_for_engine(dir.path().to_path_buf());
        for area in ["public/data", "gathered/j", "private"] {
            std::fs::create_dir_all(ws.local.join(area)).unwrap();
        }
        std::os::unix::fs::symlink(ws.local.join("private"), ws.local.join("public/escape"))
            .unwrap();
        let public = ws.input_source("data", false).unwrap();
        assert!(public.ends_with("public/data"), "{public:?}");
        assert!(ws.input_source("gathered/j", true).is_ok());
        assert!(ws.input_source("gathered/j", false).is_err());
        assert!(ws.input_source("escape", false).is_err());
        assert!(ws.input_source("missing", false).is_err());
        assert!(ws.input_source("outputs/j", true).is_err());
    }

    #[test]
    fn a_copy_appears_whole_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::same_for_engine(dir.path().join("ws"));
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::write(dir.path().join("source"), "new").unwrap();
        let public = ws.area(Area::Public).unwrap();
        std::fs::create_dir_all(ws.local.join("public/a")).unwrap();
        std::os::unix::fs::symlink(&victim, ws.local.join("public/a/.f.copy")).unwrap();
        std::os::unix::fs::symlink(&victim, ws.local.join("public/a/f")).unwrap();
        let mut source = std::fs::File::open(dir.path().join("source")).unwrap();
        copy_into_place(&mut source, &public, Path::new("a/f")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(
            std::fs::read_to_string(ws.local.join("public/a/f")).unwrap(),
            "new"
        );
        std::os::unix::fs::symlink(dir.path(), ws.local.join("public/up")).unwrap();
        let mut source = std::fs::File::open(dir.path().join("source")).unwrap();
        assert!(copy_into_place(&mut source, &public, Path::new("up/victim")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
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
            outputs_under(&ws.local.join("public")).0,
            ["a/.r.json.partial", "a/r.json"]
        );
    }
}
