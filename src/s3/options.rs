//! How to reach a store: endpoint, region, credentials and transfer settings, from the
//! `storage_options` LitData users pass.

use std::fmt;

use crate::error::{Error, Result};

/// How to reach the store. `Debug` never shows the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); path-style addressing is used
    /// with it. `AWS_ENDPOINT_URL` is honoured too.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Unsigned requests, for public buckets.
    pub anonymous: bool,
    /// Parallel GETs.
    pub concurrency: usize,
    /// Objects larger than this are fetched in ranged parts of this size.
    pub part_bytes: u64,
    /// Attempts per request (throttling, 5xx, dropped connections) before giving up.
    pub max_attempts: u32,
    /// Seconds without data from the server before a request counts as failed (and is
    /// retried).
    pub read_timeout_s: u64,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint_url: None,
            region: None,
            profile: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            anonymous: false,
            concurrency: 32,
            part_bytes: 16 << 20,
            max_attempts: 8,
            read_timeout_s: 30,
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<hidden>");
        f.debug_struct("S3Options")
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("access_key_id", &hidden(&self.access_key_id))
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("anonymous", &self.anonymous)
            .field("concurrency", &self.concurrency)
            .field("part_bytes", &self.part_bytes)
            .field("max_attempts", &self.max_attempts)
            .field("read_timeout_s", &self.read_timeout_s)
            .finish()
    }
}

impl S3Options {
    /// Options from `storage_options` as LitData users pass them (boto3 client arguments and
    /// s3fs-style names): `endpoint_url`, `region_name`/`region`, `aws_access_key_id`/`key`,
    /// `aws_secret_access_key`/`secret`, `aws_session_token`/`token`, `profile`/
    /// `profile_name`, `anon`/`anonymous`, plus ours: `concurrency`, `part_bytes`,
    /// `max_attempts`, `read_timeout` (seconds). Unknown keys are refused by name (never by value).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<S3Options> {
        let mut o = S3Options::default();
        for (key, value) in pairs {
            let number = |what: &str| {
                value.parse::<u64>().map_err(|_| {
                    Error::invalid(format!("storage_options['{what}'] must be a number"))
                })
            };
            match key.as_str() {
                "endpoint_url" | "endpoint" => o.endpoint_url = Some(value.clone()),
                "region_name" | "region" => o.region = Some(value.clone()),
                "profile" | "profile_name" => o.profile = Some(value.clone()),
                "aws_access_key_id" | "key" => o.access_key_id = Some(value.clone()),
                "aws_secret_access_key" | "secret" => o.secret_access_key = Some(value.clone()),
                "aws_session_token" | "token" => o.session_token = Some(value.clone()),
                "anon" | "anonymous" => {
                    o.anonymous = matches!(value.to_ascii_lowercase().as_str(), "1" | "true")
                }
                "concurrency" => o.concurrency = number(key)?.max(1) as usize,
                "part_bytes" => o.part_bytes = number(key)?.max(64 << 10),
                "max_attempts" => o.max_attempts = number(key)?.clamp(1, 100) as u32,
                "read_timeout" => o.read_timeout_s = number(key)?.max(1),
                other => {
                    return Err(Error::invalid(format!(
                        "storage_options: unknown key '{other}' (known: endpoint_url, \
                         region_name, aws_access_key_id, aws_secret_access_key, \
                         aws_session_token, profile, anon, concurrency, part_bytes, max_attempts, \
                         read_timeout)"
                    )));
                }
            }
        }
        if o.access_key_id.is_some() != o.secret_access_key.is_some() {
            return Err(Error::invalid(
                "storage_options: give both aws_access_key_id and aws_secret_access_key, or neither",
            ));
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_options_map_and_hide_secrets() {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let o = S3Options::from_pairs(&pairs(&[
            ("endpoint_url", "http://127.0.0.1:9"),
            ("aws_access_key_id", "AKIDEXAMPLE"),
            ("aws_secret_access_key", "wJalrXUtnFEMI"),
            ("region_name", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("AKIDEXAMPLE") && !shown.contains("wJalrXUtnFEMI"),
            "{shown}"
        );
        let e = S3Options::from_pairs(&pairs(&[("password", "hunter2")])).unwrap_err();
        assert!(e.to_string().contains("password") && !e.to_string().contains("hunter2"));
        assert!(S3Options::from_pairs(&pairs(&[("key", "only")])).is_err());
    }
}
