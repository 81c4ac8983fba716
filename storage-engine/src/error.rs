//! The errors of the storage engine.
//!
//! Every variant carries enough context (the operation, the path, the digest
//! or the shard) that a log line built from it needs nothing else.

use std::io;
use std::path::PathBuf;

use crate::digest::{Digest, DigestError};

/// The result type of every fallible storage call.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The bytes hashed to another digest than the one the client announced.
    #[error("digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Box<Digest>,
        /// The digest of the bytes actually stored.
        actual: Box<Digest>,
    },

    /// No upload session with this id exists on this shard.
    #[error("upload {id} is unknown on shard {shard}")]
    UploadUnknown {
        /// The shard asked.
        shard: u16,
        /// The upload id as text.
        id: String,
    },

    /// Another append to the same upload is still in progress.
    #[error("upload {id} already has a writer")]
    UploadBusy {
        /// The upload id as text.
        id: String,
    },

    /// The disk (or the configured capacity) is full.
    #[error("no space left for {op} on shard {shard}: {detail}")]
    NoSpace {
        /// The shard that ran out of space.
        shard: u16,
        /// What was being written.
        op: &'static str,
        /// The limit or the system error.
        detail: String,
    },

    /// A durable write failed earlier; the shard refuses writes until it is
    /// reopened. Reads are still served.
    #[error("shard {shard} is poisoned after a failed sync: {cause}")]
    Poisoned {
        /// The poisoned shard.
        shard: u16,
        /// The first failure that poisoned it.
        cause: String,
    },

    /// Bytes on disk failed a magic, bounds or checksum check.
    #[error("corrupt data in {path} at offset {offset}: {detail}")]
    Corrupt {
        /// The file that holds the bad bytes.
        path: PathBuf,
        /// Byte offset of the bad record or header in that file.
        offset: u64,
        /// What check failed.
        detail: String,
    },

    /// A file was written by a format version this build does not know.
    #[error("unsupported {what} version {found} in {path} (this build reads {supported})")]
    UnsupportedVersion {
        /// What kind of header (record, layout, checkpoint, log).
        what: &'static str,
        /// The file that carries it.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this build understands.
        supported: u32,
    },

    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (for example "fdatasync segment").
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },

    /// The caller passed a value outside a documented limit.
    #[error("invalid argument to {op}: {detail}")]
    InvalidArgument {
        /// The call that refused the argument.
        op: &'static str,
        /// Which limit was crossed.
        detail: String,
    },

    /// Another process (or another `Shard` value) has this shard open.
    #[error("shard {shard} is already open ({path})")]
    ShardLocked {
        /// The shard.
        shard: u16,
        /// Its lock file.
        path: PathBuf,
    },

    /// A digest string could not be parsed.
    #[error(transparent)]
    Digest(#[from] DigestError),

    /// The blob location names a record that is not of the expected kind.
    #[error("location {location} does not name a blob: {detail}")]
    BadLocation {
        /// The location as text.
        location: String,
        /// What was found instead.
        detail: String,
    },
}

impl StorageError {
    /// Builds an [`StorageError::Io`], mapping ENOSPC and EDQUOT to
    /// [`StorageError::NoSpace`] so callers can tell a full disk apart.
    pub(crate) fn io(
        shard: u16,
        op: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> StorageError {
        let path = path.into();
        // glommio's errors keep the kind but not the errno.
        let full = matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            || source.kind() == std::io::ErrorKind::StorageFull;
        if full {
            return StorageError::NoSpace {
                shard,
                op,
                detail: format!("{}: {source}", path.display()),
            };
        }
        StorageError::Io { op, path, source }
    }

    /// Builds a [`StorageError::Corrupt`].
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> StorageError {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// True when this error means the disk or the configured capacity is
    /// full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::NoSpace { .. })
    }
}
