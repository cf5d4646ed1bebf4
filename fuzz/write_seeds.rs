//! Write every fuzz target's seeds, and the inputs that once made it fail, into
//! `<dir>/<target>/`, as libFuzzer corpora.

#[path = "../tests/fuzz_targets/mod.rs"]
mod targets;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: write_seeds DIR"));
    for (target, _) in targets::TARGETS {
        let corpus = dir.join(target);
        std::fs::create_dir_all(&corpus).expect("corpus directory");
        let inputs = targets::seeds(target).into_iter().chain(targets::regressions(target));
        for (i, input) in inputs.enumerate() {
            std::fs::write(corpus.join(format!("seed-{i:03}")), input).expect("seed");
        }
    }
}
