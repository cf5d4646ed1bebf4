//! The `slipstream` command; see `slipstream --help` and src/cli/.

fn main() {
    std::process::exit(slipstream::cli::run(std::env::args()));
}
