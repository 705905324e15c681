//! The buffer's error type. Every message names the database path, and where a stored entry is
//! at fault, its key (hex) and sequence number.

use std::path::PathBuf;

/// Why a buffer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The options cannot work (a zero limit, a percentage above 100).
    #[error("buffer at {path}: invalid options: {reason}")]
    InvalidOptions { path: PathBuf, reason: String },

    /// sled would not open the database for a reason that is not corruption (permissions, a
    /// lock held by another process, a sled version or config mismatch). The directory is left
    /// as it is.
    #[error("buffer at {path}: cannot open the sled database: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// The database looked corrupt and could not be moved aside.
    #[error(
        "buffer at {path}: the database is corrupt and could not be moved aside to {to}: {source}"
    )]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A disk reclaim interrupted by a crash could not be settled at open (the database from
    /// before it could not be put back at the path).
    #[error("buffer at {path}: {step}: {source}")]
    Reclaim {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A sled operation failed at run time.
    #[error("buffer at {path}: sled failed while {op}: {source}")]
    Sled {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: sled::Error,
    },

    /// A stored entry could not be read. It has been moved to the `quarantine` tree, so the
    /// next read continues after it.
    #[error("buffer at {path}: stored chunk at key {key_hex} (seq {seq:?}) is corrupt and was quarantined: {reason}")]
    Corrupt {
        path: PathBuf,
        key_hex: String,
        seq: Option<u64>,
        reason: String,
    },

    /// bincode could not encode the records.
    #[error("buffer at {path}: cannot encode a chunk of {records} records: {source}")]
    Encode {
        path: PathBuf,
        records: usize,
        #[source]
        source: bincode::error::EncodeError,
    },

    /// `append` was called with no records.
    #[error("buffer at {path}: an append needs at least one record")]
    EmptyAppend { path: PathBuf },

    /// One append is larger than the whole buffer (or than the largest chunk the format
    /// allows), so it could never be stored, whatever drains.
    #[error(
        "buffer at {path}: an append of {records} records / {bytes} encoded bytes can never fit \
         (max_records {max_records}, max_bytes {max_bytes}, largest chunk {max_chunk_bytes} bytes)"
    )]
    TooLarge {
        path: PathBuf,
        records: u64,
        bytes: u64,
        max_records: u64,
        max_bytes: u64,
        max_chunk_bytes: u64,
    },

    /// The sequence space is used up (2^64 - 1 records); the counter never wraps.
    #[error("buffer at {path}: sequence numbers exhausted at seq {next_seq}")]
    SeqExhausted { path: PathBuf, next_seq: u64 },

    /// The group-commit thread could not start.
    #[error("buffer at {path}: cannot start the commit thread: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The database's writes are failing (a full disk, EIO); the commit thread reopens it as
    /// soon as the disk has room (see `recovery.rs`).
    #[error("buffer at {path}: the database is failing and being reopened: {reason}")]
    Failing { path: PathBuf, reason: String },

    /// The group-commit thread has stopped (the buffer is closing, or it died).
    #[error("buffer at {path}: the commit thread has stopped")]
    Closed { path: PathBuf },
}
