//! Interop: python-tuf's ngclient (the reference client) consumes what
//! `custody repo publish` writes, over real HTTP on loopback: root rotation,
//! consistent snapshots, delegations and TAP 15 hash bins.
mod common;

use std::process::Command;

use common::cli::Cli;
use common::python;

const PW: &str = "pw";

/// python-tuf client: serve OUT over HTTP on 127.0.0.1 (ephemeral port),
/// bootstrap from 1.root.json, refresh, download each target; print JSON.
const CLIENT: &str = r#"
import functools, http.server, json, os, sys, threading
from tuf.ngclient import Updater
out, work = sys.argv[1], sys.argv[2]
names = sys.argv[3:]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=out)
handler.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{srv.server_address[1]}/"
md, td = os.path.join(work, "md"), os.path.join(work, "td")
os.makedirs(md, exist_ok=True); os.makedirs(td, exist_ok=True)
with open(os.path.join(out, "1.root.json"), "rb") as f:
    boot = f.read()
res = {}
try:
    u = Updater(md, base, td, base + "targets/", bootstrap=boot)
    u.refresh()
    res["root_version"] = u._trusted_set.root.version
    for n in names:
        info = u.get_targetinfo(n)
        if info is None:
            res[n] = None
            continue
        path = u.download_target(info, os.path.join(td, n.replace("/", "_")))
        with open(path, "rb") as f:
            res[n] = f.read().decode()
finally:
    srv.shutdown()
print(json.dumps(res))
"#;

/// Run the python-tuf client (`CLIENT`) on the published `out`, with its
/// own metadata and target directories in `work`.
fn client(env: &Cli, work: &str, names: &[&str]) -> serde_json::Value {
    let o = Command::new(python())
        .arg("-c")
        .arg(CLIENT)
        .arg(env.p("out").join("."))
        .arg(env.p(work))
        .args(names)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python-tuf client failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn python_tuf_client_reads_custody_repository() {
    let env = Cli::new(PW).with_passphrase_on_every_command();
    // every key type custody generates, so python-tuf verifies each scheme
    env.key_of_type("root", "ecdsa-p256");
    env.key_of_type("targets", "ed25519");
    env.key_of_type("snapshot", "ecdsa-p384");
    env.key_of_type("timestamp", "ed25519");
    env.key_of_type("boards", "rsa-pss");
    env.key_of_type("bins", "ed25519");
    env.key_of_type("root2", "ed25519");
    env.init_repo(&[]);
    std::fs::write(env.p("a.txt"), "top-level target").unwrap();
    std::fs::write(env.p("fw.bin"), "board firmware").unwrap();
    std::fs::write(env.p("app.tgz"), "binned app").unwrap();
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "a.txt",
        "--name",
        "docs/a.txt",
    ]);
    env.ok(&[
        "repo",
        "delegate",
        "repo",
        "--name",
        "boards",
        "--key",
        "boards.pem",
        "--path",
        "boards/*",
    ]);
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "fw.bin",
        "--name",
        "boards/fw.bin",
    ]);
    env.ok(&[
        "repo", "delegate", "repo", "--name", "apps", "--key", "bins.pem", "--path", "apps/*",
    ]);
    env.ok(&[
        "repo",
        "hash-bins",
        "repo",
        "--from",
        "apps",
        "--prefix",
        "apps-bin",
        "--bits",
        "3",
        "--key",
        "bins.pem",
    ]);
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "app.tgz",
        "--name",
        "apps/app.tgz",
    ]);
    env.ok(&["repo", "publish", "repo", "out"]);

    let r = client(
        &env,
        "c1",
        &["docs/a.txt", "boards/fw.bin", "apps/app.tgz", "nope/x"],
    );
    assert_eq!(r["root_version"], 1);
    assert_eq!(r["docs/a.txt"], "top-level target");
    assert_eq!(r["boards/fw.bin"], "board firmware");
    assert_eq!(r["apps/app.tgz"], "binned app");
    assert!(r["nope/x"].is_null());

    // root rotation: the client walks 1 -> 2 from its bootstrap root
    env.ok(&[
        "repo",
        "rotate-root",
        "repo",
        "--role",
        "root",
        "--add-key",
        "root2.pem",
    ]);
    std::fs::write(env.p("a2.txt"), "second").unwrap();
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "a2.txt",
        "--name",
        "docs/a2.txt",
    ]);
    env.ok(&["repo", "publish", "repo", "out"]);
    let r = client(&env, "c1", &["docs/a2.txt"]);
    assert_eq!(r["root_version"], 2);
    assert_eq!(r["docs/a2.txt"], "second");
}

/// A bin-split repository of registry shape (20,000 targets in 1,024 hash
/// bins, as `custody repo` writes every bin: the canonical envelope of the
/// signed bytes): python-tuf's ngclient over HTTP and custody's client over
/// file URLs both refresh it and download targets from several bins.
#[test]
fn large_bin_split_repository_refreshes_in_both_clients() {
    const N: usize = 20_000;
    let env = Cli::new(PW).with_passphrase_on_every_command();
    env.keys(&["root", "targets", "snapshot", "timestamp", "bins"]);
    env.init_repo(&[]);
    env.ok(&[
        "repo",
        "hash-bins",
        "repo",
        "--from",
        "targets",
        "--prefix",
        "bin",
        "--bits",
        "10",
        "--key",
        "bins.pem",
    ]);
    let pkgs = env.p("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    for i in 0..N {
        std::fs::write(pkgs.join(format!("p{i:05}.tar.gz")), format!("package {i}")).unwrap();
    }
    env.ok(&["repo", "add-target", "repo", "pkgs", "--name", "pkgs"]);
    env.ok(&["repo", "publish", "repo", "out"]);

    let picks = [0usize, 3_333, 7_777, 12_345, 16_000, N - 1];
    let names: Vec<String> = picks
        .iter()
        .map(|i| format!("pkgs/p{i:05}.tar.gz"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // several bins, not one
    let bins: std::collections::BTreeSet<String> = names
        .iter()
        .map(|n| {
            let h = ring::digest::digest(&ring::digest::SHA256, n.as_bytes());
            format!(
                "{:03x}",
                (u16::from(h.as_ref()[0]) << 2) | u16::from(h.as_ref()[1] >> 6)
            )
        })
        .collect();
    assert!(bins.len() >= 4, "{bins:?}");
    let bin_files = std::fs::read_dir(env.p("out").join("."))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".bin-"))
        .count();
    assert_eq!(bin_files, 1024);

    let r = client(&env, "py", &names);
    for (i, n) in picks.iter().zip(&names) {
        assert_eq!(r[*n], format!("package {i}"), "python-tuf: {n}");
    }

    let c = common::Client::new();
    c.init_bytes(&std::fs::read(env.p("out").join("1.root.json")).unwrap())
        .ok();
    let out = std::fs::canonicalize(env.p("out")).unwrap();
    let md = url::Url::from_directory_path(&out).unwrap();
    let tg = url::Url::from_directory_path(out.join("targets")).unwrap();
    let mut args = vec![
        "client",
        "--metadata-dir",
        common::s(&c.metadata_dir),
        "--metadata-url",
        md.as_str(),
        "--target-base-url",
        tg.as_str(),
        "--target-dir",
        common::s(&c.target_dir),
    ];
    for n in &names {
        args.push("--target-name");
        args.push(n);
    }
    args.push("download");
    common::run(&args).ok();
    for (i, n) in picks.iter().zip(&names) {
        // stored under its whole path encoded as one component
        let got = std::fs::read(c.target_dir.join(n.replace('/', "%2F"))).unwrap_or_default();
        assert_eq!(got, format!("package {i}").into_bytes(), "custody: {n}");
    }
}
