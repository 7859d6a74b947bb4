//! The node's image library: every `*.tar` (docker-save format) in
//! `workspace/image` is loaded into the local engine at start and whenever
//! one is added, and the resulting list of images goes into the node's map
//! record so the master knows who has what.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use iris_behaviours::{ExecutorState, ImageRef};
use tokio::sync::watch;

use crate::{
    api_types::{Images, LoadedImage},
    events::{EventKind, Events},
    executor::Executor,
    network::Capabilities,
    safe_fs::Dir,
    workspace::{copy_into_place, require_regular_file, UserFileError},
};

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The path the caller named is not a tar file.
    #[error("{0}")]
    Invalid(String),
    /// There is no file at the path the caller named.
    #[error("{0}")]
    NotFound(String),
    /// The engine would not load it.
    #[error("{0}")]
    Refused(String),
    /// The engine is away or failed while loading; the tar was kept.
    #[error("{0}")]
    Engine(String),
    /// This node could not copy it into its workspace.
    #[error("{0}")]
    Local(String),
}

/// Why a tar was not loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The tar is not one this node takes (not a docker-save tar, or one
    /// that would move a tag): it is not kept.
    #[error("{0}")]
    Refused(String),
    /// The engine is away, or failed while loading: the tar is kept, and
    /// loaded once the engine answers.
    #[error("the Docker engine could not load it, so the tar was kept: {0}")]
    Engine(String),
}

impl From<LoadError> for ImageError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Refused(_) => ImageError::Refused(error.to_string()),
            LoadError::Engine(_) => ImageError::Engine(error.to_string()),
        }
    }
}

impl From<crate::executor::ExecutorError> for LoadError {
    fn from(error: crate::executor::ExecutorError) -> Self {
        use crate::executor::ExecutorError;
        match error {
            ExecutorError::Unavailable(_) | ExecutorError::Docker(_) => {
                LoadError::Engine(error.to_string())
            }
            other => LoadError::Refused(other.to_string()),
        }
    }
}

const SCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Size and modification time: a file that keeps both between two scans is
/// complete (not still being copied in).
type Fingerprint = (u64, SystemTime);

pub struct ImageLibrary {
    executor: Arc<Executor>,
    dir: PathBuf,
    capabilities: watch::Sender<Capabilities>,
    events: Events,
    /// Files already handled (loaded or failed), by their fingerprint then.
    handled: tokio::sync::Mutex<HashMap<PathBuf, Fingerprint>>,
    /// The tar each image tag was loaded from, to ship it to other nodes.
    sources: std::sync::Mutex<HashMap<String, PathBuf>>,
    /// Held for every load, by the watcher and by explicit loads alike, so
    /// a tar is never loaded twice at once nor removed while loading.
    loading: tokio::sync::Mutex<()>,
}

impl ImageLibrary {
    pub fn new(
        executor: Arc<Executor>,
        dir: PathBuf,
        capabilities: watch::Sender<Capabilities>,
        events: Events,
    ) -> Arc<Self> {
        Arc::new(Self {
            executor,
            dir,
            capabilities,
            events,
            handled: Default::default(),
            sources: Default::default(),
            loading: Default::default(),
        })
    }

    /// Scans forever; the first scan loads every tar at once.
    pub async fn watch(self: Arc<Self>) {
        let mut previous: HashMap<PathBuf, Fingerprint> = HashMap::new();
        let mut first = true;
        loop {
            // The engine may have come or gone since the last scan.
            let _ = self.executor.check().await;
            let current = scan(&self.dir);
            for (path, fingerprint) in &current {
                let stable = first || previous.get(path) == Some(fingerprint);
                if stable && self.executor.availability().is_ok() {
                    let _loading = self.loading.lock().await;
                    // Checked under the lock: an explicit load may just
                    // have handled this very file.
                    if self.handled.lock().await.get(path) != Some(fingerprint) {
                        let _ = self.load_now(path, false).await;
                    }
                }
            }
            self.refresh().await;
            previous = current;
            first = false;
            tokio::time::sleep(SCAN_INTERVAL).await;
        }
    }

    /// Loads a tar that a refused load must not leave behind: it is
    /// removed, under the same lock, so the watcher never sees it. A tar
    /// the engine could not take because it is away stays. With `force`
    /// (the node's owner said so), it may retag local images.
    pub async fn load_or_remove(&self, path: &Path, force: bool) -> Result<Vec<String>, LoadError> {
        let _loading = self.loading.lock().await;
        let result = self.load_now(path, force).await;
        if let Err(LoadError::Refused(_)) = result {
            let _ = tokio::fs::remove_file(path).await;
        }
        result
    }

    /// Loads a tar with the lock held. Unless `force`, a tar that would
    /// move a tag this engine has to another image is refused.
    async fn load_now(&self, path: &Path, force: bool) -> Result<Vec<String>, LoadError> {
        let fingerprint = fingerprint(path);
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let checked = if force {
            Ok(())
        } else {
            self.refuse_retag(path, &file).await
        };
        let result = match checked {
            Ok(()) => self
                .executor
                .load_image(path)
                .await
                .map_err(LoadError::from),
            Err(refused) => Err(refused),
        };
        // A tar the engine could not take for its own reasons is tried
        // again at a later scan.
        let engine_away = matches!(result, Err(LoadError::Engine(_)));
        if let Some(fingerprint) = fingerprint.filter(|_| !engine_away) {
            self.handled
                .lock()
                .await
                .insert(path.to_owned(), fingerprint);
        }
        match &result {
            Ok(images) => {
                let mut sources = self.sources.lock().expect("lock");
                for image in images {
                    sources.insert(image.clone(), path.to_owned());
                }
                drop(sources);
                self.events.emit(EventKind::ImageLoaded {
                    file,
                    images: images.clone(),
                });
            }
            Err(error) => {
                tracing::error!("image tar {file}: {error}");
                self.events.emit(EventKind::ImageFailed {
                    file,
                    error: error.to_string(),
                });
            }
        }
        self.refresh().await;
        result
    }

    /// Refuses a tar whose tags name other images here than in the tar:
    /// loading it would change what jobs that name the tag run.
    async fn refuse_retag(&self, path: &Path, file: &str) -> Result<(), LoadError> {
        let tar = path.to_owned();
        let shipped = tokio::task::spawn_blocking(move || tar_images(&tar))
            .await
            .map_err(|e| LoadError::Refused(e.to_string()))?
            .map_err(|e| LoadError::Refused(format!("image tar {file}: {e}")))?;
        let here = self.executor.images().await?;
        for tag in &shipped.tags {
            let Some(local) = here.iter().find(|i| i.tags.contains(tag)) else {
                continue;
            };
            if !shipped.ids.contains(&local.id) {
                return Err(LoadError::Refused(format!(
                    "image tar {file} would make '{tag}' name another image than it does \
                     here ({}); refused, so that a tag keeps its meaning. The node's owner \
                     can load it anyway with `iris images load --force`",
                    local.id
                )));
            }
        }
        Ok(())
    }

    /// Copies a `docker save` tar from this machine into workspace/image and
    /// loads it; a tar the engine refuses is not kept. With `force`, it may
    /// retag images this engine already has.
    pub async fn load_from(&self, source: &str, force: bool) -> Result<LoadedImage, ImageError> {
        let source = Path::new(source);
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar") && !n.starts_with('.'))
            .ok_or_else(|| {
                ImageError::Invalid(format!("{} is not a .tar file", source.display()))
            })?;
        require_regular_file(source).map_err(|e| match e {
            UserFileError::Missing(e) => ImageError::NotFound(e),
            UserFileError::Unusable(e) => ImageError::Invalid(e),
        })?;
        let target = self.dir.join(&name);
        // Under a hidden name the watcher ignores, then renamed: the tar
        // appears whole or not at all.
        let (from, dir, file) = (source.to_owned(), self.dir.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let mut source = std::fs::File::open(&from)?;
            copy_into_place(&mut source, &Dir::open(&dir)?, Path::new(&file))
        })
        .await
        .map_err(|e| ImageError::Local(e.to_string()))?
        .map_err(|e| {
            ImageError::Local(format!(
                "cannot copy {} into {}: {e}",
                source.display(),
                self.dir.display()
            ))
        })?;
        let loaded = self.load_or_remove(&target, force).await?;
        Ok(LoadedImage {
            file: target.display().to_string(),
            loaded,
        })
    }

    /// The engine the images are in.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// "available", or "unavailable (why)".
    pub fn executor_state(&self) -> String {
        match self.executor.availability() {
            Ok(()) => "available".into(),
            Err(reason) => format!("unavailable ({reason})"),
        }
    }

    /// The images this node's engine has, as the API lists them.
    pub fn view(&self) -> Images {
        Images {
            executor: self.executor_state(),
            images: self.capabilities.borrow().images.clone(),
        }
    }

    /// The tar in workspace/image that `image` (a tag) was loaded from.
    pub fn source_of(&self, image: &str) -> Option<PathBuf> {
        let tagged = if image.contains(':') {
            image.to_string()
        } else {
            format!("{image}:latest")
        };
        let source = {
            let sources = self.sources.lock().expect("lock");
            sources.get(&tagged).or_else(|| sources.get(image)).cloned()
        };
        // Looked at with the lock released: no file I/O under a std mutex.
        source.filter(|p| p.is_file())
    }

    /// Publishes the engine's current state and images.
    async fn refresh(&self) {
        let (executor, images) = match self.executor.availability() {
            Err(reason) => (ExecutorState::Unavailable(reason), vec![]),
            Ok(()) => match self.executor.images().await {
                Ok(images) => (
                    ExecutorState::Available,
                    images
                        .into_iter()
                        .take(iris_behaviours::MAX_IMAGES)
                        .map(|i| ImageRef {
                            id: i.id,
                            tags: i.tags,
                        })
                        .collect(),
                ),
                Err(e) => (ExecutorState::Unavailable(e.to_string()), vec![]),
            },
        };
        // Only this library's part: the audit head is the audit log's.
        self.capabilities.send_if_modified(|current| {
            let changed = current.executor != executor || current.images != images;
            current.executor = executor;
            current.images = images;
            changed
        });
    }
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.is_file().then(|| {
        (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        )
    })
}

/// Regular `*.tar` files directly in `dir` (not links, not hidden files).
fn scan(dir: &Path) -> HashMap<PathBuf, Fingerprint> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(".tar") && !name.starts_with('.')
        })
        .filter_map(|p| fingerprint(&p).map(|f| (p, f)))
        .collect()
}

/// What a `docker save` tar says it holds, read from its `manifest.json`
/// (and `index.json`, in the OCI layout) before the engine sees it.
#[derive(Debug, Default, PartialEq)]
struct TarImages {
    /// Every id the engine may give its images: config digests, and the
    /// manifest digests an engine with the containerd store uses.
    ids: Vec<String>,
    /// Every tag it sets, as `name:tag`.
    tags: Vec<String>,
}

/// Most images one shipped tar may hold (`docker save` of a job's image
/// and a few others), and most tags per image.
const MAX_TAR_IMAGES: usize = 16;

/// Reads [`TarImages`] from a tar, refusing one with more than one
/// manifest or index, or more than [`MAX_TAR_IMAGES`] images or tags an
/// image (refused, not cut: every tag is checked before loading). Blocking.
fn tar_images(path: &Path) -> Result<TarImages, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ManifestEntry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
    }
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<IndexEntry>,
    }
    #[derive(serde::Deserialize)]
    struct IndexEntry {
        digest: String,
    }
    const MAX_JSON: u64 = 1 << 20;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    let mut found = TarImages::default();
    let (mut has_manifest, mut has_index) = (false, false);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| format!("not a readable tar: {e}"))?;
        let name = entry.path().map_err(|e| e.to_string())?.into_owned();
        let is_manifest = name == Path::new("manifest.json");
        if !is_manifest && name != Path::new("index.json") {
            continue;
        }
        // A tar holds one of each; a second could say something else than
        // the one the engine reads, and each would cost another MiB.
        if (is_manifest && has_manifest) || (!is_manifest && has_index) {
            return Err(format!("it has more than one {}", name.display()));
        }
        if entry.size() > MAX_JSON {
            return Err(format!("its {} is larger than 1 MiB", name.display()));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(entry, MAX_JSON), &mut bytes)
            .map_err(|e| e.to_string())?;
        if is_manifest {
            let entries: Vec<ManifestEntry> = serde_json::from_slice(&bytes)
                .map_err(|e| format!("its manifest.json is not a docker-save manifest: {e}"))?;
            if entries.len() > MAX_TAR_IMAGES {
                return Err(format!(
                    "its manifest.json lists {} images, at most {MAX_TAR_IMAGES}",
                    entries.len()
                ));
            }
            for entry in entries {
                let tags = entry.repo_tags.as_ref().map_or(0, Vec::len);
                if tags > MAX_TAR_IMAGES {
                    return Err(format!(
                        "its manifest.json gives an image {tags} tags, at most {MAX_TAR_IMAGES}"
                    ));
                }
                found.ids.extend(config_id(&entry.config));
                found.tags.extend(
                    entry
                        .repo_tags
                        .unwrap_or_default()
                        .iter()
                        .map(|t| full_tag(t)),
                );
            }
            has_manifest = true;
        } else if let Ok(index) = serde_json::from_slice::<Index>(&bytes) {
            has_index = true;
            if index.manifests.len() > MAX_TAR_IMAGES {
                return Err(format!(
                    "its index.json lists more than {MAX_TAR_IMAGES} images"
                ));
            }
            found
                .ids
                .extend(index.manifests.into_iter().map(|m| m.digest));
        }
    }
    if !has_manifest {
        return Err("it has no manifest.json (not a docker-save tar?)".into());
    }
    Ok(found)
}

/// The image id a manifest's config names: `blobs/sha256/<hex>` (OCI
/// layout) or `<hex>.json` (older engines).
fn config_id(config: &str) -> Option<String> {
    let hex = config
        .strip_prefix("blobs/sha256/")
        .or_else(|| config.strip_suffix(".json"))?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// A tag as the engine lists it: `name:latest` when no tag is given.
fn full_tag(tag: &str) -> String {
    let name = tag.rsplit('/').next().unwrap_or(tag);
    if name.contains(':') {
        tag.to_string()
    } else {
        format!("{tag}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_save_tar_says_which_images_and_tags_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.tar");
        let hex = "ab".repeat(32);
        let manifest = format!(
            r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":["worker:1","localhost:5000/x"],"Layers":[]}}]"#
        );
        let index = r#"{"manifests":[{"digest":"sha256:cd"}]}"#.to_string();
        tar_of(&path, &[("manifest.json", manifest), ("index.json", index)]);
        let found = tar_images(&path).unwrap();
        assert_eq!(
            found.ids,
            [format!("sha256:{hex}"), "sha256:cd".to_string()]
        );
        assert_eq!(found.tags, ["worker:1", "localhost:5000/x:latest"]);
        std::fs::write(&path, b"not a tar at all").unwrap();
        assert!(tar_images(&path).is_err());
    }

    /// A tar whose entries are named `manifest.json` and `index.json`.
    fn tar_of(path: &Path, entries: &[(&str, String)]) {
        let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
        for (name, body) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, body.as_bytes())
                .unwrap();
        }
        builder.finish().unwrap();
    }

    /// A second manifest (which the engine may read instead of the first),
    /// or more images or tags than a shipped image needs, is refused
    /// before the engine sees the tar.
    #[test]
    fn a_tar_with_two_manifests_or_too_many_images_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.tar");
        let image = |tags: usize| {
            let tags: Vec<String> = (0..tags).map(|i| format!("\"w:{i}\"")).collect();
            let hex = "ab".repeat(32);
            format!(
                r#"{{"Config":"blobs/sha256/{hex}","RepoTags":[{}]}}"#,
                tags.join(",")
            )
        };
        let manifest =
            |images: usize, tags: usize| format!("[{}]", vec![image(tags); images].join(","));
        tar_of(&path, &[("manifest.json", manifest(1, 1))]);
        assert!(tar_images(&path).is_ok());
        let twice = [
            ("manifest.json", manifest(1, 1)),
            ("manifest.json", manifest(1, 1)),
        ];
        tar_of(&path, &twice);
        let err = tar_images(&path).unwrap_err();
        assert!(err.contains("more than one manifest.json"), "{err}");
        tar_of(&path, &[("manifest.json", manifest(MAX_TAR_IMAGES + 1, 1))]);
        let err = tar_images(&path).unwrap_err();
        assert!(err.contains("lists 17 images"), "{err}");
        tar_of(&path, &[("manifest.json", manifest(1, MAX_TAR_IMAGES + 1))]);
        let err = tar_images(&path).unwrap_err();
        assert!(err.contains("17 tags"), "{err}");
    }
}
