//! Uploading a file: one PUT when small, else a multipart upload of several parts at a time,
//! aborted on failure so that no object appears and the store keeps no orphaned parts.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::client::S3Client;
use super::client::{failure, remote_error};
use super::location::S3Location;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

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
        let bar = Progress::start(progress, format!("uploading {url}"), size);
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
        bar.finish();
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
        bar: &Progress,
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
}
