//! Reading tar files' headers: POSIX ustar, GNU long names and pax `path` records, each
//! header's checksum checked, every size checked against the file's length.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::files::open_regular;
use crate::error::{Error, IoContext, Location, Result};

const BLOCK: u64 = 512;
/// The longest member name accepted (GNU long names and pax records are read into memory).
const MAX_NAME: u64 = 64 << 10;

/// The regular-file members of a tar file: (name, data offset, size), in order.
pub struct Members {
    path: PathBuf,
    file: File,
    len: u64,
    pos: u64,
    done: bool,
}

impl Members {
    pub fn new(path: &Path, len: u64) -> Result<Members> {
        Ok(Members {
            file: open_regular(path)?,
            path: path.to_path_buf(),
            len,
            pos: 0,
            done: false,
        })
    }

    fn err(&self, message: String) -> Error {
        Error::format(Location::file(&self.path), message)
    }

    fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset).at(&self.path)?;
        Ok(buf)
    }

    /// The next header's member, or `None` at the end of the archive.
    fn next_member(&mut self) -> Result<Option<(String, u64, u64)>> {
        let mut long_name: Option<String> = None;
        loop {
            // Like Python's tarfile, the end of the file after a whole member ends the archive
            // (writers that skip the two zero blocks exist).
            if self.pos == self.len {
                return Ok(None);
            }
            if self.pos + BLOCK > self.len {
                return Err(self.err(format!(
                    "truncated: a header at byte {} runs past the end ({} bytes)",
                    self.pos, self.len
                )));
            }
            let header = self.read(self.pos, BLOCK)?;
            if header.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            if self.pos == 0 && header.starts_with(&[0x1f, 0x8b]) {
                return Err(self.err(
                    "a gzip-compressed tar: slipstream reads uncompressed shards; \
                     decompress it (gunzip) first"
                        .into(),
                ));
            }
            check_header(&header)
                .map_err(|m| self.err(format!("header at byte {}: {m}", self.pos)))?;
            let size = octal(&header[124..136])
                .ok_or_else(|| self.err(format!("header at byte {}: bad size field", self.pos)))?;
            let data = self.pos + BLOCK;
            let next = data
                .checked_add(size.div_ceil(BLOCK) * BLOCK)
                .ok_or_else(|| self.err("member size overflows".into()))?;
            if data + size > self.len {
                return Err(self.err(format!(
                    "truncated: a member of {size} bytes at byte {data} runs past the end \
                     ({} bytes)",
                    self.len
                )));
            }
            self.pos = next;
            let name = || -> String {
                let field = |r: std::ops::Range<usize>| {
                    let b = &header[r];
                    String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())])
                        .into_owned()
                };
                let (name, prefix) = (field(0..100), field(345..500));
                if &header[257..262] == b"ustar" && !prefix.is_empty() {
                    format!("{prefix}/{name}")
                } else {
                    name
                }
            };
            match header[156] {
                b'L' | b'x' if size > MAX_NAME => {
                    return Err(self.err(format!("a name record of {size} bytes")));
                }
                b'L' => {
                    let bytes = self.read(data, size)?;
                    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
                    long_name = Some(String::from_utf8_lossy(&bytes[..end]).into_owned());
                }
                b'x' => {
                    if let Some(path) = pax_path(&self.read(data, size)?) {
                        long_name = Some(path);
                    }
                }
                b'0' | 0 | b'7' => {
                    return Ok(Some((long_name.unwrap_or_else(name), data, size)));
                }
                _ => long_name = None, // directories, links, global pax headers
            }
        }
    }
}

impl Iterator for Members {
    type Item = Result<(String, u64, u64)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_member();
        self.done = !matches!(next, Ok(Some(_)));
        next.transpose()
    }
}

/// The header's checksum: the sum of its bytes with the checksum field taken as spaces.
fn check_header(header: &[u8]) -> std::result::Result<(), String> {
    let stored = octal(&header[148..156]).ok_or("bad checksum field: not a tar file?")?;
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u64
            }
        })
        .sum();
    if sum != stored {
        return Err(format!(
            "checksum {stored} where the header sums to {sum}: not a tar file, or damaged"
        ));
    }
    Ok(())
}

/// A tar number: octal digits (spaces and NULs around them), or GNU's base-256.
fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field.len() > 9 || field[0] != 0x80 {
            return None;
        }
        return field[1..]
            .iter()
            .try_fold(0u64, |n, &b| n.checked_mul(256).map(|n| n + b as u64));
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// The `path` of a pax extended header (`"<len> path=<value>\n"` records).
fn pax_path(records: &[u8]) -> Option<String> {
    let mut rest = records;
    let mut path = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > rest.len() {
            return None;
        }
        let record = &rest[space + 1..len - 1];
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(String::from_utf8_lossy(value).into_owned());
        }
        rest = &rest[len..];
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_pax_records() {
        assert_eq!(octal(b"0000644\0"), Some(0o644));
        assert_eq!(octal(b"   17 \0"), Some(0o17));
        assert_eq!(octal(&[0x80, 0, 0, 0, 0, 0, 0, 1, 2]), Some(258));
        assert_eq!(octal(b"9\0"), None);
        assert_eq!(
            pax_path(b"30 mtime=1350244992.023960108\n16 path=a/b.jpg\n"),
            Some("a/b.jpg".into())
        );
        assert_eq!(pax_path(b"99 path=x\n"), None);
    }
}
