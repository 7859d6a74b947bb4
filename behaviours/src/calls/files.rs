//! Calls about files: what a node serves, a file's manifest before its
//! chunks are fetched on their own streams
//! ([`crate::files::CHUNKS_PROTOCOL`]), and the master's fetches between
//! two other nodes.

use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::{call, Call, ANSWER_WITHIN};
use crate::{
    codec::{MAX_CONTROL_RESPONSE, SMALL_ANSWER},
    files::{FileEntry, FileManifest},
};

/// The calls about files, as the wire carries them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileCall {
    List(ListFiles),
    Describe(DescribeFile),
    Fetch(FetchFile),
    Status(FetchStatus),
}

impl FileCall {
    /// The bound of this call's answer.
    pub fn max_answer(&self) -> usize {
        match self {
            Self::List(call) => call.max_answer(),
            Self::Describe(call) => call.max_answer(),
            Self::Fetch(call) => call.max_answer(),
            Self::Status(call) => call.max_answer(),
        }
    }
}

/// The bound of a listing's answer: some twenty thousand files.
pub const MAX_LISTING: usize = 2 * 1024 * 1024;

/// The bound of a manifest's answer: 34 bytes a chunk of 1 MiB, so files
/// up to some 240 GiB; a larger file is refused as too large to describe.
pub const MAX_MANIFEST: usize = MAX_CONTROL_RESPONSE;

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

call!(ListFiles => Vec<FileEntry>, Files(FileCall::List), repeatable: true,
    max_answer: MAX_LISTING);
call!(DescribeFile => FileManifest, Files(FileCall::Describe), repeatable: true,
    max_answer: MAX_MANIFEST,
    /// The serving node hashes the whole file first.
    fn answer_within(&self) -> Duration {
        20 * ANSWER_WITHIN
    }
);
call!(FetchFile => FetchStarted, Files(FileCall::Fetch), repeatable: false,
    max_answer: SMALL_ANSWER);
call!(FetchStatus => FetchProgress, Files(FileCall::Status), repeatable: false,
    max_answer: SMALL_ANSWER);
