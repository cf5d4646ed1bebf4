//! Progress of long jobs (cache builds, downloads, uploads) where the user looks for it: a bar
//! when stderr is a terminal, a line every few seconds when it is a log file (a SLURM job's),
//! or the reporter the Python package installs where stderr is not what the user sees (a tqdm
//! bar in Jupyter). Summary lines go the same way.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What a reporter is told. `id` tells concurrent jobs apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Start { id: u64, what: &'a str, total: u64 },
    Advance { id: u64, done: u64 },
    Finish { id: u64 },
    Line(&'a str),
}

/// A function that shows progress events (installed by the Python package).
pub type Reporter = dyn Fn(&Event<'_>) + Send + Sync;

static REPORTER: RwLock<Option<Arc<Reporter>>> = RwLock::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Send every job's progress to `reporter` from now on (`None`: back to stderr).
pub fn set_reporter(reporter: Option<Arc<Reporter>>) {
    *REPORTER.write().unwrap_or_else(|e| e.into_inner()) = reporter;
}

fn reporter() -> Option<Arc<Reporter>> {
    REPORTER.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// How often a log file gets a line, and a reporter an update.
const LINE_EVERY: Duration = Duration::from_secs(5);
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// One job's progress, shared by the threads doing it (clones count into the same total).
#[derive(Clone)]
pub struct Progress {
    inner: Option<Arc<Job>>,
}

struct Job {
    id: u64,
    what: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    last_shown: Mutex<Instant>,
    sink: Sink,
}

enum Sink {
    Bar(indicatif::ProgressBar),
    Lines,
    Reporter(Arc<Reporter>),
}

impl Progress {
    /// Progress of `total` bytes of `what` ("downloading s3://..."); nothing when `!enabled`.
    pub fn start(enabled: bool, what: impl Into<String>, total: u64) -> Progress {
        if !enabled {
            return Progress::hidden();
        }
        let what = what.into();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let sink = match reporter() {
            Some(r) => {
                r(&Event::Start {
                    id,
                    what: &what,
                    total,
                });
                Sink::Reporter(r)
            }
            None if std::io::stderr().is_terminal() => {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template"),
                );
                bar.set_message(format!("slipstream: {what}"));
                Sink::Bar(bar)
            }
            None => {
                eprintln!("slipstream: {what}: 0 of {:.1} MB", total as f64 / 1e6);
                Sink::Lines
            }
        };
        let now = Instant::now();
        Progress {
            inner: Some(Arc::new(Job {
                id,
                what,
                total,
                done: AtomicU64::new(0),
                started: now,
                last_shown: Mutex::new(now),
                sink,
            })),
        }
    }

    /// Progress that shows nothing.
    pub fn hidden() -> Progress {
        Progress { inner: None }
    }

    /// `n` more bytes done.
    pub fn inc(&self, n: u64) {
        let Some(job) = &self.inner else { return };
        let done = job.done.fetch_add(n, Ordering::Relaxed) + n;
        match &job.sink {
            Sink::Bar(bar) => bar.inc(n),
            Sink::Lines => {
                if job.due(LINE_EVERY) {
                    eprintln!("{}", job.line(done));
                }
            }
            Sink::Reporter(r) => {
                if job.due(REPORT_EVERY) {
                    r(&Event::Advance { id: job.id, done });
                }
            }
        }
    }

    /// The job ended (done or not): the bar goes; a log gets its last line.
    pub fn finish(&self) {
        let Some(job) = &self.inner else { return };
        let done = job.done.load(Ordering::Relaxed);
        match &job.sink {
            Sink::Bar(bar) => bar.finish_and_clear(),
            Sink::Lines => eprintln!("{}", job.line(done)),
            Sink::Reporter(r) => {
                r(&Event::Advance { id: job.id, done });
                r(&Event::Finish { id: job.id });
            }
        }
    }
}

impl Job {
    /// Whether `every` has passed since the job was last shown (and if so, it is shown now).
    fn due(&self, every: Duration) -> bool {
        let mut last = self.last_shown.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(*last) < every {
            return false;
        }
        *last = now;
        true
    }

    fn line(&self, done: u64) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let percent = if self.total == 0 {
            100.0
        } else {
            100.0 * done as f64 / self.total as f64
        };
        format!(
            "slipstream: {}: {percent:.0}% ({:.1} of {:.1} MB, {:.0} MB/s, {seconds:.0} s)",
            self.what,
            done as f64 / 1e6,
            self.total as f64 / 1e6,
            done as f64 / 1e6 / seconds
        )
    }
}

/// A line for the user (what was built, fetched, published): to the reporter if one is
/// installed, else to stderr.
pub fn say(line: &str) {
    match reporter() {
        Some(r) => r(&Event::Line(line)),
        None => eprintln!("{line}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::{Event, Progress, set_reporter};

    #[test]
    fn a_reporter_sees_start_progress_and_finish() {
        // The reporter is process-wide and other tests run alongside: keep only this test's
        // job (its id, from its start) and its line.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let mine = Arc::new(Mutex::new(None));
        set_reporter(Some(Arc::new(move |e: &Event<'_>| {
            let id = *mine.lock().unwrap();
            let e = match *e {
                Event::Start { id, what, total } if what == "building x" => {
                    *mine.lock().unwrap() = Some(id);
                    format!("start {what} {total}")
                }
                Event::Advance { id: i, done } if Some(i) == id => format!("done {done}"),
                Event::Finish { id: i } if Some(i) == id => "finish".into(),
                Event::Line(line) if line == "built x" => format!("line {line}"),
                _ => return,
            };
            log.lock().unwrap().push(e);
        })));
        let progress = Progress::start(true, "building x", 300);
        let shared = progress.clone();
        std::thread::scope(|s| {
            s.spawn(|| shared.inc(100));
            s.spawn(|| progress.inc(200));
        });
        progress.finish();
        super::say("built x");
        Progress::start(false, "hidden", 5).finish();
        set_reporter(None);
        let seen = seen.lock().unwrap().clone();
        // Updates in between are throttled; the first and the last are always there.
        assert_eq!(seen.first().unwrap(), "start building x 300");
        assert_eq!(
            &seen[seen.len() - 3..],
            ["done 300", "finish", "line built x"]
        );
    }
}
