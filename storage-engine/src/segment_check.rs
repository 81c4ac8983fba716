//! An offline check of every record in every segment file, for
//! `berth check`: headers decode, CRCs match, records stay inside their
//! file.
//!
//! NOTE: plain blocking reads; it runs on a stopped data directory, never
//! on an executor that serves requests.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::checkpoint::parse_gen;
use crate::digest::Digest;
use crate::layout::Layout;
use crate::record::{verify_record, RecordHeader, BLOCK_BYTES};
use crate::recovery::data_regions;

/// What [`check_segments`] found.
#[derive(Debug, Default)]
pub struct SegmentCheck {
    /// Records read and checked.
    pub records: u64,
    /// Records (or blocks) that failed.
    pub problems: Vec<BadRecord>,
}

/// One record that failed its check.
#[derive(Debug)]
pub struct BadRecord {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the record in it.
    pub offset: u64,
    /// The digest its header names, when the header was readable.
    pub digest: Option<Digest>,
    /// What is wrong.
    pub what: String,
}

/// Reads every segment file of every shard and checks each record's
/// header and payload CRC.
pub fn check_segments(layout: &Layout) -> SegmentCheck {
    let mut check = SegmentCheck::default();
    for shard in 0..layout.shard_count() {
        let Ok(entries) = std::fs::read_dir(layout.shard_dir(shard)) else {
            continue;
        };
        // NOTE: checkpoints end in `.dat` too but hold no records; only
        // names that parse as a segment are read.
        let mut segments: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let segment = parse_gen(name.to_str()?, "seg-", ".dat")?;
                Some((segment, e.path()))
            })
            .collect();
        segments.sort_unstable();
        for (_, path) in segments {
            check_segment(&path, &mut check);
        }
    }
    check
}

fn check_segment(path: &Path, check: &mut SegmentCheck) {
    let mut report = |offset: u64, digest: Option<Digest>, what: String| {
        check.problems.push(BadRecord {
            path: path.to_path_buf(),
            offset,
            digest,
            what,
        })
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => {
            report(0, None, format!("cannot open: {error}"));
            return;
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);

    // The first block is the segment's own header; records follow, in the
    // regions the file system holds data for: the unwritten end of a
    // preallocated segment and the holes punched where dead records were
    // are skipped without reading them.
    let mut records = 0;
    let mut head = vec![0u8; BLOCK_BYTES as usize];
    let mut record = Vec::new();
    for (start, end) in data_regions(&file, BLOCK_BYTES, len) {
        let mut pos = start;
        while pos + BLOCK_BYTES <= end {
            if let Err(error) = file.read_exact_at(&mut head, pos) {
                report(pos, None, format!("read failed: {error}"));
                break;
            }
            if head.iter().all(|&b| b == 0) {
                pos += BLOCK_BYTES;
                continue;
            }
            let header = match RecordHeader::decode(&head) {
                Ok(header) if pos + header.record_bytes() <= len => header,
                Ok(_) => {
                    report(pos, None, "record runs past the file's end".to_owned());
                    pos += BLOCK_BYTES;
                    continue;
                }
                Err(error) => {
                    report(pos, None, format!("bad record header: {error}"));
                    pos += BLOCK_BYTES;
                    continue;
                }
            };
            record.resize(header.record_bytes() as usize, 0);
            match file.read_exact_at(&mut record, pos) {
                Ok(()) => {
                    if let Err(error) = verify_record(&header, &record) {
                        report(pos, header.digest, format!("record CRC: {error}"));
                    }
                }
                Err(error) => report(pos, header.digest, format!("read failed: {error}")),
            }
            records += 1;
            pos += header.record_bytes();
        }
    }
    check.records += records;
}
