//! A file's new content written in full beside it, then put in its place
//! by a rename: a crash or a full disk leaves the old content or the new,
//! never half of either, and no temporary file behind.
//!
//! The two steps are apart on purpose: what needs space (writing and
//! syncing the content) happens first, and a change that must be recorded
//! elsewhere (the audit log) is recorded between the two; the rename needs
//! no new space, so a change in the log is a change on disk.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// New content for `path`, on disk under a temporary name until
/// [`StagedFile::commit`]; removed if dropped before.
#[derive(Debug)]
pub struct StagedFile {
    path: PathBuf,
    temporary: Option<PathBuf>,
}

impl StagedFile {
    /// Writes `bytes`, readable by the owner only, and syncs them. On any
    /// error nothing is left behind.
    pub fn write(path: &Path, bytes: &[u8]) -> io::Result<Self> {
        Self::write_with_mode(path, bytes, 0o600)
    }

    /// [`StagedFile::write`] with the permissions `mode`.
    pub fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<Self> {
        Self::write_from(path, mode, |file| file.write_all(bytes))
    }

    /// [`StagedFile::write_with_mode`] with content that `fill` writes, a
    /// piece at a time (buffered), so that large content need not be held
    /// in memory.
    pub fn write_from(
        path: &Path,
        mode: u32,
        fill: impl FnOnce(&mut io::BufWriter<fs::File>) -> io::Result<()>,
    ) -> io::Result<Self> {
        // A temporary name of its own per call: two writers of one file
        // must not rename each other's half-written temporary away.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let temporary = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let staged = Self {
            path: path.to_owned(),
            temporary: Some(temporary.clone()),
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)?;
        // The mode above applies only to new files; make sure of it.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        let mut buffered = io::BufWriter::new(file);
        fill(&mut buffered)?;
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(staged)
    }

    /// Puts the content in place, and syncs the directory so that the
    /// rename itself outlives a power loss.
    pub fn commit(mut self) -> io::Result<()> {
        let temporary = self.temporary.take().expect("staged until committed");
        if let Err(e) = fs::rename(&temporary, &self.path) {
            let _ = fs::remove_file(&temporary);
            return Err(e);
        }
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The content is in place either way; a directory that cannot
            // be synced only makes the rename less durable.
            if let Err(e) = fs::File::open(dir).and_then(|dir| dir.sync_all()) {
                tracing::warn!("cannot sync {} after a rename: {e}", dir.display());
            }
        }
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(temporary) = self.temporary.take() {
            let _ = fs::remove_file(temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn content_is_in_place_only_once_committed_and_nothing_stays_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iris.toml");
        fs::write(&path, "old").unwrap();
        let staged = StagedFile::write(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names(dir.path()).len(), 2, "the temporary is beside it");
        drop(staged);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names(dir.path()), ["iris.toml"]);

        StagedFile::write(&path, b"new").unwrap().commit().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names(dir.path()), ["iris.toml"]);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_write_that_fails_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename fails.
        let path = dir.path().join("state.json");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        let err = StagedFile::write(&path, b"{}").unwrap().commit();
        assert!(err.is_err());
        assert_eq!(names(dir.path()), ["state.json"]);
    }
}
