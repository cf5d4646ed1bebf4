//! Opening a dataset's files: regular files only, and reads bounded by what the caller
//! expects. Opening a FIFO blocks until a writer appears, and a device can be endless; a path
//! that is neither a regular file nor missing is a format error naming it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

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
