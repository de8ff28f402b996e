//! A file of fixed-size records, memory-mapped and grown by doubling: where the vector index
//! keeps its vectors, ids and neighbour lists, so they live in the page cache (which the kernel
//! can reclaim) and not on Valor's heap.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use memmap2::{MmapMut, MmapOptions, UncheckedAdvice};

/// Records a new column has room for.
const FIRST_CAPACITY: usize = 1024;

pub(super) struct Column {
    file: File,
    map: MmapMut,
    record: usize,
}

impl std::fmt::Debug for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Column")
            .field("record", &self.record)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Column {
    /// A new, zeroed column at `path` (replacing any file there), private to Valor.
    pub(super) fn create(path: &Path, record: usize) -> io::Result<Column> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.set_len((record * FIRST_CAPACITY) as u64)?;
        let map = map(&file)?;
        Ok(Column { file, map, record })
    }

    /// The column saved at `path`.
    pub(super) fn open(path: &Path, record: usize) -> io::Result<Column> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        if len == 0 || len % record as u64 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} bytes is not a whole number of {record}-byte records",
                    len
                ),
            ));
        }
        let map = map(&file)?;
        Ok(Column { file, map, record })
    }

    pub(super) fn record(&self) -> usize {
        self.record
    }

    pub(super) fn capacity(&self) -> usize {
        self.map.len() / self.record
    }

    /// Makes room for record `index`, doubling the file as often as needed.
    pub(super) fn reserve(&mut self, index: usize) -> io::Result<()> {
        let mut capacity = self.capacity();
        if index < capacity {
            return Ok(());
        }
        while capacity <= index {
            capacity *= 2;
        }
        self.map.flush()?;
        self.file.set_len((capacity * self.record) as u64)?;
        self.map = map(&self.file)?;
        Ok(())
    }

    /// Record `index` (the caller keeps `index` below the capacity).
    pub(super) fn get(&self, index: usize) -> &[u8] {
        let start = index * self.record;
        self.map.get(start..start + self.record).unwrap_or(&[])
    }

    pub(super) fn get_mut(&mut self, index: usize) -> &mut [u8] {
        let start = index * self.record;
        self.map
            .get_mut(start..start + self.record)
            .unwrap_or(&mut [])
    }

    /// The first `count` records, as one slice (for checksums).
    pub(super) fn prefix(&self, count: usize) -> &[u8] {
        self.map.get(..count * self.record).unwrap_or(&[])
    }

    /// Writes what changed to the file and hands the pages back to the page cache: the process
    /// keeps none of them resident until a search touches them again.
    pub(super) fn sync_and_release(&self) -> io::Result<()> {
        self.map.flush()?;
        // SAFETY: the mapping is shared and backed by a file that was just synced, so dropping
        // its pages loses nothing: the next access reads them back from the file.
        #[allow(unsafe_code)]
        let released = unsafe { self.map.unchecked_advise(UncheckedAdvice::DontNeed) };
        released
    }
}

#[allow(unsafe_code)]
fn map(file: &File) -> io::Result<MmapMut> {
    // SAFETY: the file is Valor's own, in a directory only Valor's user can enter (0700), and
    // is never truncated while mapped: only `reserve` changes its length, and it remaps at once
    // while holding the index's write lock.
    unsafe { MmapOptions::new().map_mut(file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_growth_release_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("column");
        let mut column = Column::create(&path, 8).unwrap();
        assert_eq!(column.capacity(), FIRST_CAPACITY);
        column.get_mut(3).copy_from_slice(&7u64.to_le_bytes());
        column.reserve(5000).unwrap();
        assert_eq!(column.capacity(), 8192);
        column.get_mut(5000).copy_from_slice(&9u64.to_le_bytes());
        column.sync_and_release().unwrap();
        assert_eq!(column.get(3), 7u64.to_le_bytes());
        drop(column);
        let column = Column::open(&path, 8).unwrap();
        assert_eq!(column.get(5000), 9u64.to_le_bytes());
        assert_eq!(column.prefix(4).len(), 32);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A file cut mid-record is refused.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(8 * 10 + 3)
            .unwrap();
        assert!(Column::open(&path, 8).is_err());
    }
}
