//! Interop: awslabs' `tough` (an independent Rust TUF client) loads a
//! repository written by `custody repo` (consistent snapshots, a delegated
//! role) over real HTTP on loopback and reads a top-level and a delegated
//! target, verified by tough.
//!
//! Target names here have no directory part: with consistent snapshots,
//! tough 0.24 fetches `targets/<sha256>.<whole name>` (e.g.
//! `<sha256>.apps/app.txt`), while the TUF spec (5.7.3) and python-tuf put
//! the hash on the file name inside its directory (`apps/<sha256>.app.txt`),
//! which is what custody publishes. Checked by this test at first: tough got
//! 404 for a name with a directory. A deviation of tough's, not custody's.
//!
//! Hash bins: tough 0.24 has no TAP 15 support (its `Delegations` needs a
//! `roles` list and knows no `succinct_roles`), so a repository with hash
//! bins cannot be loaded by it at all; hash-bin interop is covered against
//! python-tuf (`repo_python.rs`). This test uses explicit delegations.
//!
//! tough fetches through a `Transport`; the one here does a plain HTTP GET
//! with ureq (the workspace's HTTP client) against the loopback server
//! (`common::TestServer`, axum), mapping 404 to FileNotFound as TUF's root
//! walk needs.
mod common;

use common::cli::Cli;
use common::TestServer;
use tough::{
    IntoVec, RepositoryLoader, TargetName, Transport, TransportError, TransportErrorKind,
    TransportStream,
};

#[derive(Debug, Clone)]
struct UreqTransport;

#[async_trait::async_trait]
impl Transport for UreqTransport {
    async fn fetch(&self, url: url::Url) -> Result<TransportStream, TransportError> {
        let u = url.to_string();
        let got = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, TransportError> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let resp = agent
                .get(&u)
                .call()
                .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &u, e))?;
            match resp.status().as_u16() {
                200 => resp
                    .into_body()
                    .with_config()
                    .limit(64 * 1024 * 1024)
                    .read_to_vec()
                    .map_err(|e| TransportError::new_with_cause(TransportErrorKind::Other, &u, e)),
                404 => Err(TransportError::new(TransportErrorKind::FileNotFound, &u)),
                s => Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    &u,
                    format!("HTTP {s}"),
                )),
            }
        })
        .await
        .map_err(|e| {
            TransportError::new_with_cause(TransportErrorKind::Other, url.as_str(), e)
        })??;
        let stream = futures_util::stream::iter([Ok::<_, TransportError>(bytes::Bytes::from(got))]);
        Ok(Box::pin(stream))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tough_reads_a_custody_repository_over_http() {
    let env = Cli::new("pw");
    env.keys(&["root", "targets", "snapshot", "timestamp", "apps"]);
    env.init_repo(&[]);
    env.ok(&[
        "repo",
        "delegate",
        "repo",
        "--name",
        "apps",
        "--key",
        "apps.pem",
        "--path",
        "app-*",
        "--passphrase-env",
        "KP",
    ]);
    std::fs::write(env.p("top.txt"), b"top-level target").unwrap();
    std::fs::write(env.p("app.txt"), b"delegated target").unwrap();
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "top.txt",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&[
        "repo",
        "add-target",
        "repo",
        "app.txt",
        "--name",
        "app-1.txt",
        "--passphrase-env",
        "KP",
    ]);
    env.ok(&["repo", "publish", "repo", "out"]);
    assert!(env.p("out/1.root.json").exists());

    let srv = env.p("srv");
    std::fs::create_dir_all(&srv).unwrap();
    std::os::unix::fs::symlink(env.p("out"), srv.join("metadata")).unwrap();
    std::os::unix::fs::symlink(env.p("out/targets"), srv.join("targets")).unwrap();
    let server = tokio::task::spawn_blocking(move || TestServer::start(&srv))
        .await
        .unwrap();
    let root = std::fs::read(env.p("out/1.root.json")).unwrap();
    let datastore = env.p("tough-datastore");
    std::fs::create_dir_all(&datastore).unwrap();
    let repo = RepositoryLoader::new(
        &root,
        url::Url::parse(&server.url("metadata/")).unwrap(),
        url::Url::parse(&server.url("targets/")).unwrap(),
    )
    .transport(UreqTransport)
    .datastore(&datastore)
    .load()
    .await
    .expect("tough refused custody's repository");
    for (name, want) in [
        ("top.txt", &b"top-level target"[..]),
        ("app-1.txt", &b"delegated target"[..]),
    ] {
        let stream = repo
            .read_target(&TargetName::new(name).unwrap())
            .await
            .unwrap_or_else(|e| panic!("tough read_target {name}: {e}"))
            .unwrap_or_else(|| panic!("tough: target {name} not found"));
        let got = stream.into_vec().await.unwrap();
        assert_eq!(got, want, "{name}");
    }
    // and a name no role lists is absent, not an error
    assert!(repo
        .read_target(&TargetName::new("app-none.txt").unwrap())
        .await
        .unwrap()
        .is_none());
    drop(server);
}
