//! The package pool: every .deb a build used, kept by content (sha256), so
//! a lock stays buildable after the archive drops its versions (Debian's
//! security suite keeps only the newest version of each package).
//!
//! Layout: `POOL/sha256/<hex>.deb`, nothing else; the same layout is what
//! `keel pool export` writes next to a release, so an exported pool is
//! itself a pool (`keel build --pool DIR`). Every file is checked against
//! the lock's digest when it goes in and again when a build takes it out:
//! a .deb whose digest differs is refused, never used.

use std::path::{Path, PathBuf};

use crate::fsutil::sha256_file;
use crate::lock::{Lock, LockedPackage};

/// What went wrong with the pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{file}: sha256 {got}, but the lock records {want} for {pin}: refusing this .deb")]
    Digest {
        file: PathBuf,
        pin: String,
        want: String,
        got: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the pool {pool} lacks {count} of the lock's packages: {list}")]
    Incomplete {
        pool: PathBuf,
        count: usize,
        list: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PoolError + '_ {
    move |source| PoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A package pool directory.
#[derive(Debug, Clone)]
pub struct Pool {
    dir: PathBuf,
}

/// What [`Pool::harvest`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Harvest {
    /// .debs newly added.
    pub added: usize,
    /// Already in the pool.
    pub present: usize,
    /// Locked packages with no .deb in the pool nor in the directory.
    pub absent: usize,
}

impl Pool {
    /// The default pool of a cache directory.
    pub fn default_dir(cache_dir: &Path) -> PathBuf {
        cache_dir.join("pool")
    }

    /// Opens (creating when needed) the pool at `dir`.
    pub fn open(dir: &Path) -> Result<Pool, PoolError> {
        let objects = dir.join("sha256");
        std::fs::create_dir_all(&objects).map_err(io(&objects))?;
        Ok(Pool {
            dir: dir.to_path_buf(),
        })
    }

    /// The pool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn object(&self, sha256: &str) -> PathBuf {
        self.dir.join("sha256").join(format!("{sha256}.deb"))
    }

    /// Whether the pool holds a .deb with this digest (by name; the content
    /// is checked when it is taken out).
    pub fn contains(&self, pkg: &LockedPackage) -> bool {
        is_hex_digest(&pkg.sha256) && self.object(&pkg.sha256).is_file()
    }

    /// Adds `file` as `pkg`'s .deb after checking its digest. Returns
    /// whether it was new. The copy is atomic: a temp file in the pool,
    /// synced, renamed.
    pub fn add(&self, pkg: &LockedPackage, file: &Path) -> Result<bool, PoolError> {
        if self.contains(pkg) {
            return Ok(false);
        }
        verify(pkg, file)?;
        let dest = self.object(&pkg.sha256);
        let mut src = std::fs::File::open(file).map_err(io(file))?;
        keel_cmd::fs::write_atomic_with(&dest, 0o644, |f| std::io::copy(&mut src, f).map(drop))
            .map_err(io(&dest))?;
        Ok(true)
    }

    /// Adds every locked package whose .deb (apt's file name) is in
    /// `archives`, e.g. the package cache apt downloaded into.
    pub fn harvest(&self, lock: &Lock, archives: &Path) -> Result<Harvest, PoolError> {
        let mut h = Harvest::default();
        for pkg in lock.all_packages() {
            if self.contains(pkg) {
                h.present += 1;
                continue;
            }
            let file = archives.join(pkg.deb_file_name());
            if file.is_file() {
                self.add(pkg, &file)?;
                h.added += 1;
            } else {
                h.absent += 1;
            }
        }
        Ok(h)
    }

    /// Copies `pkgs`' .debs into `dest` under apt's file names, checking
    /// each copy's digest (a tampered pool file is refused here).
    pub fn stage(&self, pkgs: &[LockedPackage], dest: &Path) -> Result<(), PoolError> {
        std::fs::create_dir_all(dest).map_err(io(dest))?;
        let missing: Vec<&LockedPackage> = pkgs.iter().filter(|p| !self.contains(p)).collect();
        if !missing.is_empty() {
            return Err(self.incomplete(&missing));
        }
        for pkg in pkgs {
            let to = dest.join(pkg.deb_file_name());
            std::fs::copy(self.object(&pkg.sha256), &to).map_err(io(&to))?;
            verify(pkg, &to)?;
        }
        Ok(())
    }

    /// Writes the pool of one lock into `dest` (same layout, plus a copy of
    /// the lock): what a release archives to stay buildable.
    pub fn export(&self, lock: &Lock, dest: &Path) -> Result<usize, PoolError> {
        let pkgs = lock.all_packages();
        let missing: Vec<&LockedPackage> =
            pkgs.iter().copied().filter(|p| !self.contains(p)).collect();
        if !missing.is_empty() {
            return Err(self.incomplete(&missing));
        }
        let out = Pool::open(dest)?;
        for pkg in &pkgs {
            out.add(pkg, &self.object(&pkg.sha256))?;
        }
        let lock_file = dest.join(crate::lock::FILE_NAME);
        keel_cmd::fs::write_atomic(&lock_file, lock.to_text().as_bytes(), 0o644)
            .map_err(io(&lock_file))?;
        Ok(pkgs.len())
    }

    fn incomplete(&self, missing: &[&LockedPackage]) -> PoolError {
        let mut list: Vec<String> = missing.iter().take(20).map(|p| p.pin()).collect();
        if missing.len() > 20 {
            list.push(format!("and {} more", missing.len() - 20));
        }
        PoolError::Incomplete {
            pool: self.dir.clone(),
            count: missing.len(),
            list: list.join(", "),
        }
    }
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks `file` against `pkg`'s locked digest.
pub fn verify(pkg: &LockedPackage, file: &Path) -> Result<(), PoolError> {
    let got = sha256_file(file).map_err(io(file))?;
    if got != pkg.sha256 {
        return Err(PoolError::Digest {
            file: file.to_path_buf(),
            pin: pkg.pin(),
            want: pkg.sha256.clone(),
            got,
        });
    }
    Ok(())
}

pub mod cli;

#[cfg(test)]
mod tests;
