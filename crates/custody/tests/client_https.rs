//! HTTPS: the client talks TLS (rustls + ring) to a loopback server whose
//! certificate comes from a private CA given with --ca-cert, and refuses the
//! same server without it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{run, Client, Repo};

struct HttpsServer {
    child: Child,
    port: u16,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, ca_out: &std::path::Path) -> HttpsServer {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/https_server.py");
    let mut child = Command::new(common::python())
        .arg(script)
        .arg(dir)
        .arg(ca_out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start https server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port line");
    let port = line.trim().parse().unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("https_server.py did not print a port ({e}): {line:?}")
    });
    HttpsServer { child, port }
}

#[test]
fn https_with_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repo = Repo::new(&tmp.path().join("repo"), true);
    repo.add_target("targets", "app.bin", b"over tls");
    repo.bump_targets("targets");
    repo.update_snapshot();
    let ca = tmp.path().join("ca.pem");
    let server = start(&repo.dir, &ca);
    let md = format!("https://127.0.0.1:{}/metadata", server.port);
    let tg = format!("https://127.0.0.1:{}/targets", server.port);
    let client = Client::new();
    client.init(&repo).ok();
    let base = [
        "client",
        "--metadata-dir",
        common::s(&client.metadata_dir),
        "--metadata-url",
        &md,
        "--target-base-url",
        &tg,
        "--target-dir",
        common::s(&client.target_dir),
        "--target-name",
        "app.bin",
    ];

    // Without the CA the server is not trusted (Mozilla roots only).
    let mut args = base.to_vec();
    args.push("download");
    run(&args).fails_with(&["2.root.json", "transport failure"]);
    assert_eq!(client.trusted().len(), 1);

    let mut args = base.to_vec();
    args.extend(["--ca-cert", common::s(&ca), "download"]);
    run(&args).ok();
    assert_eq!(client.downloaded()["app.bin"], b"over tls");
    assert_eq!(client.version("targets"), 2);

    // A file that is not a CA bundle is a clear error.
    let mut args = base.to_vec();
    let bogus = client.metadata_dir.join("root.json");
    args.extend(["--ca-cert", common::s(&bogus), "refresh"]);
    run(&args).fails_with(&["--ca-cert", "no CERTIFICATE"]);
}
