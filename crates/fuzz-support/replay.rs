//! Corpus replay shared by every crate's `tests/fuzz_corpus.rs`.
//!
//! Each cargo-fuzz target `crates/<crate>/fuzz/fuzz_targets/<t>.rs` calls
//! `harness::run` from `crates/<crate>/fuzz/harness/<t>.rs`; the replay test
//! includes the same harness file and feeds it every file of
//! `fuzz/corpus/<t>/` and `fuzz/seeds/<t>/` (committed inputs: the corpus
//! `scripts/fuzz` grew and minimised, and crash regressions). Stable
//! toolchain, no libFuzzer, seconds: CI keeps every input the fuzzer ever
//! found interesting from panicking again.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The fuzz directory of the crate under test.
pub fn fuzz_dir(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("fuzz")
}

/// Every committed input of `target`, sorted (corpus first, then seeds).
pub fn inputs(fuzz: &Path, target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for kind in ["corpus", "seeds"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .map(|e| e.expect("listing a corpus directory").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// Feed every committed input of `target` to `run`; fail naming each input
/// that panicked. Returns how many inputs ran.
pub fn replay(manifest_dir: &str, target: &str, run: fn(&[u8])) -> usize {
    let fuzz = fuzz_dir(manifest_dir);
    let files = inputs(&fuzz, target);
    let mut panicked = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            panicked.push(f.display().to_string());
        }
    }
    assert!(
        panicked.is_empty(),
        "fuzz target {target}: {} of {} committed inputs panic: {}",
        panicked.len(),
        files.len(),
        panicked.join(", ")
    );
    files.len()
}

/// Every cargo-fuzz target of the crate must have a replay: `listed` are
/// the targets the test replays.
pub fn check_all_listed(manifest_dir: &str, listed: &[&str]) {
    let dir = fuzz_dir(manifest_dir).join("fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    targets.sort();
    let mut listed: Vec<String> = listed.iter().map(|s| (*s).to_owned()).collect();
    listed.sort();
    assert_eq!(
        targets,
        listed,
        "every fuzz target in {} needs its line in tests/fuzz_corpus.rs",
        dir.display()
    );
}

/// One `#[test]` per fuzz target (each harness module declared by the
/// caller with `#[path = "../fuzz/harness/<t>.rs"] mod <t>;`), plus the
/// check that no target of `fuzz/fuzz_targets/` is left out.
macro_rules! replay_tests {
    ($($t:ident),+ $(,)?) => {
        $(
            #[test]
            fn $t() {
                let n = fuzz_replay::replay(env!("CARGO_MANIFEST_DIR"), stringify!($t), $t::run);
                eprintln!("{}: {n} committed inputs replayed", stringify!($t));
            }
        )+
        #[test]
        fn every_fuzz_target_is_replayed() {
            fuzz_replay::check_all_listed(env!("CARGO_MANIFEST_DIR"), &[$(stringify!($t)),+]);
        }
    };
}
