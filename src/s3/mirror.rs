//! Mirroring objects to local disk: many parallel ranged GETs, retrying throttling, server
//! errors and dropped connections with backoff (the SDK's retries for the request, ours for a
//! body cut short), resuming from the parts already on disk, and skipping objects already
//! mirrored with the same size and ETag. Each object is written as `NAME.part` and renamed
//! when complete and checked, so a reader never sees half a file.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::client::S3Client;
use super::client::{Failure, backoff, failure, remote_error};
use super::location::{RemoteObject, S3Location};
use crate::error::{Error, IoContext, Location, Result};
use crate::progress::Progress;

/// The local state of a mirrored prefix: which object versions are complete.
const MANIFEST: &str = ".slipstream-s3.jsonl";

impl S3Client {
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
        let next = std::sync::atomic::AtomicUsize::new(0);
        let next = || {
            Some(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                .filter(|&i| i < objects.len())
        };
        // Enough objects started to keep every GET busy (each has at least one part), and no
        // more: each one started holds its partial file and its log open (an ImageFolder of a
        // million images would otherwise open two million files at once).
        let in_flight = 2 * self.options.concurrency;
        let order = Order {
            next: &next,
            in_flight: &|| in_flight,
        };
        self.download_ordered(at, objects, dir, progress, &order, done)
    }

    /// [`S3Client::download`] in an order decided as it goes (see [`Order`]).
    pub fn download_ordered(
        &self,
        at: &S3Location,
        objects: &[RemoteObject],
        dir: &Path,
        progress: bool,
        order: &Order,
        done: &(dyn Fn(usize, std::result::Result<(), String>) + Sync),
    ) -> Result<()> {
        let Order { next, in_flight } = *order;
        fs::create_dir_all(dir).at(dir)?;
        let manifest = Arc::new(Mutex::new(Manifest::load(dir)));
        let total: u64 = objects.iter().map(|o| o.size).sum();
        let bar = Progress::start(progress, format!("downloading {}", at.url()), total);
        let semaphore = Arc::new(Semaphore::new(self.options.concurrency));
        let outcome = self.runtime.block_on(async {
            let turns = Turns::deal(Arc::clone(&semaphore));
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut running = 0usize;
            let mut first_error = None;
            loop {
                // Start objects until `in_flight` are running (after a failure, none).
                while running < in_flight().max(1) && first_error.is_none() {
                    let Some(i) = next() else { break };
                    let object = &objects[i];
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
                        bar: bar.clone(),
                    };
                    running += 1;
                    let started = match job.start() {
                        Ok(started) => started,
                        Err(e) => {
                            let _ = tx.send((i, Err(e)));
                            continue;
                        }
                    };
                    // Queued here, not in the task, so that objects queue in the order started.
                    let turns = turns.queue(started.needed.len());
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send((i, job.run(started, turns).await));
                    });
                }
                if running == 0 {
                    break;
                }
                // Objects complete in any order; each is announced as soon as it is on disk.
                let Some((i, result)) = rx.recv().await else {
                    break;
                };
                running -= 1;
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
        bar.finish();
        outcome
    }
}

/// GETs take their turn (a connection: a permit of `concurrency`) in the order their parts
/// were queued (objects in the order started, each one's parts in order), not in the order
/// the runtime happens to poll their tasks: the object wanted first gets connections first.
struct Turns {
    queue: mpsc::UnboundedSender<oneshot::Sender<OwnedSemaphorePermit>>,
}

type Turn = oneshot::Receiver<OwnedSemaphorePermit>;

impl Turns {
    /// Start handing out `connections` (within the runtime).
    fn deal(connections: Arc<Semaphore>) -> Turns {
        let (queue, mut queued) = mpsc::unbounded_channel::<oneshot::Sender<_>>();
        tokio::spawn(async move {
            while let Some(turn) = queued.recv().await {
                // Closed after a failure: the turns still queued end with their channels.
                let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
                    return;
                };
                // A part that is gone gives its permit straight back.
                let _ = turn.send(permit);
            }
        });
        Turns { queue }
    }

    /// `n` turns at the back of the queue.
    fn queue(&self, n: usize) -> Vec<Turn> {
        (0..n)
            .map(|_| {
                let (turn, wait) = oneshot::channel();
                let _ = self.queue.send(turn);
                wait
            })
            .collect()
    }
}

/// The order of a download decided as it goes: `next()` names the object to start next
/// (`None`: no more), asked whenever fewer than `in_flight()` objects are being fetched, so
/// a later answer can still change what comes next.
#[derive(Clone, Copy)]
pub struct Order<'a> {
    pub next: &'a (dyn Fn() -> Option<usize> + Sync),
    pub in_flight: &'a (dyn Fn() -> usize + Sync),
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
    bar: Progress,
}

/// An object's download as started: its partial file, the log of its finished parts, and the
/// parts still to fetch.
struct Started {
    partial: PathBuf,
    record: PathBuf,
    file: Arc<File>,
    log: Arc<Mutex<File>>,
    needed: Vec<u64>,
}

impl Job {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Open the partial file and its log, resuming an interrupted download of this same object
    /// version: what is left to fetch.
    fn start(&self) -> Result<Started> {
        let partial = self.dest.with_extension(partial_extension(&self.dest));
        let record = partial.with_extension("parts");
        if let Some(parent) = self.dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        let finished = resume_state(&partial, &record, &self.object);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&partial)
            .at(&partial)?;
        file.set_len(self.object.size).at(&partial)?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&record)
            .at(&record)?;
        if finished.is_empty() {
            log.set_len(0).at(&record)?;
            writeln!(log, "{}", self.object.etag).at(&record)?;
        }
        let parts = self.object.size.div_ceil(self.part_bytes).max(1);
        let mut needed = Vec::new();
        for part in 0..parts {
            if finished.contains(&part) {
                let (start, end) = self.part_range(part);
                self.bar.inc(end - start);
            } else {
                needed.push(part);
            }
        }
        Ok(Started {
            partial,
            record,
            file: Arc::new(file),
            log: Arc::new(Mutex::new(log)),
            needed,
        })
    }

    fn part_range(&self, part: u64) -> (u64, u64) {
        let start = part * self.part_bytes;
        (start, (start + self.part_bytes).min(self.object.size))
    }

    /// Fetch the parts `start` left, each when its turn comes, then check the file and rename
    /// it into place.
    async fn run(self, started: Started, turns: Vec<Turn>) -> Result<()> {
        let job = Arc::new(self);
        let Started {
            partial,
            record,
            file,
            log,
            needed,
        } = started;
        let mut tasks = Vec::new();
        for (part, turn) in needed.into_iter().zip(turns) {
            let (start, end) = job.part_range(part);
            let (job, file, log) = (Arc::clone(&job), Arc::clone(&file), Arc::clone(&log));
            let record = record.clone();
            tasks.push(tokio::spawn(async move {
                let Ok(_permit) = turn.await else {
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
        // Every part is waited for, even after one failed, so that nothing writes to the file
        // or its log once the download has returned: what the log says is complete, is.
        let mut first_error = None;
        for task in tasks {
            let outcome = task
                .await
                .map_err(|e| Error::Internal(format!("download task failed: {e}")))
                .and_then(|part| part);
            if let Err(e) = outcome {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let written = fs::metadata(&partial).at(&partial)?.len();
        if written != job.object.size {
            return Err(Error::format(
                Location::file(job.url()),
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
    fn connections_go_to_parts_in_the_order_queued() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let granted = runtime.block_on(async {
            let turns = Turns::deal(Arc::new(Semaphore::new(1)));
            let granted = Arc::new(Mutex::new(Vec::new()));
            // Spawned last first: with a plain semaphore the last would usually win.
            let mut tasks = Vec::new();
            for (i, turn) in turns.queue(4).into_iter().enumerate().rev() {
                let granted = Arc::clone(&granted);
                tasks.push(tokio::spawn(async move {
                    let _permit = turn.await.unwrap();
                    granted.lock().unwrap().push(i);
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            Arc::try_unwrap(granted).unwrap().into_inner().unwrap()
        });
        assert_eq!(granted, [0, 1, 2, 3]);
    }

    #[test]
    fn turns_end_when_the_connections_close() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let connections = Arc::new(Semaphore::new(1));
            let turns = Turns::deal(Arc::clone(&connections));
            let mut queued = turns.queue(2).into_iter();
            let first = queued.next().unwrap().await.unwrap();
            connections.close();
            drop(first);
            assert!(queued.next().unwrap().await.is_err());
        });
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
