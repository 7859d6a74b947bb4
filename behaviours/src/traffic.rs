//! What each protocol carried: messages and bytes, in and out, counted
//! where the bytes are framed. The node reads these for its metrics; the
//! counters only ever grow.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// One protocol's counters.
#[derive(Debug, Default)]
pub struct Traffic {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
}

/// A reading of one [`Traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
}

impl Traffic {
    /// One message of `bytes` bytes came in.
    pub fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One message of `bytes` bytes went out.
    pub fn sent(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            messages_in: self.messages_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// The counters of each protocol a node speaks; clones share them.
#[derive(Debug, Default, Clone)]
pub struct ProtocolTraffic {
    /// Request-response commands (the control protocol),
    /// counted by the codec.
    pub control: Arc<Traffic>,
    /// The map's gossip messages, counted by the node as it publishes and
    /// receives them (relayed copies are gossipsub's and not counted).
    pub map: Arc<Traffic>,
    /// File chunks (the chunk stream protocol): a message is a
    /// chunk, counted by the node that sends or receives it.
    pub chunks: Arc<Traffic>,
}

impl ProtocolTraffic {
    /// Each protocol's name (as the metrics label it) and reading.
    pub fn counts(&self) -> [(&'static str, TrafficCounts); 3] {
        [
            ("control", self.control.counts()),
            ("map", self.map.counts()),
            ("chunks", self.chunks.counts()),
        ]
    }
}
