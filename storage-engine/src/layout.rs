//! The data directory: how many shards it has and where their files live.
//!
//! ```text
//! <dir>/berth-layout            "berth data directory", version, shard count
//! <dir>/shard-0000/seg-00000001.dat   data segments (blobs, manifests)
//! <dir>/shard-0000/meta-00000001.log  metadata log
//! <dir>/shard-0000/ckpt-00000002.dat  metadata checkpoint
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// The file that records the layout version and the shard count.
const LAYOUT_FILE: &str = "berth-layout";
const LAYOUT_MAGIC: &str = "berth data directory";
const LAYOUT_VERSION: u32 = 1;

/// The most shards a data directory may have.
pub const MAX_SHARDS: u16 = 4096;

/// A data directory and its fixed shard count.
#[derive(Clone, Debug)]
pub struct Layout {
    dir: PathBuf,
    shards: u16,
}

impl Layout {
    /// Opens the data directory, creating it with `shards_if_new` shards.
    ///
    /// Uses plain blocking `std::fs`, so it can run before any executor
    /// starts. The shard count of an existing directory wins over
    /// `shards_if_new`.
    pub fn open_or_create(dir: &Path, shards_if_new: u16) -> Result<Layout> {
        let file = dir.join(LAYOUT_FILE);
        match fs::read_to_string(&file) {
            Ok(text) => Layout::parse(dir, &file, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Layout::create(dir, shards_if_new)
            }
            Err(e) => Err(StorageError::io(0, "read layout", file, e)),
        }
    }

    /// The number of shards, fixed when the directory was created.
    pub fn shard_count(&self) -> u16 {
        self.shards
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of one shard.
    pub fn shard_dir(&self, shard: u16) -> PathBuf {
        self.dir.join(format!("shard-{shard:04}"))
    }

    /// The path of one data segment of one shard.
    pub fn segment_path(&self, shard: u16, segment: u32) -> PathBuf {
        self.shard_dir(shard).join(segment_file_name(segment))
    }

    fn create(dir: &Path, shards: u16) -> Result<Layout> {
        if shards == 0 || shards > MAX_SHARDS {
            return Err(StorageError::InvalidArgument {
                op: "create data directory",
                detail: format!("shard count {shards} not in 1..={MAX_SHARDS}"),
            });
        }
        fs::create_dir_all(dir)
            .map_err(|e| StorageError::io(0, "create data directory", dir, e))?;

        let layout = Layout {
            dir: dir.to_path_buf(),
            shards,
        };
        for shard in 0..shards {
            let path = layout.shard_dir(shard);
            fs::create_dir_all(&path)
                .map_err(|e| StorageError::io(shard, "create shard dir", &path, e))?;
        }

        // IMPORTANT: the layout file appears atomically and only after the
        // shard directories exist, so a half-created directory is retried.
        let tmp = dir.join(format!("{LAYOUT_FILE}.tmp"));
        let text = format!("{LAYOUT_MAGIC}\nversion {LAYOUT_VERSION}\nshards {shards}\n");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join(LAYOUT_FILE))?;
            sync_dir(dir)
        };
        write().map_err(|e| StorageError::io(0, "write layout", dir.join(LAYOUT_FILE), e))?;
        Ok(layout)
    }

    fn parse(dir: &Path, file: &Path, text: &str) -> Result<Layout> {
        let bad = |detail: &str| StorageError::corrupt(file, 0, detail.to_string());
        let mut lines = text.lines();
        if lines.next() != Some(LAYOUT_MAGIC) {
            return Err(bad("not a berth layout file"));
        }

        let version = lines
            .next()
            .and_then(|l| l.strip_prefix("version "))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| bad("missing version line"))?;
        if version != LAYOUT_VERSION {
            return Err(StorageError::UnsupportedVersion {
                what: "layout",
                path: file.to_path_buf(),
                found: version,
                supported: LAYOUT_VERSION,
            });
        }

        let shards = lines
            .next()
            .and_then(|l| l.strip_prefix("shards "))
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|n| (1..=MAX_SHARDS).contains(n))
            .ok_or_else(|| bad("missing or invalid shard count"))?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            shards,
        })
    }
}

/// The file name of a data segment.
pub(crate) fn segment_file_name(segment: u32) -> String {
    format!("seg-{segment:08}.dat")
}

/// fsyncs a directory so that entries created or renamed in it survive a
/// crash.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_count_is_fixed_at_creation() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Layout::open_or_create(tmp.path(), 8).unwrap();
        assert_eq!(a.shard_count(), 8);
        let b = Layout::open_or_create(tmp.path(), 3).unwrap();
        assert_eq!(b.shard_count(), 8);
    }

    #[test]
    fn unknown_layout_version_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let text = format!("{LAYOUT_MAGIC}\nversion 9\nshards 2\n");
        fs::write(tmp.path().join(LAYOUT_FILE), text).unwrap();
        let err = Layout::open_or_create(tmp.path(), 2).unwrap_err();
        assert!(
            matches!(err, StorageError::UnsupportedVersion { .. }),
            "{err}"
        );
    }
}
