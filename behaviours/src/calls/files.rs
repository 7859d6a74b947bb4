//! Calls about files: what a node serves, a file's manifest before its
//! chunks are fetched on their own streams
//! ([`crate::files::CHUNKS_PROTOCOL`]), and the master's fetches between
//! two other nodes.

use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::{call, ANSWER_WITHIN};
use crate::files::{FileEntry, FileManifest};

/// The calls about files, as the wire carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileCall {
    List(ListFiles),
    Describe(DescribeFile),
    Fetch(FetchFile),
    Status(FetchStatus),
}

/// The public and image files this node serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListFiles;

/// Describe a file for a transfer: size, version and chunk hashes.
/// `path` is relative to the workspace and starts with `public/`,
/// `image/` or `outputs/`: nothing else is ever served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DescribeFile {
    pub path: String,
}

/// Pull `path` from `from` into this node's workspace at `dest`
/// (`public/...` or `image/...`; an image is loaded once it is here).
/// Answered at once; the caller then follows it with [`FetchStatus`].
/// Master only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchFile {
    pub from: PeerId,
    pub path: String,
    pub dest: String,
}

/// How is fetch `id` going? Only its caller may ask; its end is told once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchStatus {
    pub id: u64,
}

/// A fetch this node runs for the caller, started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchStarted {
    pub id: u64,
}

/// Where a fetch stands: still going, or done and verified. One that
/// failed answers with the refusal it ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchProgress {
    Running,
    Done { bytes: u64, blake3: String },
}

call!(ListFiles => Vec<FileEntry>, Files(FileCall::List), repeatable: true);
call!(DescribeFile => FileManifest, Files(FileCall::Describe), repeatable: true,
    /// The serving node hashes the whole file first.
    fn answer_within(&self) -> Duration {
        20 * ANSWER_WITHIN
    }
);
call!(FetchFile => FetchStarted, Files(FileCall::Fetch), repeatable: false);
call!(FetchStatus => FetchProgress, Files(FileCall::Status), repeatable: false);
