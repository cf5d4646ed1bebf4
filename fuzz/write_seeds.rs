//! Write every fuzz target's seeds into `<dir>/<target>/`, as libFuzzer corpora.

#[path = "../tests/fuzz_targets/mod.rs"]
mod targets;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: write_seeds DIR"));
    for (target, _) in targets::TARGETS {
        let corpus = dir.join(target);
        std::fs::create_dir_all(&corpus).expect("corpus directory");
        for (i, seed) in targets::seeds(target).iter().enumerate() {
            std::fs::write(corpus.join(format!("seed-{i:03}")), seed).expect("seed");
        }
    }
}
