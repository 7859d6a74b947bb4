//! A file's new content written in full beside it, then put in its place
//! by a rename: a crash or a full disk leaves the old content or the new,
//! never half of either, and no temporary file behind.
//!
//! The two steps are apart on purpose: what needs space (writing and
//! syncing the content) happens first, and a change that must be recorded
//! elsewhere (the audit log) is recorded between the two; the rename needs
//! no new space, so a change in the log is a change on disk. A crash
//! between the record and the rename leaves the new content beside the
//! file, whole and synced: [`StagedFile::recover`] puts it in place at the
//! next start if the record names its hash, and removes it otherwise.

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
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!("{TEMPORARY}{}-{n}", std::process::id()));
        let temporary = path.with_file_name(name);
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

    /// The file the content is for.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The BLAKE3 hash of the content, in hex: what a record of the change
    /// names, so that [`StagedFile::recover`] knows it after a crash.
    pub fn blake3(&self) -> io::Result<String> {
        hash_of(self.temporary.as_ref().expect("staged until committed"))
    }

    /// Puts the content in place, and syncs the directory so that the
    /// rename itself outlives a power loss.
    pub fn commit(mut self) -> io::Result<()> {
        let temporary = self.temporary.take().expect("staged until committed");
        if let Err(e) = fs::rename(&temporary, &self.path) {
            let _ = fs::remove_file(&temporary);
            return Err(e);
        }
        sync_parent(&self.path);
        Ok(())
    }

    /// After a crash: the content staged for `path` and left beside it is
    /// put in place if its hash is `recorded` (the change was recorded,
    /// so it must be in force) and `path` does not hold it yet; any other
    /// is removed (its change was never recorded, or its write was cut
    /// short). Says what became of each.
    pub fn recover(path: &Path, recorded: Option<&str>) -> io::Result<Vec<Recovered>> {
        let mut done = Vec::new();
        let mut current = hash_of(path).ok();
        for leftover in leftovers(path)? {
            let hash = hash_of(&leftover).ok();
            if hash.is_some() && hash.as_deref() == recorded && current != hash {
                fs::rename(&leftover, path)?;
                sync_parent(path);
                current = hash;
                done.push(Recovered::PutInPlace(leftover));
            } else {
                fs::remove_file(&leftover)?;
                done.push(Recovered::Removed(leftover));
            }
        }
        Ok(done)
    }
}

/// What [`StagedFile::recover`] did with content left by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// Its change was recorded: it is in place now.
    PutInPlace(PathBuf),
    /// Its change was not recorded: it is gone.
    Removed(PathBuf),
}

/// What a temporary's name adds to its file's: `iris.toml.tmp<pid>-<n>`.
const TEMPORARY: &str = ".tmp";

/// The temporaries of `path` in its directory, oldest process first.
fn leftovers(path: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}{TEMPORARY}", name.to_string_lossy());
    let is_counter = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if rest
            .split_once('-')
            .is_some_and(|(pid, n)| is_counter(pid) && is_counter(n))
        {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The BLAKE3 hash of the file at `path`, in hex.
fn hash_of(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Syncs the directory of `path`, so that a rename in it outlives a power
/// loss. The content is in place either way; a directory that cannot be
/// synced only makes the rename less durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = fs::File::open(dir).and_then(|dir| dir.sync_all()) {
            tracing::warn!("cannot sync {} after a rename: {e}", dir.display());
        }
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

    /// A crash between the record and the rename: the content whose hash
    /// was recorded goes in place, any other is removed, and content
    /// already in place stays.
    #[test]
    fn content_left_by_a_crash_is_put_in_place_only_if_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iris.toml");
        fs::write(&path, "old").unwrap();
        let recorded = StagedFile::write(&path, b"recorded").unwrap();
        let hash = recorded.blake3().unwrap();
        std::mem::forget(recorded);
        let unrecorded = StagedFile::write(&path, b"never recorded").unwrap();
        std::mem::forget(unrecorded);
        fs::write(dir.path().join("iris.toml.tmp-x"), "not ours").unwrap();
        assert_eq!(names(dir.path()).len(), 4);

        let done = StagedFile::recover(&path, Some(&hash)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "recorded");
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!(names(dir.path()), ["iris.toml", "iris.toml.tmp-x"]);

        // Recorded, but already in place (or nothing recorded): removed.
        std::mem::forget(StagedFile::write(&path, b"recorded").unwrap());
        StagedFile::recover(&path, Some(&hash)).unwrap();
        std::mem::forget(StagedFile::write(&path, b"other").unwrap());
        StagedFile::recover(&path, None).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "recorded");
        assert_eq!(names(dir.path()), ["iris.toml", "iris.toml.tmp-x"]);
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
