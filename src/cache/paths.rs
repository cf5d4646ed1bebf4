//! Where caches and the files around them live, how their names are made, and the temporary
//! file a build writes before it is renamed into place.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

pub const CACHE_EXTENSION: &str = "slipcache";

/// `$SLIPSTREAM_CACHE_DIR`, else `$XDG_CACHE_HOME/slipstream`, else `~/.cache/slipstream`.
pub fn default_cache_dir() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("SLIPSTREAM_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("slipstream");
    }
    match non_empty("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("slipstream"),
        None => std::env::temp_dir().join("slipstream-cache"),
    }
}

/// The cache file for a dataset directory: its name plus a hash of its absolute path.
pub fn cache_path(dataset_root: &Path, cache_dir: &Path) -> PathBuf {
    let name = file_name_part(
        &dataset_root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into()),
    );
    let hash = xxhash_rust::xxh3::xxh3_64(dataset_root.as_os_str().as_encoded_bytes());
    cache_dir.join(format!("{name}-{hash:016x}.{CACHE_EXTENSION}"))
}

/// `text` with every character but ASCII letters, digits, `-`, `_` and `.` replaced by `_`,
/// for names of files and directories we create.
pub(super) fn file_name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A file under a temporary name next to its destination; removed unless persisted.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    persisted: bool,
}

impl TempFile {
    pub(super) fn create(dest: &Path) -> Result<TempFile> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).at(dir)?;
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let path = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        Ok(TempFile {
            path,
            persisted: false,
        })
    }

    pub(super) fn persist(mut self, dest: &Path) -> Result<()> {
        std::fs::rename(&self.path, dest).at(dest)?;
        self.persisted = true;
        // Make the rename itself durable.
        if let Some(dir) = dest.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
