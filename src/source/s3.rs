//! LitData datasets on S3 and S3-compatible stores, mirrored to local disk with aws-sdk-s3.
//!
//! [`S3Client`] lists a prefix and downloads objects with many parallel ranged GETs, retrying
//! throttling, server errors and dropped connections with backoff (the SDK's retries for the
//! request, ours for a body cut short), resuming from the parts already on disk, and skipping
//! objects already mirrored with the same size and ETag. Each object is written as
//! `NAME.part` and renamed when complete and checked, so a reader never sees half a file.
//!
//! Credentials come from the standard AWS chain (environment, profile, SSO, process, instance
//! or task role) unless `storage_options` give keys; they appear in no log, error or `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;

use crate::error::{Error, IoContext, Result};

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

/// An object under a prefix: its name relative to the prefix, size and ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub name: String,
    pub size: u64,
    pub etag: String,
}

/// A client with its own runtime; every method blocks the calling thread.
pub struct S3Client {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    options: S3Options,
}

/// Why a request failed, and whether trying again can help.
struct Failure {
    message: String,
    transient: bool,
}

/// A failed request. Not retried here: the SDK has already retried what its standard retry
/// policy calls transient (throttling, 5xx, timeouts, dropped connections).
fn failure<E: ProvideErrorMetadata + std::error::Error + 'static, R: fmt::Debug>(
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
fn backoff(attempt: u32) -> Duration {
    let base = 100u64 << attempt.min(6);
    let jitter = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as u64)
        % (base / 2 + 1);
    Duration::from_millis((base + jitter).min(5_000))
}

/// The local state of a mirrored prefix: which object versions are complete.
const MANIFEST: &str = ".slipstream-s3.jsonl";

impl S3Client {
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

    /// Download `objects` (from `at`) into `dir`, `concurrency` GETs at a time, in the given
    /// order as far as parallelism allows. `done(i)` is called once object `i` is complete on
    /// disk (or was already); the first permanent failure ends the download with an error
    /// naming the object, and `done` is not called for objects that did not complete.
    pub fn download(
        &self,
        at: &S3Location,
        objects: &[RemoteObject],
        dir: &Path,
        progress: bool,
        done: &(dyn Fn(usize, std::result::Result<(), String>) + Sync),
    ) -> Result<()> {
        fs::create_dir_all(dir).at(dir)?;
        let manifest = Arc::new(Mutex::new(Manifest::load(dir)));
        let total: u64 = objects.iter().map(|o| o.size).sum();
        let bar = progress_bar(progress, total, &at.url());
        let semaphore = Arc::new(Semaphore::new(self.options.concurrency));
        let outcome = self.runtime.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for (i, object) in objects.iter().enumerate() {
                let dest = dir.join(&object.name);
                let complete = manifest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .has(&object.name, object)
                    && fs::metadata(&dest).is_ok_and(|m| m.len() == object.size);
                if complete {
                    bar.inc(object.size);
                    done(i, Ok(()));
                    continue;
                }
                let job = Job {
                    client: self.client.clone(),
                    bucket: at.bucket.clone(),
                    key: at.key(&object.name),
                    object: object.clone(),
                    dest,
                    part_bytes: self.options.part_bytes,
                    max_attempts: self.options.max_attempts,
                    semaphore: Arc::clone(&semaphore),
                    bar: bar.clone(),
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send((i, job.run().await));
                });
            }
            drop(tx);
            // Objects complete in any order; each is announced as soon as it is on disk.
            let mut first_error = None;
            while let Some((i, result)) = rx.recv().await {
                let object = &objects[i];
                let result = result.and_then(|()| {
                    let mut m = manifest.lock().unwrap_or_else(|e| e.into_inner());
                    m.record(dir, object)
                });
                match result {
                    Ok(()) => done(i, Ok(())),
                    Err(e) => {
                        // Stop the rest: a permanent failure ends the download.
                        semaphore.close();
                        done(i, Err(e.to_string()));
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        });
        bar.finish_and_clear();
        outcome
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
}

/// Parts of an upload in flight at once: each holds `part_bytes` of memory.
const UPLOAD_PARTS_IN_FLIGHT: usize = 8;
/// S3's smallest part (all but the last).
const MIN_PART_BYTES: u64 = 5 << 20;

impl S3Client {
    /// Upload the file at `path` as `name` under `at`: one PUT up to `part_bytes`, else a
    /// multipart upload of `part_bytes` parts, several at a time. A failed multipart upload
    /// is aborted, so no object appears and the store keeps no orphaned parts.
    pub fn upload(&self, at: &S3Location, name: &str, path: &Path, progress: bool) -> Result<()> {
        let key = at.key(name);
        let url = format!("s3://{}/{key}", at.bucket);
        let file = Arc::new(File::open(path).at(path)?);
        let size = file.metadata().at(path)?.len();
        let part_bytes = self.options.part_bytes.max(MIN_PART_BYTES);
        let bar = progress_bar(progress, size, &url);
        let read = |start: u64, len: u64| -> Result<Vec<u8>> {
            let mut buffer = vec![0u8; len as usize];
            file.read_exact_at(&mut buffer, start).at(path)?;
            Ok(buffer)
        };
        let outcome = self.runtime.block_on(async {
            if size <= part_bytes {
                self.put_object(at, name, read(0, size)?).await?;
                bar.inc(size);
                return Ok(());
            }
            let created = self
                .client
                .create_multipart_upload()
                .bucket(&at.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| remote_error(&url, &failure(e).message, 1))?;
            let upload_id = created
                .upload_id()
                .ok_or_else(|| remote_error(&url, "the server gave no upload id", 1))?
                .to_string();
            let parts = self
                .upload_parts(at, &key, &upload_id, size, part_bytes, &read, &bar)
                .await;
            let completed = match parts {
                Ok(parts) => self
                    .client
                    .complete_multipart_upload()
                    .bucket(&at.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| remote_error(&url, &failure(e).message, 1)),
                Err(e) => Err(e),
            };
            if completed.is_err() {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&at.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
            }
            completed
        });
        bar.finish_and_clear();
        outcome
    }

    /// The parts of a multipart upload, `UPLOAD_PARTS_IN_FLIGHT` at a time, in part order.
    #[allow(clippy::too_many_arguments)]
    async fn upload_parts(
        &self,
        at: &S3Location,
        key: &str,
        upload_id: &str,
        size: u64,
        part_bytes: u64,
        read: &(dyn Fn(u64, u64) -> Result<Vec<u8>> + Sync),
        bar: &ProgressBar,
    ) -> Result<Vec<CompletedPart>> {
        let url = format!("s3://{}/{key}", at.bucket);
        let count = size.div_ceil(part_bytes);
        let mut done = Vec::with_capacity(count as usize);
        let mut in_flight = tokio::task::JoinSet::new();
        let mut next = 0u64;
        while next < count || !in_flight.is_empty() {
            while next < count && in_flight.len() < UPLOAD_PARTS_IN_FLIGHT {
                let start = next * part_bytes;
                let body = read(start, part_bytes.min(size - start))?;
                let len = body.len() as u64;
                // Part numbers start at 1. The SDK retries a part that failed transiently (its
                // body is in memory).
                let number = next as i32 + 1;
                let request = self
                    .client
                    .upload_part()
                    .bucket(&at.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body.into());
                in_flight.spawn(async move { (number, len, request.send().await) });
                next += 1;
            }
            let Some(finished) = in_flight.join_next().await else {
                break;
            };
            let (number, len, response) =
                finished.map_err(|e| Error::Internal(format!("upload task failed: {e}")))?;
            let response = response.map_err(|e| {
                remote_error(&url, &format!("part {number}: {}", failure(e).message), 1)
            })?;
            bar.inc(len);
            done.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(response.e_tag().map(str::to_string))
                    .build(),
            );
        }
        done.sort_by_key(|p| p.part_number());
        Ok(done)
    }

    /// A small object, written whole.
    pub fn put(&self, at: &S3Location, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.runtime.block_on(self.put_object(at, name, bytes))
    }

    async fn put_object(&self, at: &S3Location, name: &str, bytes: Vec<u8>) -> Result<()> {
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

fn remote_error(url: &str, message: &str, attempts: u32) -> Error {
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

fn progress_bar(enabled: bool, total: u64, url: &str) -> ProgressBar {
    if !enabled || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("slipstream: downloading {url}"));
    bar
}

/// Object name → (size, ETag) of the complete local copies: an append-only log of JSON lines
/// (the last line for a name wins), so recording an object costs one short write however
/// many objects the prefix holds.
#[derive(Default)]
struct Manifest {
    objects: HashMap<String, (u64, String)>,
}

impl Manifest {
    fn load(dir: &Path) -> Manifest {
        let text = fs::read_to_string(dir.join(MANIFEST)).unwrap_or_default();
        let objects = text
            .lines()
            .filter_map(|line| serde_json::from_str::<(String, u64, String)>(line).ok())
            .map(|(name, size, etag)| (name, (size, etag)))
            .collect();
        Manifest { objects }
    }

    fn has(&self, name: &str, object: &RemoteObject) -> bool {
        self.objects
            .get(name)
            .is_some_and(|(size, etag)| *size == object.size && *etag == object.etag)
    }

    /// Record `object` as complete, in memory and in the log.
    fn record(&mut self, dir: &Path, object: &RemoteObject) -> Result<()> {
        let path = dir.join(MANIFEST);
        let line = serde_json::to_string(&(&object.name, object.size, &object.etag))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .at(&path)?;
        writeln!(log, "{line}").at(&path)?;
        self.objects
            .insert(object.name.clone(), (object.size, object.etag.clone()));
        Ok(())
    }
}

/// The download of one object, in parts.
struct Job {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    object: RemoteObject,
    dest: PathBuf,
    part_bytes: u64,
    max_attempts: u32,
    semaphore: Arc<Semaphore>,
    bar: ProgressBar,
}

impl Job {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn run(self) -> Result<()> {
        let job = Arc::new(self);
        let partial = job.dest.with_extension(partial_extension(&job.dest));
        let record = partial.with_extension("parts");
        if let Some(parent) = job.dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        // Parts finished by an earlier, interrupted download of this same object version.
        let finished = resume_state(&partial, &record, &job.object);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&partial)
            .at(&partial)?;
        file.set_len(job.object.size).at(&partial)?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&record)
            .at(&record)?;
        if finished.is_empty() {
            log.set_len(0).at(&record)?;
            writeln!(log, "{}", job.object.etag).at(&record)?;
        }
        let file = Arc::new(file);
        let log = Arc::new(Mutex::new(log));
        let parts = job.object.size.div_ceil(job.part_bytes).max(1);
        let mut tasks = Vec::new();
        for part in 0..parts {
            let start = part * job.part_bytes;
            let end = (start + job.part_bytes).min(job.object.size);
            if finished.contains(&part) {
                job.bar.inc(end - start);
                continue;
            }
            let (job, file, log) = (Arc::clone(&job), Arc::clone(&file), Arc::clone(&log));
            let record = record.clone();
            tasks.push(tokio::spawn(async move {
                let Ok(_permit) = job.semaphore.acquire().await else {
                    return Err(remote_error(
                        &job.url(),
                        "cancelled after another object failed",
                        1,
                    ));
                };
                job.fetch(&file, start, end).await?;
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                writeln!(log, "{part}").at(&record)?;
                Ok(())
            }));
        }
        for task in tasks {
            task.await
                .map_err(|e| Error::Internal(format!("download task failed: {e}")))??;
        }
        let written = fs::metadata(&partial).at(&partial)?.len();
        if written != job.object.size {
            return Err(Error::format(
                crate::error::Location::file(job.url()),
                format!(
                    "downloaded {written} bytes, but the listing says {}",
                    job.object.size
                ),
            ));
        }
        file.sync_all().at(&partial)?;
        fs::rename(&partial, &job.dest).at(&job.dest)?;
        let _ = fs::remove_file(&record);
        Ok(())
    }

    /// Bytes `start..end` of the object into `file`, retrying from where a broken
    /// connection left off.
    async fn fetch(&self, file: &File, start: u64, end: u64) -> Result<()> {
        let mut at = start;
        let mut attempt = 0;
        while at < end || (start == end && attempt == 0) {
            attempt += 1;
            match self.fetch_once(file, &mut at, end).await {
                Ok(()) => return Ok(()),
                Err(f) if f.transient && attempt < self.max_attempts => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(f) => return Err(remote_error(&self.url(), &f.message, attempt)),
            }
        }
        Ok(())
    }

    async fn fetch_once(&self, file: &File, at: &mut u64, end: u64) -> Result<(), Failure> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            // The version we listed: a replaced object fails instead of mixing versions.
            .if_match(&self.object.etag);
        if end > *at {
            request = request.range(format!("bytes={}-{}", *at, end - 1));
        }
        let response = request.send().await.map_err(failure)?;
        let mut body = response.body;
        loop {
            match body.try_next().await {
                Ok(Some(bytes)) => {
                    if *at + bytes.len() as u64 > end {
                        return Err(Failure {
                            message: format!("the server sent more than bytes {}..{end}", *at),
                            transient: false,
                        });
                    }
                    file.write_all_at(&bytes, *at).map_err(|e| Failure {
                        message: format!("writing {}: {e}", self.dest.display()),
                        transient: false,
                    })?;
                    *at += bytes.len() as u64;
                    self.bar.inc(bytes.len() as u64);
                }
                Ok(None) if *at >= end => return Ok(()),
                Ok(None) => {
                    return Err(Failure {
                        message: format!("the body ended at byte {} of {end}", *at),
                        transient: true,
                    });
                }
                Err(e) => {
                    return Err(Failure {
                        message: format!("the connection broke: {e}"),
                        transient: true,
                    });
                }
            }
        }
    }
}

/// `chunk-0-0.bin` → `bin.part` (so `with_extension` keeps the full name).
fn partial_extension(dest: &Path) -> String {
    match dest.extension() {
        Some(e) => format!("{}.part", e.to_string_lossy()),
        None => "part".into(),
    }
}

/// The parts of `partial` already complete, if it belongs to this object version.
fn resume_state(partial: &Path, record: &Path, object: &RemoteObject) -> Vec<u64> {
    let Ok(text) = fs::read_to_string(record) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    let same_version = lines.next() == Some(object.etag.as_str())
        && fs::metadata(partial).is_ok_and(|m| m.len() == object.size);
    if !same_version {
        return Vec::new();
    }
    lines.filter_map(|l| l.trim().parse().ok()).collect()
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

    #[test]
    fn manifest_is_a_log_whose_last_entry_wins() {
        let dir = tempfile::tempdir().unwrap();
        let object = |etag: &str| RemoteObject {
            name: "c.bin".into(),
            size: 10,
            etag: etag.into(),
        };
        let mut m = Manifest::load(dir.path());
        m.record(dir.path(), &object("\"a\"")).unwrap();
        m.record(dir.path(), &object("\"b\"")).unwrap();
        let again = Manifest::load(dir.path());
        assert!(again.has("c.bin", &object("\"b\"")));
        assert!(!again.has("c.bin", &object("\"a\"")));
        assert!(!again.has("d.bin", &object("\"b\"")));
    }

    #[test]
    fn resume_needs_the_same_version() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("c.bin.part");
        let record = dir.path().join("c.bin.parts");
        fs::write(&partial, vec![0u8; 100]).unwrap();
        fs::write(&record, "\"e1\"\n0\n2\n").unwrap();
        let object = |etag: &str, size| RemoteObject {
            name: "c.bin".into(),
            size,
            etag: etag.into(),
        };
        assert_eq!(
            resume_state(&partial, &record, &object("\"e1\"", 100)),
            [0, 2]
        );
        assert!(resume_state(&partial, &record, &object("\"e2\"", 100)).is_empty());
        assert!(resume_state(&partial, &record, &object("\"e1\"", 99)).is_empty());
        assert_eq!(partial_extension(Path::new("chunk-0-1.bin")), "bin.part");
    }
}
