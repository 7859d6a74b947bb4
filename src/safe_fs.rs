//! Files opened beneath a directory handle, never through a link.
//!
//! Containers write into parts of the workspace while the node reads and
//! writes others. Checking a path and then opening it by name leaves a
//! moment in which a container can swap a component for a link, and the
//! node would follow it to `identity.key` or `/`. So the node holds a
//! handle on the directory of an area and opens every component below it
//! with `O_NOFOLLOW`: a link anywhere in the path is an error, not a
//! detour. Files are checked with `fstat` on the handle that is then read.

use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::fd::OwnedFd,
    path::{Component, Path},
};

use rustix::fs::{
    fstat, mkdirat, openat, renameat, unlinkat, AtFlags, FileType, Mode, OFlags, CWD,
};

/// A handle on a directory; paths below it are opened without following
/// any link.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Opens a directory the node itself chose (an area of its workspace).
    /// Links in `path` are followed: the node's owner set them up.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = openat(
            CWD,
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// The directory at `relative` below this one; with `create`, missing
    /// directories are made (mode 0755).
    pub fn subdir(&self, relative: &Path, create: bool) -> io::Result<Dir> {
        let mut dir = self.clone_handle()?;
        for name in components(relative)? {
            dir = dir.child_dir(name, create)?;
        }
        Ok(dir)
    }

    /// The regular file at `relative` below this one, opened for reading.
    pub fn open_file(&self, relative: &Path) -> io::Result<File> {
        let (parent, name) = split(relative)?;
        let dir = self.subdir(parent, false)?;
        // Non-blocking, so a FIFO planted in place of a file cannot hang
        // the open; it is refused below like anything else not regular.
        let fd = openat(
            &dir.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| link_error(e, relative))?;
        if FileType::from_raw_mode(fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", relative.display()),
            ));
        }
        let file = File::from(fd);
        // Reads block as usual from here on.
        rustix::fs::fcntl_setfl(&file, OFlags::empty())?;
        Ok(file)
    }

    /// `name` in this directory, opened for reading and writing: a new
    /// file with `new` (an existing one is an error), else an existing
    /// regular file or a new one. Never through a link.
    pub fn write_file(&self, name: &str, new: bool) -> io::Result<File> {
        let mut flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if new {
            flags |= OFlags::EXCL;
        }
        let fd = openat(&self.fd, single(name)?, flags, Mode::from_raw_mode(0o644))
            .map_err(|e| link_error(e, Path::new(name)))?;
        if FileType::from_raw_mode(fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is not a regular file"),
            ));
        }
        Ok(File::from(fd))
    }

    /// Renames `from` to `to`, both in this directory. A link at `to` is
    /// replaced, not followed.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        renameat(&self.fd, single(from)?, &self.fd, single(to)?)?;
        Ok(())
    }

    /// The bytes this process may still write on this directory's file
    /// system.
    pub fn free_bytes(&self) -> io::Result<u64> {
        let stats = rustix::fs::fstatvfs(&self.fd)?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// Removes the file (or link) `name` in this directory, if it is there.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match unlinkat(&self.fd, single(name)?, AtFlags::empty()) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            other => Ok(other?),
        }
    }

    fn child_dir(&self, name: &OsStr, create: bool) -> io::Result<Dir> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match openat(&self.fd, name, flags, Mode::empty()) {
            Err(rustix::io::Errno::NOENT) if create => {
                match mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                openat(&self.fd, name, flags, Mode::empty())
            }
            other => other,
        }
        .map_err(|e| link_error(e, Path::new(name)))?;
        Ok(Dir { fd })
    }

    fn clone_handle(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }
}

/// The names in a relative path; anything but plain names is refused.
fn components(relative: &Path) -> io::Result<Vec<&OsStr>> {
    relative
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", relative.display()),
            )),
        })
        .collect()
}

/// A path's directory and its last name.
fn split(relative: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = relative.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", relative.display()),
        )
    })?;
    Ok((relative.parent().unwrap_or(Path::new("")), name))
}

/// A single name, as the file operations of one directory take.
fn single(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{name}' is not a file name"),
        ));
    }
    Ok(name)
}

/// `O_NOFOLLOW` on a link fails with ELOOP (or ENOTDIR for a directory
/// component): say so plainly.
fn link_error(error: rustix::io::Errno, path: &Path) -> io::Error {
    match error {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} goes through a link or a non-directory", path.display()),
        ),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn links_are_refused_at_every_component() {
        let tmp = tempfile::tempdir().unwrap();
        let area = tmp.path().join("area");
        std::fs::create_dir_all(area.join("sub")).unwrap();
        std::fs::write(tmp.path().join("secret"), "secret").unwrap();
        std::fs::write(area.join("sub/ok.txt"), "ok").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), area.join("sub/link.txt")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), area.join("up")).unwrap();
        std::os::unix::fs::symlink("ok.txt", area.join("sub/inside.txt")).unwrap();
        let dir = Dir::open(&area).unwrap();

        let mut text = String::new();
        dir.open_file(Path::new("sub/ok.txt"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ok");
        for bad in [
            "sub/link.txt",
            "up/secret",
            "sub/inside.txt",
            "../secret",
            "/etc/passwd",
            "sub",
        ] {
            assert!(dir.open_file(Path::new(bad)).is_err(), "{bad} opened");
        }
        assert!(dir.subdir(Path::new("up"), true).is_err());
        assert!(dir.subdir(Path::new("up/x"), true).is_err());
        // A link where a new file goes is not followed.
        let sub = dir.subdir(Path::new("sub"), false).unwrap();
        assert!(sub.write_file("link.txt", false).is_err());
        assert!(sub.write_file("ok.txt", true).is_err(), "O_EXCL");
        sub.write_file("new.txt", true).unwrap();
        sub.rename("new.txt", "link.txt").unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("secret")).unwrap(),
            "secret"
        );
    }

    /// The attack on check-then-open: a file flips between a regular file
    /// and a link to a secret while the node opens it again and again.
    /// Opening by name after a check serves the secret now and then; a
    /// handle opened without following links never does.
    #[test]
    fn a_file_swapped_for_a_link_during_opens_never_yields_the_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let area = tmp.path().join("area");
        std::fs::create_dir_all(&area).unwrap();
        std::fs::write(tmp.path().join("identity.key"), "SECRET").unwrap();
        let dir = Dir::open(&area).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = {
            let (area, secret, stop) =
                (area.clone(), tmp.path().join("identity.key"), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::write(area.join(".r"), "honest");
                    let _ = std::fs::rename(area.join(".r"), area.join("r.txt"));
                    let _ = std::os::unix::fs::symlink(&secret, area.join(".l"));
                    let _ = std::fs::rename(area.join(".l"), area.join("r.txt"));
                }
            })
        };
        let mut leaked = 0;
        for _ in 0..20_000 {
            let mut text = String::new();
            if let Ok(mut file) = dir.open_file(Path::new("r.txt")) {
                let _ = file.read_to_string(&mut text);
            }
            leaked += usize::from(text == "SECRET");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flipper.join().unwrap();
        assert_eq!(leaked, 0, "the secret was read {leaked} times");
    }
}
