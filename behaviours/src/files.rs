//! Files on the wire: what a receiver needs to fetch and check a file (its
//! [`FileManifest`]), and the stream protocol its chunks travel on.
//!
//! A file is hashed once, with BLAKE3, as 1 MiB chunks: each chunk's hash is
//! the chaining value of its subtree in BLAKE3's tree, and the chunks'
//! hashes combine ([`root_of`]) to the BLAKE3 hash of the whole file, the
//! same as `b3sum` prints. So a receiver checks each chunk as it arrives and
//! never reads the file again to check the whole: the manifest's chunk
//! hashes are checked against its root once, when it arrives.
//!
//! Chunks do not travel as calls: each transfer opens a few
//! streams of [`CHUNKS_PROTOCOL`], asks on each for a run of chunks
//! ([`ChunkRequest`]) and reads them as raw bytes into buffers it reuses.

use std::io;

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Serialize};

use crate::{
    codec::{decode, encode, read_frame, write_frame},
    refusal::{Refusal, RefusalKind},
};

/// The size of a file chunk on the wire.
pub const CHUNK_SIZE: u64 = 1024 * 1024;

/// The stream protocol chunks travel on.
pub const CHUNKS_PROTOCOL: &str = "/iris/chunks/1";

/// Most chunks one [`ChunkRequest`] may ask for.
pub const MAX_CHUNKS_PER_REQUEST: usize = 64;

/// The largest encoded [`ChunkRequest`] (a path and the indices).
const MAX_CHUNK_REQUEST: usize = 16 * 1024;
/// The largest encoded refusal on a chunk stream.
const MAX_REFUSAL: usize = 16 * 1024;

/// Which state of a file a transfer reads: a chunk request for another
/// version fails ("the file changed during the transfer"). The sender's
/// manifest cache is keyed by the path and this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileVersion {
    pub size: u64,
    pub modified_ns: u128,
    pub inode: u64,
}

impl FileVersion {
    /// How many chunks a file of this version has.
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(CHUNK_SIZE)
    }

    /// The length of chunk `index`, or `None` past the end.
    pub fn chunk_len(&self, index: u64) -> Option<usize> {
        let offset = index.checked_mul(CHUNK_SIZE).filter(|o| *o < self.size)?;
        Some(CHUNK_SIZE.min(self.size - offset) as usize)
    }
}

/// What a receiver needs to fetch and check a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    pub path: String,
    pub version: FileVersion,
    pub chunk_size: u64,
    /// The BLAKE3 hash of the whole file, hex.
    pub blake3: String,
    /// Each chunk's hash ([`chunk_hash`]); they combine to `blake3`.
    pub chunks: Vec<serde_bytes::ByteBuf>,
}

impl FileManifest {
    /// Whether the manifest holds together: its chunk size, one hash per
    /// chunk, and the hashes combining to the root it names. A receiver
    /// that checks each chunk against a checked manifest has checked the
    /// whole file.
    pub fn check(&self) -> Result<(), String> {
        if self.chunk_size != CHUNK_SIZE || self.chunks.len() as u64 != self.version.chunks() {
            return Err("the manifest's chunks do not fit the file's size".into());
        }
        let hashes: Option<Vec<[u8; 32]>> = self
            .chunks
            .iter()
            .map(|h| h.as_slice().try_into().ok())
            .collect();
        let hashes = hashes.ok_or("a chunk hash in the manifest is not 32 bytes")?;
        if root_of(&hashes, self.version.size).to_hex().as_str() != self.blake3 {
            return Err("the manifest's chunk hashes do not combine to its file hash".into());
        }
        Ok(())
    }

    /// Whether `data` is chunk `index` of this file.
    pub fn chunk_matches(&self, index: u64, data: &[u8]) -> bool {
        let expected = self.chunks.get(index as usize).map(|h| h.as_slice());
        expected == Some(&chunk_hash(index, data, self.chunks.len() as u64)[..])
    }
}

/// The hash of chunk `index` of a file of `chunks` chunks: its subtree's
/// chaining value, or, for a file of one chunk, the file's hash itself
/// (BLAKE3 has no chaining value for a lone root).
pub fn chunk_hash(index: u64, data: &[u8], chunks: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    if chunks <= 1 {
        hasher.update(data);
        return *hasher.finalize().as_bytes();
    }
    hasher.set_input_offset(index * CHUNK_SIZE);
    hasher.update(data);
    hasher.finalize_non_root()
}

/// The BLAKE3 hash of a file of `size` bytes from its chunks' hashes: the
/// chunks are the leaves of BLAKE3's tree above 1 MiB, merged as BLAKE3
/// splits its input (the left subtree is the largest power of two short
/// of the whole).
pub fn root_of(chunks: &[[u8; 32]], size: u64) -> blake3::Hash {
    match chunks {
        [] => blake3::hash(b""),
        [only] => blake3::Hash::from_bytes(*only),
        _ => {
            let (left, right) = children(chunks, size);
            hazmat::merge_subtrees_root(&left, &right, Mode::Hash)
        }
    }
}

/// The chaining value of the subtree over `chunks`, `len` bytes in all.
fn subtree(chunks: &[[u8; 32]], len: u64) -> ChainingValue {
    if let [only] = chunks {
        return *only;
    }
    let (left, right) = children(chunks, len);
    hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash)
}

/// The two children of the node over `chunks` (two or more), `len` bytes
/// in all: the left one the largest power of two short of the whole.
fn children(chunks: &[[u8; 32]], len: u64) -> (ChainingValue, ChainingValue) {
    let left = hazmat::left_subtree_len(len);
    let split = (left / CHUNK_SIZE) as usize;
    (
        subtree(&chunks[..split], left),
        subtree(&chunks[split..], len - left),
    )
}

/// A file a node serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub modified_ms: u64,
}

/// What a receiver asks for on a chunk stream: these chunks of this
/// version of the file, answered in order. A stream carries one request
/// after another until the receiver closes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    pub path: String,
    pub version: FileVersion,
    pub indices: Vec<u64>,
}

pub async fn write_chunk_request<W: AsyncWrite + Unpin>(
    io: &mut W,
    request: &ChunkRequest,
) -> io::Result<()> {
    write_frame(io, &encode(request, MAX_CHUNK_REQUEST)?).await
}

/// The next request on a stream, or `None` once the receiver closed it.
pub async fn read_chunk_request<R: AsyncRead + Unpin>(
    io: &mut R,
) -> io::Result<Option<ChunkRequest>> {
    let body = match read_frame(io, MAX_CHUNK_REQUEST).await {
        Ok(body) => body,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let request: ChunkRequest = decode(&body)?;
    if request.indices.is_empty() || request.indices.len() > MAX_CHUNKS_PER_REQUEST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a chunk request must ask for 1 to {MAX_CHUNKS_PER_REQUEST} chunks, not {}",
                request.indices.len()
            ),
        ));
    }
    Ok(Some(request))
}

/// A chunk's frame: a zero byte, its length (big-endian u32), its bytes.
const CHUNK_TAG: u8 = 0;
/// A refusal's frame: a one byte, then a CBOR frame of kind and reason.
const REFUSAL_TAG: u8 = 1;

pub async fn write_chunk<W: AsyncWrite + Unpin>(io: &mut W, data: &[u8]) -> io::Result<()> {
    let mut header = [CHUNK_TAG; 5];
    header[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    io.write_all(&header).await?;
    io.write_all(data).await
}

/// Refuses the rest of a request; the sender closes the stream after it.
pub async fn write_chunk_refusal<W: AsyncWrite + Unpin>(
    io: &mut W,
    refusal: &Refusal,
) -> io::Result<()> {
    io.write_all(&[REFUSAL_TAG]).await?;
    let body = encode(&(refusal.kind, &refusal.reason), MAX_REFUSAL)?;
    write_frame(io, &body).await?;
    io.close().await
}

/// Reads the next chunk, of `expected` bytes, into `buf` (whose capacity is
/// reused), or the refusal the sender sent instead.
pub async fn read_chunk<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    expected: usize,
) -> io::Result<Result<(), Refusal>> {
    let mut tag = [0u8; 1];
    io.read_exact(&mut tag).await?;
    match tag[0] {
        CHUNK_TAG => {
            let mut len = [0u8; 4];
            io.read_exact(&mut len).await?;
            let len = u32::from_be_bytes(len) as usize;
            if len != expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a chunk of {len} bytes where {expected} were due"),
                ));
            }
            buf.resize(len, 0);
            io.read_exact(buf).await?;
            Ok(Ok(()))
        }
        REFUSAL_TAG => {
            let body = read_frame(io, MAX_REFUSAL).await?;
            let (kind, reason): (RefusalKind, String) = decode(&body)?;
            Ok(Err(Refusal::new(kind, reason)))
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown chunk frame tag {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn manifest_of(bytes: &[u8]) -> FileManifest {
        let version = FileVersion {
            size: bytes.len() as u64,
            modified_ns: 0,
            inode: 0,
        };
        let count = version.chunks();
        let hashes: Vec<[u8; 32]> = bytes
            .chunks(CHUNK_SIZE as usize)
            .enumerate()
            .map(|(i, c)| chunk_hash(i as u64, c, count))
            .collect();
        FileManifest {
            path: "public/x".into(),
            version,
            chunk_size: CHUNK_SIZE,
            blake3: root_of(&hashes, version.size).to_hex().to_string(),
            chunks: hashes.iter().map(|h| h.to_vec().into()).collect(),
        }
    }

    /// The tree we build from chunk hashes must be BLAKE3's own: checked
    /// against `blake3::hash` over sizes at and around every shape.
    #[test]
    fn chunk_hashes_combine_to_the_hash_of_the_whole_file() {
        let mib = CHUNK_SIZE as usize;
        for size in [
            0,
            1,
            1024,
            mib - 1,
            mib,
            mib + 1,
            2 * mib,
            2 * mib + 7,
            3 * mib,
            3 * mib + 1,
            4 * mib,
            5 * mib - 3,
            7 * mib + 1,
            8 * mib,
            9 * mib + 5000,
        ] {
            let bytes = data(size);
            let manifest = manifest_of(&bytes);
            assert_eq!(
                manifest.blake3,
                blake3::hash(&bytes).to_hex().as_str(),
                "{size} bytes"
            );
            assert_eq!(manifest.check(), Ok(()), "{size} bytes");
        }
    }

    #[test]
    fn a_damaged_chunk_or_a_forged_manifest_is_caught() {
        let bytes = data(3 * CHUNK_SIZE as usize + 10);
        let manifest = manifest_of(&bytes);
        let second = &bytes[CHUNK_SIZE as usize..2 * CHUNK_SIZE as usize];
        assert!(manifest.chunk_matches(1, second));
        let mut damaged = second.to_vec();
        damaged[100] ^= 1;
        assert!(!manifest.chunk_matches(1, &damaged));
        // The right bytes in the wrong place are damage too.
        assert!(!manifest.chunk_matches(2, second));

        let mut forged = manifest.clone();
        forged.chunks[0] = vec![0u8; 32].into();
        assert!(forged.check().unwrap_err().contains("do not combine"));
        let mut short = manifest.clone();
        short.chunks.pop();
        assert!(short.check().is_err());
        let mut odd = manifest;
        odd.chunks[0] = vec![0u8; 31].into();
        assert!(odd.check().is_err());
    }

    #[tokio::test]
    async fn chunks_and_refusals_cross_a_stream() {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut a, mut b) = (a.compat(), b.compat());
        let request = ChunkRequest {
            path: "public/x".into(),
            version: FileVersion {
                size: 10,
                modified_ns: 1,
                inode: 2,
            },
            indices: vec![0],
        };
        let sender = async {
            let asked = read_chunk_request(&mut a).await.unwrap().unwrap();
            write_chunk(&mut a, b"0123456789").await.unwrap();
            a.flush().await.unwrap();
            write_chunk_refusal(&mut a, &Refusal::forbidden("no"))
                .await
                .unwrap();
            asked
        };
        let receiver = async {
            write_chunk_request(&mut b, &request).await.unwrap();
            let mut buf = Vec::new();
            read_chunk(&mut b, &mut buf, 10).await.unwrap().unwrap();
            let refused = read_chunk(&mut b, &mut buf, 10).await.unwrap().unwrap_err();
            (buf, refused)
        };
        let (asked, (buf, refused)) = tokio::join!(sender, receiver);
        assert_eq!(asked, request);
        assert_eq!(buf, b"0123456789");
        assert_eq!(refused.kind, RefusalKind::Forbidden);

        // Asking for nothing, or too much, is refused by the reader.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut a, mut b) = (a.compat(), b.compat());
        let greedy = ChunkRequest {
            indices: (0..=MAX_CHUNKS_PER_REQUEST as u64).collect(),
            ..request
        };
        write_chunk_request(&mut b, &greedy).await.unwrap();
        assert!(read_chunk_request(&mut a).await.is_err());
    }
}
