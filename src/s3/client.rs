//! The client: its runtime and SDK configuration, listing, small GETs and PUTs, and what a
//! failed request means.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;

use super::location::{RemoteObject, S3Location};
use super::options::S3Options;
use crate::error::{Error, Result};

/// A client with its own runtime; every method blocks the calling thread.
pub struct S3Client {
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) client: aws_sdk_s3::Client,
    pub(super) options: S3Options,
}

/// Why a request failed, and whether trying again can help.
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) transient: bool,
}

/// A failed request. Not retried here: the SDK has already retried what its standard retry
/// policy calls transient (throttling, 5xx, timeouts, dropped connections).
pub(super) fn failure<E: ProvideErrorMetadata + std::error::Error + 'static, R: fmt::Debug>(
    e: SdkError<E, R>,
) -> Failure {
    let message = match (e.code(), e.message()) {
        (Some(code), Some(text)) => format!("{code}: {text}"),
        (Some(code), None) => code.to_string(),
        _ => {
            // The chain of causes, without the SDK's debug dump of the response.
            let mut chain = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                chain.push_str(": ");
                chain.push_str(&c.to_string());
                cause = c.source();
            }
            if chain.contains("credential") {
                format!(
                    "no usable AWS credentials (looked in the environment, profile files, SSO \
                     and the instance metadata service): set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY or AWS_PROFILE, pass storage_options with \
                     aws_access_key_id and aws_secret_access_key, or anon=True for a public \
                     bucket ({chain})"
                )
            } else {
                chain
            }
        }
    };
    Failure {
        message,
        transient: false,
    }
}

/// Wait before attempt `attempt` (1, 2, ...): exponential, capped, with jitter.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 100u64 << attempt.min(6);
    let jitter = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as u64)
        % (base / 2 + 1);
    Duration::from_millis((base + jitter).min(5_000))
}

impl S3Client {
    pub fn options(&self) -> &S3Options {
        &self.options
    }

    pub fn new(options: &S3Options) -> Result<S3Client> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("slipstream-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::invalid(format!("cannot start the S3 runtime: {e}")))?;
        let endpoint = options.endpoint_url.clone().or_else(|| {
            ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        });
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let client = runtime.block_on(async {
            let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
            if let Some(profile) = &options.profile {
                loader = loader.profile_name(profile);
            }
            if let Some(region) = &options.region {
                loader = loader.region(Region::new(region.clone()));
            }
            if let Some(endpoint) = &endpoint {
                loader = loader.endpoint_url(endpoint);
            }
            if options.anonymous {
                loader = loader.no_credentials();
            } else if let (Some(id), Some(secret)) =
                (&options.access_key_id, &options.secret_access_key)
            {
                loader = loader.credentials_provider(Credentials::new(
                    id,
                    secret,
                    options.session_token.clone(),
                    None,
                    "storage_options",
                ));
            }
            let shared = loader.load().await;
            let mut config = aws_sdk_s3::config::Builder::from(&shared)
                .retry_config(
                    aws_sdk_s3::config::retry::RetryConfig::standard()
                        .with_max_attempts(options.max_attempts),
                )
                .timeout_config(
                    aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(10))
                        .read_timeout(Duration::from_secs(options.read_timeout_s))
                        .build(),
                )
                .force_path_style(endpoint.is_some());
            if shared.region().is_none() {
                // Signing needs a region; S3-compatible stores accept any.
                config = config.region(Region::new("us-east-1"));
            }
            aws_sdk_s3::Client::from_conf(config.build())
        });
        Ok(S3Client {
            runtime,
            client,
            options: options.clone(),
        })
    }

    /// Every object under the location's prefix, with names relative to it.
    pub fn list(&self, at: &S3Location) -> Result<Vec<RemoteObject>> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&at.bucket)
                .prefix(&at.prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| Error::Io {
                    path: PathBuf::from(at.url()),
                    source: std::io::Error::other(format!(
                        "listing failed: {}",
                        failure(e).message
                    )),
                })?;
                for object in page.contents() {
                    let (Some(key), Some(size)) = (object.key(), object.size()) else {
                        continue;
                    };
                    if let Some(name) = key.strip_prefix(&at.prefix) {
                        out.push(RemoteObject {
                            name: name.to_string(),
                            size: size.max(0) as u64,
                            etag: object.e_tag().unwrap_or_default().to_string(),
                        });
                    }
                }
            }
            Ok(out)
        })
    }

    /// One small object (such as `index.json`), whole, into memory.
    pub fn get(&self, at: &S3Location, name: &str) -> Result<Vec<u8>> {
        let key = at.key(name);
        let url = format!("s3://{}/{key}", at.bucket);
        self.runtime.block_on(async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let response = self
                    .client
                    .get_object()
                    .bucket(&at.bucket)
                    .key(&key)
                    .send()
                    .await;
                let outcome = match response {
                    Ok(r) => r
                        .body
                        .collect()
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|e| Failure {
                            message: format!("the connection broke: {e}"),
                            transient: true,
                        }),
                    Err(e) => Err(failure(e)),
                };
                match outcome {
                    Ok(bytes) => return Ok(bytes),
                    Err(f) if f.transient && attempt < self.options.max_attempts => {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Err(f) => return Err(remote_error(&url, &f.message, attempt)),
                }
            }
        })
    }

    /// A small object, written whole.
    pub fn put(&self, at: &S3Location, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.runtime.block_on(self.put_object(at, name, bytes))
    }

    pub(super) async fn put_object(
        &self,
        at: &S3Location,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let key = at.key(name);
        self.client
            .put_object()
            .bucket(&at.bucket)
            .key(&key)
            .body(bytes.into())
            .send()
            .await
            .map(drop)
            .map_err(|e| remote_error(&format!("s3://{}/{key}", at.bucket), &failure(e).message, 1))
    }
}

pub(super) fn remote_error(url: &str, message: &str, attempts: u32) -> Error {
    let tries = if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    };
    Error::Io {
        path: PathBuf::from(url),
        source: std::io::Error::other(format!("{message}{tries}")),
    }
}
