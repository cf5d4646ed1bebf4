//! Opening a dataset's files: regular files only, and reads bounded by what the caller
//! expects. Opening a FIFO blocks until a writer appears, and a device can be endless; a path
//! that is neither a regular file nor missing is a format error naming it.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::error::{Error, IoContext, Location, Result};

/// `path` opened for reading, if it is a regular file. The open itself never blocks.
pub fn open_regular(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        // Without it, opening a FIFO waits for a writer. Reads of regular files ignore it.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .at(path)?;
    let kind = file.metadata().at(path)?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "a directory"
        };
        return Err(Error::format(
            Location::file(path),
            format!("not a regular file ({what}); dataset files must be regular files"),
        ));
    }
    Ok(file)
}

/// Append the whole regular file at `path` to `into`, failing if it holds more than `limit`
/// bytes (or memory for it cannot be had) instead of reading on.
pub fn read_bounded(path: &Path, limit: u64, into: &mut Vec<u8>) -> Result<()> {
    let file = open_regular(path)?;
    let len = file.metadata().at(path)?.len();
    let too_large = |len: u64| {
        Error::format(
            Location::file(path),
            format!("{len} bytes, more than the {limit} expected"),
        )
    };
    if len > limit {
        return Err(too_large(len));
    }
    into.try_reserve(len as usize).map_err(|_| {
        Error::io(
            path,
            std::io::Error::other(format!("not enough memory to read {len} bytes")),
        )
    })?;
    // One byte past the limit tells a file that grew since from one that did not.
    let read = file.take(limit + 1).read_to_end(into).at(path)? as u64;
    if read > limit {
        return Err(too_large(read));
    }
    Ok(())
}

/// What identifies the version of a local file in its dataset's fingerprint, which decides
/// whether a cache still matches its dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fingerprint {
    /// Size and modification time: free, and what any tool that writes a new file changes.
    #[default]
    Mtime,
    /// A hash of the bytes (xxh3, read at disk speed): for datasets whose files are rewritten
    /// in place with their modification times kept.
    Content,
}

impl std::str::FromStr for Fingerprint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Fingerprint> {
        match s {
            "mtime" => Ok(Fingerprint::Mtime),
            "content" => Ok(Fingerprint::Content),
            other => Err(Error::invalid(format!(
                "fingerprint must be 'mtime' or 'content', not {other:?}"
            ))),
        }
    }
}

/// The version of the file at `path` (whose metadata is `meta`), as `fingerprint` says: its
/// modification time in nanoseconds, or a hash of its bytes.
pub fn file_version(path: &Path, meta: &Metadata, fingerprint: Fingerprint) -> Result<u64> {
    Ok(match fingerprint {
        Fingerprint::Mtime => meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64),
        Fingerprint::Content => content_hash(path)?,
    })
}

/// The fingerprint of a dataset made of the regular files `paths` in format `kind`: a hash
/// of each file's name, size and version; and the files' sizes.
pub fn files_fingerprint(
    kind: &str,
    paths: &[PathBuf],
    fingerprint: Fingerprint,
) -> Result<(String, Vec<u64>)> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(kind.as_bytes());
    hasher.update(&[0]);
    let mut sizes = Vec::with_capacity(paths.len());
    for path in paths {
        let meta = open_regular(path)?.metadata().at(path)?;
        hasher.update(path.file_name().unwrap_or_default().as_encoded_bytes());
        hasher.update(&[0]);
        hasher.update(&meta.len().to_le_bytes());
        hasher.update(&file_version(path, &meta, fingerprint)?.to_le_bytes());
        sizes.push(meta.len());
    }
    Ok((format!("{:032x}", hasher.digest128()), sizes))
}

/// The file names of `paths`, for a source's description in its cache header.
pub fn file_names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// A hash of the bytes of the regular file at `path` (xxh3, read at disk speed).
fn content_hash(path: &Path) -> Result<u64> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut file = open_regular(path)?;
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hasher.digest())
}

/// The files of a sharded dataset, sorted by name, and the dataset's root as its cache is named
/// after it: `root` itself when it is a file; the files of directory `root` named `*.{ext}`; or
/// the files matching `root`'s last component when it is a pattern (`*` any characters, `?`
/// one: `/data/train-*.parquet`).
pub fn shard_files(root: &Path, ext: &str) -> Result<(PathBuf, Vec<PathBuf>)> {
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned());
    let (dir, pattern) = match name {
        Some(name) if name.contains(['*', '?']) => {
            let parent = root.parent().filter(|p| !p.as_os_str().is_empty());
            (
                parent.unwrap_or(Path::new(".")).canonicalize().at(root)?,
                name,
            )
        }
        _ => {
            let root = root.canonicalize().at(root)?;
            if !root.is_dir() {
                return Ok((root.clone(), vec![root]));
            }
            (root, format!("*.{ext}"))
        }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).at(&dir)? {
        let path = entry.at(&dir)?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if glob_match(pattern.as_bytes(), name.as_bytes()) && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort();
    let root = if pattern == format!("*.{ext}") {
        dir
    } else {
        dir.join(pattern)
    };
    Ok((root, files))
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` one.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], name) || (!name.is_empty() && glob_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn patterns() {
        assert!(glob_match(
            b"train-*.parquet",
            b"train-00000-of-00004.parquet"
        ));
        assert!(!glob_match(
            b"train-*.parquet",
            b"validation-00000-of-00001.parquet"
        ));
        assert!(glob_match(b"shard-??.tar", b"shard-07.tar"));
        assert!(!glob_match(b"shard-??.tar", b"shard-7.tar"));
        assert!(glob_match(b"*", b""));
    }
}
