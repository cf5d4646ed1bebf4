//! Where parallel work runs: rayon's global pool or a loader's own, and never in a forked
//! child, whose parent's rayon threads do not exist (users do put loaders inside DataLoader
//! workers; using the pool there would hang).

use std::sync::atomic::{AtomicBool, Ordering};

static PARALLEL: AtomicBool = AtomicBool::new(true);

/// Turn rayon off for this process. Called in a forked child.
pub fn disable_parallelism() {
    PARALLEL.store(false, Ordering::SeqCst);
}

pub fn parallelism_enabled() -> bool {
    PARALLEL.load(Ordering::Relaxed)
}

/// Give rayon's global pool recognisable thread names (in `top`, `py-spy`, /proc). Threads
/// would otherwise inherit the name of whichever thread first used the pool. Does nothing if
/// the pool already exists.
pub fn name_global_threads() {
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("slipstream-rayon-{i}"))
        .build_global();
}

/// Run `f` on `pool` (a loader's own threads) when there is one, else on the calling thread,
/// whose parallel iterators then use rayon's global pool.
pub fn in_pool<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(pool) if parallelism_enabled() => pool.install(f),
        _ => f(),
    }
}
