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
    workspace::{copy_into_place, require_regular_file},
};

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The path the caller named is not a tar file.
    #[error("{0}")]
    Invalid(String),
    /// The engine would not load it.
    #[error("{0}")]
    Refused(String),
    /// This node could not copy it into its workspace.
    #[error("{0}")]
    Local(String),
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
            let current = scan(&self.dir);
            for (path, fingerprint) in &current {
                let stable = first || previous.get(path) == Some(fingerprint);
                if stable {
                    let _loading = self.loading.lock().await;
                    // Checked under the lock: an explicit load may just
                    // have handled this very file.
                    if self.handled.lock().await.get(path) != Some(fingerprint) {
                        let _ = self.load_now(path).await;
                    }
                }
            }
            self.refresh().await;
            previous = current;
            first = false;
            tokio::time::sleep(SCAN_INTERVAL).await;
        }
    }

    /// Loads one tar from the image directory and refreshes the list.
    pub async fn load(&self, path: &Path) -> Result<Vec<String>, String> {
        let _loading = self.loading.lock().await;
        self.load_now(path).await
    }

    /// Loads a tar that a refused load must not leave behind: it is
    /// removed, under the same lock, so the watcher never sees it.
    pub async fn load_or_remove(&self, path: &Path) -> Result<Vec<String>, String> {
        let _loading = self.loading.lock().await;
        let result = self.load_now(path).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        result
    }

    /// [`ImageLibrary::load`] with the lock held.
    async fn load_now(&self, path: &Path) -> Result<Vec<String>, String> {
        let fingerprint = fingerprint(path);
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = self
            .executor
            .load_image(path)
            .await
            .map_err(|e| e.to_string());
        if let Some(fingerprint) = fingerprint {
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
                tracing::error!("{error}");
                self.events.emit(EventKind::ImageFailed {
                    file,
                    error: error.clone(),
                });
            }
        }
        self.refresh().await;
        result
    }

    /// Copies a `docker save` tar from this machine into workspace/image and
    /// loads it; a tar the engine refuses is not kept.
    pub async fn load_from(&self, source: &str) -> Result<LoadedImage, ImageError> {
        let source = Path::new(source);
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar") && !n.starts_with('.'))
            .ok_or_else(|| {
                ImageError::Invalid(format!("{} is not a .tar file", source.display()))
            })?;
        require_regular_file(source).map_err(ImageError::Invalid)?;
        let target = self.dir.join(&name);
        // Under a hidden name the watcher ignores, then renamed: the tar
        // appears whole or not at all.
        copy_into_place(source, &target)
            .await
            .map_err(ImageError::Local)?;
        let loaded = self
            .load_or_remove(&target)
            .await
            .map_err(ImageError::Refused)?;
        Ok(LoadedImage {
            file: target.display().to_string(),
            loaded,
        })
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
        let capabilities = match self.executor.availability() {
            Err(reason) => Capabilities {
                executor: ExecutorState::Unavailable(reason),
                images: vec![],
            },
            Ok(()) => match self.executor.images().await {
                Ok(images) => Capabilities {
                    executor: ExecutorState::Available,
                    images: images
                        .into_iter()
                        .take(iris_behaviours::MAX_IMAGES)
                        .map(|i| ImageRef {
                            id: i.id,
                            tags: i.tags,
                        })
                        .collect(),
                },
                Err(e) => Capabilities {
                    executor: ExecutorState::Unavailable(e.to_string()),
                    images: vec![],
                },
            },
        };
        self.capabilities.send_if_modified(|current| {
            let changed = *current != capabilities;
            *current = capabilities;
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
