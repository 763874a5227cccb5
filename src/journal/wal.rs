//! The write-ahead log: a fixed-size file, zero-filled once, written as a
//! ring of checksummed records. A receipt waits for one `fdatasync` of a few
//! sequential pages here instead of redb's commit of ~20 scattered ones; the
//! groups wait in the overlay until a checkpoint writes them to redb
//! (`store.rs`).
//!
//! Record: 32-byte header (magic, flags, epoch, lsn, payload length, CRC-32
//! of all that and the payload) then the payload. Lsns rise by one per record
//! for the life of the journal; the epoch is the journal's, drawn when its
//! redb file was created. A scan from the last checkpoint's position reads
//! records while each one is whole, of this epoch and the next lsn, so a torn
//! tail, stale bytes from an earlier lap, or a log left beside another
//! journal all end it. A record never straddles the end of the file: a wrap
//! marker (or too little room for a header) sends the next one to offset 0.
//! Space behind the last checkpoint is reused; the writer checkpoints before
//! the head would reach it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::store::JournalError;

const MAGIC: u32 = u32::from_le_bytes(*b"TWAL");
const HEADER: u64 = 32;
const FLAG_WRAP: u32 = 1;

/// One record found by [`Wal::scan`].
#[derive(Debug)]
pub(super) struct Found {
    pub lsn: u64,
    /// Offset just past the record.
    pub end: u64,
    pub payload: Vec<u8>,
}

/// An open log.
pub(super) struct Wal {
    file: File,
    size: u64,
    epoch: u64,
    /// Where the next record goes.
    head: u64,
    /// Start of the oldest record a durable checkpoint does not cover.
    tail: u64,
    /// Lsn of the last record written.
    lsn: u64,
    buf: Vec<u8>,
}

fn header(flags: u32, epoch: u64, lsn: u64, payload: &[u8]) -> [u8; HEADER as usize] {
    let len = payload.len() as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&flags.to_le_bytes());
    crc.update(&epoch.to_le_bytes());
    crc.update(&lsn.to_le_bytes());
    crc.update(&len.to_le_bytes());
    crc.update(payload);
    let mut h = [0u8; HEADER as usize];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&flags.to_le_bytes());
    h[8..16].copy_from_slice(&epoch.to_le_bytes());
    h[16..24].copy_from_slice(&lsn.to_le_bytes());
    h[24..28].copy_from_slice(&len.to_le_bytes());
    h[28..32].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

fn u32_at(h: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&h[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(h: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(b)
}

impl Wal {
    /// Open `path`, creating it zero-filled at `size` bytes when missing.
    /// An existing file keeps its size until [`Wal::resize`].
    pub fn open(path: &Path, size: u64, epoch: u64) -> Result<Self, JournalError> {
        let existing = std::fs::metadata(path).ok().map(|m| m.len());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut wal = Self {
            file,
            size: existing.unwrap_or(0),
            epoch,
            head: 0,
            tail: 0,
            lsn: 0,
            buf: Vec::new(),
        };
        if existing.is_none_or(|n| n < HEADER * 4) {
            wal.resize(size)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(wal)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Zero-fill the file at `size` bytes and start empty at offset 0. Only
    /// when nothing in it is needed any more (after a checkpoint).
    pub fn resize(&mut self, size: u64) -> Result<(), JournalError> {
        self.file.set_len(0)?;
        let zeros = vec![0u8; 1 << 20];
        let mut w = std::io::BufWriter::new(&self.file);
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            w.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        w.flush()?;
        drop(w);
        self.file.sync_all()?;
        self.size = size;
        self.head = 0;
        self.tail = 0;
        Ok(())
    }

    /// The records after `lsn`, starting at `offset`, as far as they run
    /// whole and in order.
    pub fn scan(&self, lsn: u64, offset: u64) -> Result<Vec<Found>, JournalError> {
        let mut found = Vec::new();
        let mut at = if offset + HEADER > self.size {
            0
        } else {
            offset
        };
        let mut want = lsn + 1;
        let mut h = [0u8; HEADER as usize];
        // Each record moves forward or wraps once; a full lap is the bound.
        let mut walked = 0u64;
        while walked <= self.size {
            if at + HEADER > self.size {
                walked += self.size - at;
                at = 0;
                continue;
            }
            self.file.read_exact_at(&mut h, at)?;
            let flags = u32_at(&h, 4);
            let len = u64::from(u32_at(&h, 24));
            if u32_at(&h, 0) != MAGIC
                || u64_at(&h, 8) != self.epoch
                || u64_at(&h, 16) != want
                || at + HEADER + len > self.size
            {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            self.file.read_exact_at(&mut payload, at + HEADER)?;
            if header(flags, self.epoch, want, &payload) != h {
                break;
            }
            if flags & FLAG_WRAP != 0 {
                walked += self.size - at;
                at = 0;
                continue;
            }
            at += HEADER + len;
            walked += HEADER + len;
            found.push(Found {
                lsn: want,
                end: at,
                payload,
            });
            want += 1;
        }
        Ok(found)
    }

    /// Continue after `lsn`, writing next at `head`, with nothing to keep
    /// behind it (everything before is checkpointed).
    pub fn restart(&mut self, lsn: u64, head: u64) {
        self.lsn = lsn;
        self.head = if head + HEADER > self.size { 0 } else { head };
        self.tail = self.head;
    }

    /// Bytes between the last checkpoint and the head.
    pub fn used(&self) -> u64 {
        (self.head + self.size - self.tail) % self.size
    }

    /// Whether a record of `payload` bytes fits without reaching the tail.
    pub fn fits(&self, payload: usize) -> bool {
        let need = HEADER + payload as u64;
        let skip = if self.head + need > self.size {
            self.size - self.head
        } else {
            0
        };
        self.used() + skip + need < self.size
    }

    /// Lsn of the last record written.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Where the next record goes.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// A checkpoint covers everything before `offset`.
    pub fn set_tail(&mut self, offset: u64) {
        self.tail = offset;
    }

    /// Append one record (the caller checked [`Wal::fits`]); with `sync`,
    /// `fdatasync` before returning, which also makes every earlier record
    /// durable. On error the head and lsn stay, and the next record
    /// overwrites the attempt.
    pub fn append(&mut self, payload: &[u8], sync: bool) -> Result<(), JournalError> {
        let lsn = self.lsn + 1;
        let need = HEADER + payload.len() as u64;
        if need > self.size / 2 {
            return Err(JournalError::Corrupt(format!(
                "a group of {} bytes is too large for a {}-byte log",
                payload.len(),
                self.size
            )));
        }
        let mut at = self.head;
        if at + need > self.size {
            if at + HEADER <= self.size {
                self.file
                    .write_all_at(&header(FLAG_WRAP, self.epoch, lsn, &[]), at)?;
            }
            at = 0;
        }
        self.buf.clear();
        self.buf
            .extend_from_slice(&header(0, self.epoch, lsn, payload));
        self.buf.extend_from_slice(payload);
        self.file.write_all_at(&self.buf, at)?;
        if sync {
            self.file.sync_data()?;
        }
        self.lsn = lsn;
        self.head = at + need;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: u64) -> Vec<u8> {
        vec![n as u8; 100 + (n as usize % 7) * 50]
    }

    #[test]
    fn records_come_back_in_order_across_laps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wal");
        let mut w = Wal::open(&path, 4096, 7).unwrap();
        assert_eq!(w.size(), 4096);
        // Several laps: the tail follows the head, as checkpoints would.
        let (mut from_lsn, mut from_at) = (0, 0);
        for n in 1..=100u64 {
            assert!(w.fits(payload(n).len()));
            w.append(&payload(n), n % 3 == 0).unwrap();
            let lsn = w.lsn();
            assert_eq!(lsn, n);
            if n % 5 == 0 {
                let found = w.scan(from_lsn, from_at).unwrap();
                assert_eq!(found.len(), 5, "at {n}");
                for (i, f) in found.iter().enumerate() {
                    assert_eq!(f.lsn, from_lsn + 1 + i as u64);
                    assert_eq!(f.payload, payload(f.lsn));
                }
                (from_lsn, from_at) = (n, w.head());
                w.set_tail(w.head());
            }
        }
        // Reopened: the same file, the same records after the last mark.
        w.append(&payload(101), true).unwrap();
        drop(w);
        let w = Wal::open(&path, 8192, 7).unwrap();
        assert_eq!(w.size(), 4096, "an existing log keeps its size");
        let found = w.scan(from_lsn, from_at).unwrap();
        assert_eq!(found.iter().map(|f| f.lsn).collect::<Vec<_>>(), [101]);
        // Another epoch reads nothing.
        let other = Wal::open(&path, 4096, 8).unwrap();
        assert!(other.scan(from_lsn, from_at).unwrap().is_empty());
    }

    #[test]
    fn a_torn_or_stale_record_ends_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wal");
        let mut w = Wal::open(&path, 1 << 16, 1).unwrap();
        let mut ends = Vec::new();
        for n in 1..=4u64 {
            w.append(&payload(n), false).unwrap();
            ends.push(w.head());
        }
        // Flip one payload byte of record 3: records 1 and 2 remain.
        let mut b = [0u8; 1];
        w.file.read_exact_at(&mut b, ends[1] + HEADER + 10).unwrap();
        w.file
            .write_all_at(&[b[0] ^ 0xff], ends[1] + HEADER + 10)
            .unwrap();
        let lsns: Vec<u64> = w.scan(0, 0).unwrap().iter().map(|f| f.lsn).collect();
        assert_eq!(lsns, [1, 2]);
        // After a restart at lsn 10, the old records are stale.
        w.restart(10, 0);
        w.append(&payload(11), true).unwrap();
        let lsns: Vec<u64> = w.scan(10, 0).unwrap().iter().map(|f| f.lsn).collect();
        assert_eq!(lsns, [11]);
    }

    #[test]
    fn the_head_never_reaches_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(&dir.path().join("t.wal"), 4096, 1).unwrap();
        let mut n = 0;
        while w.fits(500) {
            w.append(&[1u8; 500], false).unwrap();
            n += 1;
        }
        assert_eq!(n, 7, "4096 bytes hold seven 532-byte records");
        assert!(w.append(&[0u8; 3000], false).is_err(), "over half the log");
        w.set_tail(w.head());
        assert!(w.fits(500));
    }
}
