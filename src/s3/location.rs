//! Where objects are: `s3://bucket/prefix/` locations, and the objects a listing finds.

use crate::error::{Error, Result};

/// `s3://bucket/prefix/`: a bucket and a key prefix (empty, or ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    pub fn parse(url: &str) -> Result<S3Location> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            Error::invalid(format!(
                "{url}: not an s3:// URL (expected s3://bucket/prefix/)"
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::invalid(format!("{url}: the URL names no bucket")));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// An object under a prefix: its name relative to the prefix, size and ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub name: String,
    pub size: u64,
    pub etag: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let l = S3Location::parse("s3://bucket/a/b").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("bucket", "a/b/"));
        assert_eq!(l.key("index.json"), "a/b/index.json");
        assert_eq!(S3Location::parse("s3://bucket").unwrap().prefix, "");
        assert_eq!(
            S3Location::parse("s3://bucket/").unwrap().url(),
            "s3://bucket/"
        );
        assert!(S3Location::parse("s3:///x").is_err());
        assert!(S3Location::parse("gs://b/x").is_err());
    }
}
