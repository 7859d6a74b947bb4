//! The datasets this node's owner declared: a directory of `private/`
//! each, described by a `dataset.toml` beside the data. The card (never
//! the data) goes into the node's map record, so the network can find
//! which nodes hold what; a job that targets a dataset sees that directory
//! alone. `DIR/datasets.json` remembers which directories were declared;
//! each `dataset.toml` is the card, which the owner may edit and reload.

pub mod scan;

use std::{
    collections::BTreeMap,
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex},
};

use iris_behaviours::{
    datasets::{MAX_CARD_TAGS, MAX_DATASETS},
    validate_name, validate_tag, DatasetCard,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    api_types::AddDataset,
    audit::{AuditEvent, AuditLog, SavedFile},
    network::Capabilities,
    store::StagedFile,
};

/// The index of declared datasets, in the node's directory.
pub const INDEX_FILE: &str = "datasets.json";
/// Most rows of a mock sample (`iris datasets add --mock-rows`).
pub const MAX_MOCK_ROWS: usize = 100_000;
/// The card's file, in the dataset's directory.
pub const CARD_FILE: &str = "dataset.toml";
/// Where a generated mock sample goes: `public/datasets/<name>/mock.csv`.
const MOCK_DIR: &str = "public/datasets";

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0}")]
    Invalid(String),
    #[error("no dataset named '{0}' is declared on this node")]
    NotFound(String),
    #[error("there is no directory {0} in this node's workspace")]
    NoDirectory(String),
    #[error("{0}")]
    Local(String),
}

/// Which directory each declared dataset is, as `datasets.json` keeps it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Index {
    /// Name → path in the workspace (`private/...`).
    datasets: BTreeMap<String, String>,
}

pub struct Datasets {
    workspace: PathBuf,
    index_path: PathBuf,
    /// Name → (path, card), as declared and last read.
    declared: Mutex<BTreeMap<String, (String, DatasetCard)>>,
    capabilities: watch::Sender<Capabilities>,
    audit: Arc<AuditLog>,
    /// One change at a time, from the index beside the old to the index
    /// in force.
    changes: tokio::sync::Mutex<()>,
}

impl Datasets {
    /// Loads the declared datasets; a card that no longer reads is left
    /// out, with a warning, and the node starts anyway.
    pub fn open(
        node_dir: &Path,
        workspace: PathBuf,
        capabilities: watch::Sender<Capabilities>,
        audit: Arc<AuditLog>,
    ) -> Arc<Self> {
        let index_path = node_dir.join(INDEX_FILE);
        let index: Index = std::fs::read(&index_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut declared = BTreeMap::new();
        for (name, path) in index.datasets {
            match read_card(&workspace, &name, &path) {
                Ok(card) => {
                    declared.insert(name, (path, card));
                }
                Err(e) => tracing::warn!("dataset '{name}' is left out: {e}"),
            }
        }
        let datasets = Arc::new(Self {
            workspace,
            index_path,
            declared: Mutex::new(declared),
            capabilities,
            audit,
            changes: tokio::sync::Mutex::new(()),
        });
        datasets.publish();
        datasets
    }

    /// The cards of this node's datasets.
    pub fn cards(&self) -> Vec<DatasetCard> {
        let declared = self.declared.lock().expect("lock");
        declared.values().map(|(_, card)| card.clone()).collect()
    }

    /// Where dataset `name` is, in this node's workspace as this process
    /// sees it, and in the workspace (`private/...`).
    pub fn path_of(&self, name: &str) -> Result<String, DatasetError> {
        let declared = self.declared.lock().expect("lock");
        declared
            .get(name)
            .map(|(path, _)| path.clone())
            .ok_or_else(|| DatasetError::NotFound(name.to_string()))
    }

    /// Declares a dataset: finds its schema and row count, writes its card
    /// beside the data (and a mock sample in `public/` if asked), and puts
    /// the card in the map record.
    pub async fn add(&self, request: AddDataset) -> Result<DatasetCard, DatasetError> {
        let invalid = DatasetError::Invalid;
        validate_name("dataset name", &request.name).map_err(invalid)?;
        if request.tags.len() > MAX_CARD_TAGS {
            return Err(invalid(format!("at most {MAX_CARD_TAGS} tags")));
        }
        for tag in &request.tags {
            validate_tag(tag).map_err(invalid)?;
        }
        // A mock sample is written a row at a time; a bound keeps one
        // request from taking the node's disk (and its time).
        if request.mock_rows > MAX_MOCK_ROWS {
            return Err(invalid(format!(
                "a mock sample has at most {MAX_MOCK_ROWS} rows, not {}",
                request.mock_rows
            )));
        }
        let path = dataset_path(&request.path).map_err(invalid)?;
        {
            let declared = self.declared.lock().expect("lock");
            if !declared.contains_key(&request.name) && declared.len() >= MAX_DATASETS {
                return Err(invalid(format!(
                    "a node declares at most {MAX_DATASETS} datasets"
                )));
            }
        }
        let dir = self.workspace.join(&path);
        let card_file = dir.join(CARD_FILE);
        let declared_path = path.clone();
        let workspace = self.workspace.clone();
        let (card, staged_card) = tokio::task::spawn_blocking(move || {
            let meta = std::fs::symlink_metadata(&dir).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DatasetError::NoDirectory(path.clone()),
                _ => DatasetError::Invalid(format!("{path}: {e}")),
            })?;
            if !meta.is_dir() {
                return Err(DatasetError::Invalid(format!("{path} is not a directory")));
            }
            if card_file.exists() && !request.replace {
                return Err(DatasetError::Invalid(format!(
                    "{path}/{CARD_FILE} exists: edit it and run `iris datasets reload`, or add --replace to find its schema again"
                )));
            }
            let scanned = scan::scan(&dir).map_err(DatasetError::Invalid)?;
            let mut card = DatasetCard {
                name: request.name.clone(),
                description: request.description.clone(),
                tags: request.tags.clone(),
                schema: scanned.schema,
                licence: request.licence.clone(),
                contact: request.contact.clone(),
                rows: scan::round_rows(scanned.rows, request.rows_bucket),
                rows_bucket: request.rows_bucket.max(1),
                mock: None,
            };
            // Checked before anything is written for it.
            card.validate().map_err(DatasetError::Invalid)?;
            if request.mock_rows > 0 {
                let mock = format!("{MOCK_DIR}/{}/mock.csv", card.name);
                let file = workspace.join(&mock);
                let (schema, rows) = (&card.schema, request.mock_rows);
                std::fs::create_dir_all(file.parent().expect("a parent"))
                    .and_then(|()| {
                        StagedFile::write_from(&file, 0o644, |out| scan::write_mock(out, schema, rows))
                    })
                    .and_then(StagedFile::commit)
                    .map_err(|e| DatasetError::Local(format!("cannot write {mock}: {e}")))?;
                card.mock = Some(mock);
                card.validate().map_err(DatasetError::Invalid)?;
            }
            let staged_card = stage_card(&card_file, &card)?;
            Ok((card, staged_card))
        })
        .await
        .map_err(|e| DatasetError::Local(e.to_string()))??;
        let path = declared_path;
        let what = format!("declared dataset {} ({path})", card.name);
        let entry = (card.name.clone(), (path, card.clone()));
        self.change(what, Some(staged_card), move |declared| {
            declared.insert(entry.0, entry.1);
        })
        .await?;
        Ok(card)
    }

    /// Reads every card again, after its owner edited it: all or nothing,
    /// so one bad edit leaves every card as it was.
    pub async fn reload(&self) -> Result<Vec<DatasetCard>, DatasetError> {
        let current: Vec<(String, String)> = {
            let declared = self.declared.lock().expect("lock");
            declared
                .iter()
                .map(|(n, (p, _))| (n.clone(), p.clone()))
                .collect()
        };
        let workspace = self.workspace.clone();
        let read = tokio::task::spawn_blocking(move || {
            current
                .into_iter()
                .map(|(name, path)| {
                    let card = read_card(&workspace, &name, &path)?;
                    Ok((name, (path, card)))
                })
                .collect::<Result<BTreeMap<_, _>, DatasetError>>()
        })
        .await
        .map_err(|e| DatasetError::Local(e.to_string()))??;
        *self.declared.lock().expect("lock") = read;
        self.publish();
        Ok(self.cards())
    }

    /// Takes a dataset off the network; its data and card stay where they are.
    pub async fn remove(&self, name: &str) -> Result<(), DatasetError> {
        let path = self.path_of(name)?;
        let name = name.to_string();
        let what = format!("withdrew dataset {name} ({path})");
        self.change(what, None, move |declared| {
            declared.remove(&name);
        })
        .await
    }

    /// Makes one change to the declared datasets. The owner's declarations
    /// are theirs to answer for: the new index (and `card`, a new card) is
    /// written beside the old one, the change is recorded in the audit
    /// log, and only then are the files put in place and the change in
    /// force. A full disk refuses it whole: nothing recorded, nothing
    /// changed.
    async fn change(
        &self,
        what: String,
        card: Option<StagedFile>,
        change: impl FnOnce(&mut BTreeMap<String, (String, DatasetCard)>),
    ) -> Result<(), DatasetError> {
        let _one_at_a_time = self.changes.lock().await;
        let mut next = self.declared.lock().expect("lock").clone();
        change(&mut next);
        let index = Index {
            datasets: next
                .iter()
                .map(|(n, (p, _))| (n.clone(), p.clone()))
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&index).expect("the index serializes");
        let path = self.index_path.clone();
        let cannot_write = |e: std::io::Error| {
            DatasetError::Local(format!("cannot write {}: {e}", self.index_path.display()))
        };
        let (staged, card, saved) = tokio::task::spawn_blocking(move || {
            let staged = StagedFile::write(&path, &json)?;
            let saved = [Some(&staged), card.as_ref()]
                .into_iter()
                .flatten()
                .map(|f| SavedFile::new(f.path(), f.blake3()?))
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok((staged, card, saved))
        })
        .await
        .map_err(|e| DatasetError::Local(e.to_string()))?
        .map_err(cannot_write)?;
        crate::faults::crash_if("IRIS_FAULT_CRASH_AFTER_STAGING");
        self.audit
            .append(AuditEvent::PolicyChanged {
                change: what,
                saved,
            })
            .await
            .map_err(|e| DatasetError::Local(format!("cannot record it in the audit log: {e}")))?;
        crate::faults::crash_if("IRIS_FAULT_CRASH_AFTER_RECORDING");
        tokio::task::spawn_blocking(move || {
            if let Some(card) = card {
                card.commit()
                    .map_err(|e| format!("cannot write a dataset's card: {e}"))?;
            }
            staged
                .commit()
                .map_err(|e| format!("cannot write the index: {e}"))
        })
        .await
        .map_err(|e| DatasetError::Local(e.to_string()))?
        .map_err(DatasetError::Local)?;
        *self.declared.lock().expect("lock") = next;
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let cards = self.cards();
        self.capabilities.send_modify(|c| c.datasets = cards);
    }
}

/// A dataset's directory as given: `private/` and plain names below it.
fn dataset_path(path: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "'{path}' leaves the workspace: give a path such as private/heart"
                ))
            }
        }
    }
    if parts.first().map(String::as_str) != Some("private") || parts.len() < 2 {
        return Err(format!(
            "'{path}' is not a directory under private/: a dataset is private data, such as private/heart"
        ));
    }
    Ok(parts.join("/"))
}

fn read_card(workspace: &Path, name: &str, path: &str) -> Result<DatasetCard, DatasetError> {
    let file = workspace.join(path).join(CARD_FILE);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| DatasetError::Invalid(format!("{path}/{CARD_FILE}: {e}")))?;
    let card: DatasetCard = toml::from_str(&text)
        .map_err(|e| DatasetError::Invalid(format!("{path}/{CARD_FILE}: {e}")))?;
    card.validate()
        .map_err(|e| DatasetError::Invalid(format!("{path}/{CARD_FILE}: {e}")))?;
    if card.name != name {
        return Err(DatasetError::Invalid(format!(
            "{path}/{CARD_FILE} names '{}', but it was declared as '{name}'",
            card.name
        )));
    }
    Ok(card)
}

/// A card, written beside its place: in place once the declaration is
/// recorded.
fn stage_card(file: &Path, card: &DatasetCard) -> Result<StagedFile, DatasetError> {
    let body = toml::to_string_pretty(card).map_err(|e| DatasetError::Local(e.to_string()))?;
    let text = format!(
        "# The card of this dataset: what the network sees of it, never the data.\n\
         # Edit it (description, tags, column types, licence, contact), then run\n\
         # `iris datasets reload`. `rows` must stay a multiple of `rows_bucket`.\n\n{body}"
    );
    // Whole or not at all: a card cut short by a full disk would leave the
    // dataset out at the next start. Readable by others as before.
    StagedFile::write_with_mode(file, text.as_bytes(), 0o644)
        .map_err(|e| DatasetError::Local(format!("cannot write {}: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::dataset_path;

    #[test]
    fn a_dataset_is_a_directory_under_private() {
        assert_eq!(dataset_path("private/heart").unwrap(), "private/heart");
        assert_eq!(dataset_path("./private/a/b").unwrap(), "private/a/b");
        assert!(dataset_path("private").is_err());
        assert!(dataset_path("public/heart").is_err());
        assert!(dataset_path("private/../public").is_err());
        assert!(dataset_path("/etc").is_err());
    }
}
