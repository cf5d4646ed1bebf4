//! What the benches share: their cache, built once under the bench data directory.

use std::path::Path;
use std::sync::Arc;

use slipstream::cache::{self, BuildOptions, CacheReader, OpenOptions};

/// The cache of `source` under `root`/cache, built with every core and no progress bar the
/// first time, reused after.
pub fn open_cache(source: &Path, root: &Path) -> Arc<CacheReader> {
    let options = OpenOptions {
        cache_dir: Some(root.join("cache")),
        build: BuildOptions {
            threads: 0,
            progress: false,
            ..Default::default()
        },
        rebuild: false,
        ..Default::default()
    };
    Arc::new(cache::open(source, &options).expect("build the bench cache"))
}
