//! The durable store (feature `fs`): contents, recovery, group commit and a
//! kill -9 during concurrent appends.
#![cfg(feature = "fs")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use custody_log::fs::{FsLog, LogWriter, WriterOptions};
use custody_log::tile::{new_tiles, read_tile, TileId};
use custody_log::{
    inclusion_proof, leaf_hash, root_at, root_from_leaf_hashes, verify_inclusion, Appender,
    LogVerifier, MemoryStore, NoteSigner,
};

const ORIGIN: &str = "example.com/custody-test-log";

fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, [7u8; 32]).unwrap()
}

fn entry(i: u64) -> Vec<u8> {
    format!("entry {i} {}", "x".repeat((i % 37) as usize)).into_bytes()
}

#[test]
fn batches_of_every_shape_give_the_same_tree_and_tiles_as_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    let mut mem = Appender::open(MemoryStore::new()).unwrap();
    let mut n = 0u64;
    // Sizes chosen to cross tile boundaries at levels 0 and 1 in odd ways.
    for batch in [
        1usize,
        1,
        3,
        250,
        1,
        255,
        256,
        257,
        1000,
        65_536 - 2025,
        700,
        1,
    ] {
        let entries: Vec<Vec<u8>> = (n..n + batch as u64).map(entry).collect();
        let r = log.append_batch(&entries).unwrap();
        let m = mem.append_entries(&entries).unwrap();
        assert_eq!(r.first_index, n);
        n += batch as u64;
        assert_eq!(r.committed.size, n);
        assert_eq!(r.committed.root, m.root);
        let v = LogVerifier::new(ORIGIN, signer().verifier_key()).unwrap();
        let cp = v.verify(&r.committed.checkpoint).unwrap();
        assert_eq!(cp.checkpoint.size, n);
    }
    // Every tile of the final tree is on disk with the memory store's bytes.
    let tiles = log.tiles().clone();
    for t in new_tiles(0, n) {
        assert_eq!(
            tiles
                .tile_bytes(t)
                .unwrap()
                .unwrap_or_else(|| panic!("missing {t}")),
            read_tile(mem.store(), t).unwrap(),
            "tile {t}"
        );
    }
    // Old partial widths are still answered (prefix of a wider version).
    let old = TileId::new(0, 0, 5).unwrap();
    assert_eq!(
        tiles.tile_bytes(old).unwrap().unwrap(),
        read_tile(mem.store(), old).unwrap()
    );
    // Entries and proofs at every size from the reader.
    let leaves: Vec<_> = (0..n).map(|i| leaf_hash(&entry(i))).collect();
    for size in [1u64, 2, 255, 256, 257, 1000, n - 1, n] {
        let root = root_at(&tiles.at(size), size).unwrap();
        assert_eq!(root, root_from_leaf_hashes(&leaves[..size as usize]));
        for idx in [0, size / 2, size - 1] {
            let p = inclusion_proof(&tiles.at(size), idx, size).unwrap();
            verify_inclusion(&leaves[idx as usize], idx, size, &p, &root).unwrap();
            assert_eq!(tiles.entry(idx, size).unwrap().unwrap(), entry(idx));
        }
    }
    drop(log);
    // Reopen: same state, and appending continues correctly.
    let mut log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    assert_eq!(log.committed().size, n);
    let r = log.append_batch(&[entry(n)]).unwrap();
    let m = mem.append_entries(&[entry(n)]).unwrap();
    assert_eq!(r.committed.root, m.root);
}

#[test]
fn superseded_partials_are_removed_and_disk_use_is_about_34_bytes_plus_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    for i in 0..20u64 {
        let entries: Vec<Vec<u8>> = (i * 100..(i + 1) * 100).map(|_| vec![0u8; 100]).collect();
        log.append_batch(&entries).unwrap();
    }
    // 2000 entries: 7 full level-0 tiles + one partial, same for bundles.
    let p0 = dir.path().join("tile/0/007.p");
    let widths: Vec<_> = std::fs::read_dir(&p0).unwrap().collect();
    assert_eq!(widths.len(), 1, "only the current partial width is kept");
    let mut bytes = 0u64;
    for e in walk(dir.path()) {
        bytes += std::fs::metadata(e).unwrap().len();
    }
    let per = bytes as f64 / 2000.0;
    assert!(per < 100.0 + 2.0 + 32.0 + 2.0, "{per} bytes per entry");
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

#[test]
fn leftovers_of_a_crashed_batch_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    let first: Vec<Vec<u8>> = (0..300).map(entry).collect();
    log.append_batch(&first).unwrap();
    let cp = log.committed().clone();
    drop(log);
    // What a batch that crashed before its checkpoint rename leaves behind:
    // a full tile and bundle beyond the committed size, wider partials, a
    // new level-1 partial, and a temp file.
    let d = dir.path();
    let put = |rel: &str, len: usize| {
        let p = d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, vec![0xAAu8; len]).unwrap();
    };
    put("tile/0/001", 8192);
    put("tile/0/001.p/100", 3200);
    put("tile/0/002.p/32", 1024);
    put("tile/1/000.p/3", 96);
    put("tile/entries/001", 10);
    put("tile/entries/002.p/32", 10);
    put("tmp/17.tmp", 10);
    assert_eq!(std::fs::read(d.join("checkpoint")).unwrap(), cp.checkpoint);
    let mut log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    assert_eq!(log.committed().size, 300);
    for gone in [
        "tile/0/001",
        "tile/0/001.p/100",
        "tile/0/002.p/32",
        "tile/1/000.p/3",
        "tile/entries/001",
        "tile/entries/002.p/32",
        "tmp/17.tmp",
    ] {
        assert!(
            !d.join(gone).exists(),
            "{gone} beyond the checkpoint must not survive"
        );
    }
    assert!(d.join("tile/0/001.p/44").exists());
    assert!(d.join("tile/1/000.p/1").exists());
    // Different entries this time; the tree is built from them.
    let other: Vec<Vec<u8>> = (0..500)
        .map(|i| format!("other {i}").into_bytes())
        .collect();
    let r = log.append_batch(&other).unwrap();
    let mut all: Vec<_> = first.iter().map(|e| leaf_hash(e)).collect();
    all.extend(other.iter().map(|e| leaf_hash(e)));
    assert_eq!(r.committed.root, root_from_leaf_hashes(&all));
}

#[test]
fn a_tampered_tile_or_checkpoint_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    log.append_batch(&(0..600).map(entry).collect::<Vec<_>>())
        .unwrap();
    drop(log);
    // The right edge (read at open for the root and the frontier). Full
    // tiles inside the tree are checked by `custody audit verify`, which
    // recomputes everything.
    let t = dir.path().join("tile/0/002.p/88");
    let mut b = std::fs::read(&t).unwrap();
    b[40] ^= 1;
    std::fs::write(&t, &b).unwrap();
    let err = FsLog::open(dir.path(), ORIGIN, signer()).unwrap_err();
    assert!(err.to_string().contains("tiles give root"), "{err}");
    b[40] ^= 1;
    std::fs::write(&t, &b).unwrap();
    let other = NoteSigner::from_seed(ORIGIN, [8u8; 32]).unwrap();
    let err = FsLog::open(dir.path(), ORIGIN, other).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
}

#[test]
fn group_commit_batches_concurrent_appenders_and_acks_each_index_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    let w = LogWriter::spawn(
        log,
        WriterOptions {
            max_batch: 512,
            max_delay: Duration::from_millis(2),
        },
    )
    .unwrap();
    let mut threads = Vec::new();
    for t in 0..16u64 {
        let w = w.clone();
        threads.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            for i in 0..200u64 {
                let e = format!("t{t} e{i}").into_bytes();
                got.push((w.append_blocking(e.clone()).unwrap(), e));
            }
            got
        }));
    }
    let mut all: Vec<(u64, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all.len(), 3200);
    for (i, (idx, e)) in all.iter().enumerate() {
        assert_eq!(*idx, i as u64);
        assert_eq!(&w.tiles().entry(*idx, 3200).unwrap().unwrap(), e);
    }
    let s = w.stats();
    assert_eq!(s.entries, 3200);
    assert!(s.batches < 3200, "appends were batched: {s:?}");
    assert_eq!(w.committed().size, 3200);
    assert!(w.submit(vec![0u8; 70_000]).is_err());
}

/// Child side of the kill -9 test: appends from 8 threads and prints
/// `index hex(entry)` for every acknowledged entry.
#[test]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var("CUSTODY_LOG_KILL9_DIR") else {
        return;
    };
    let log = FsLog::open(&dir, ORIGIN, signer()).unwrap();
    let w = LogWriter::spawn(log, WriterOptions::default()).unwrap();
    let start = std::process::id();
    let mut threads = Vec::new();
    for t in 0..8u64 {
        let w = w.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0u64.. {
                let e = format!("pid{start} t{t} e{i}").into_bytes();
                let idx = w.append_blocking(e.clone()).unwrap();
                println!("ACK {idx} {}", hex::encode(&e));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn kill9_during_appends_loses_no_acknowledged_entry() {
    if std::env::var("CUSTODY_LOG_KILL9_DIR").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args([
                "kill9_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CUSTODY_LOG_KILL9_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let want = 500 + round * 700;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut this_round = 0;
        while this_round < want && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (i, h) = rest.split_once(' ').unwrap();
                acked.push((i.parse().unwrap(), hex::decode(h).unwrap()));
                this_round += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            this_round > 0,
            "round {round}: the child acknowledged nothing"
        );
        // Recover, and every acknowledged entry is there at its index.
        let log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
        let size = log.committed().size;
        let leaves: Vec<_> = (0..size)
            .map(|i| leaf_hash(&log.tiles().entry(i, size).unwrap().unwrap()))
            .collect();
        assert_eq!(root_from_leaf_hashes(&leaves), log.committed().root);
        for (i, e) in &acked {
            assert!(
                *i < size,
                "round {round}: acked index {i} beyond recovered size {size}"
            );
            assert_eq!(&log.tiles().entry(*i, size).unwrap().unwrap(), e);
        }
    }
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    log.append_batch(&(0..3).map(entry).collect::<Vec<_>>())
        .unwrap();
    // A second `custody serve` on the same data dir would truncate the
    // first one's in-flight batch during recovery: refused, naming the lock.
    let err = FsLog::open(dir.path(), ORIGIN, signer()).unwrap_err();
    assert!(
        matches!(err, custody_log::fs::FsError::Locked { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(".lock"), "{err}");
    drop(log);
    let log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    assert_eq!(log.committed().size, 3);
}

#[test]
fn close_commits_what_was_queued_and_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    let w = LogWriter::spawn(log, WriterOptions::default()).unwrap();
    let other_handle = w.clone();
    let queued = w.submit(entry(0)).unwrap();
    w.close();
    assert_eq!(queued.wait_blocking().unwrap(), 0);
    // Still-held handles fail cleanly instead of writing.
    let err = other_handle
        .submit(entry(1))
        .and_then(|p| p.wait_blocking())
        .unwrap_err();
    assert!(matches!(err, custody_log::fs::FsError::Closed(_)), "{err}");
    // The lock is free although a handle is alive: a restart can reopen.
    let log = FsLog::open(dir.path(), ORIGIN, signer()).unwrap();
    assert_eq!(log.committed().size, 1);
}
