//! `custody bundle create`: one file with director metadata, image
//! repository metadata and payloads, for USB or air-gapped delivery.
//! Devices verify it with `custody agent install-bundle`, through the same
//! verification as online check-ins (custody-agent `verify::verify_update`).
//!
//! Director metadata is per device and signed by the director: with
//! `--credential`/`--token` it is exported by `custody serve`
//! (`POST /api/v1/fleet/devices/{id}/bundle-metadata`, or
//! `POST /api/v1/fleet/bundle-metadata?hardware_id=H` for every active
//! device of a hardware id; scope `fleet:admin`, audited, and the device's
//! director versions are bumped like a check-in's). Offline, it is read
//! from files (`--director-metadata DIR`), one subdirectory per device id
//! (or the files directly with `--device`).
//! The image repository metadata is fetched from the server with the TUF
//! client, recording every file it read (roots from version 1, timestamp,
//! snapshot, targets, delegated roles on the way to each target), and each
//! payload is downloaded and verified before it goes into the bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{bail, ensure, Context, Result};
use chrono::Utc;
use custody_agent::bundle::{encode_files, write_bundle, BundleHeader};
use custody_client::{
    FetchError, Fetched, HttpTransport, Timeouts, Transport, Updater, UpdaterConfig,
};
use custody_director::wire::DirectorMetadataSet;
use url::Url;

use crate::api_client::{Api, Body};

/// Offline bundles.
#[derive(clap::Args, Debug)]
pub struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(clap::Subcommand, Debug)]
enum BundleCommand {
    /// Write a bundle for one device or for every device of a hardware id.
    Create(CreateArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  custody bundle create --device 3f2a… --server http://127.0.0.1:8080 \\
      --credential \"$ADMIN_CREDENTIAL\" update.cbundle
  custody bundle create --device 3f2a… --server http://127.0.0.1:8080 \\
      --director-metadata exported/3f2a… update.cbundle
  custody bundle create --hardware-id board-a --server http://127.0.0.1:8080 \\
      --director-metadata exported/ update.cbundle")]
struct CreateArgs {
    /// The device the bundle is for.
    #[arg(
        long,
        required_unless_present = "hardware_id",
        conflicts_with = "hardware_id"
    )]
    device: Option<String>,
    /// Every device of this hardware id (one director metadata set each).
    #[arg(long)]
    hardware_id: Option<String>,
    /// Server base URL (image repository and payloads).
    #[arg(long)]
    server: String,
    /// Image repository name on the server.
    #[arg(long, default_value = "main")]
    repo: String,
    /// Offline alternative to asking the server: director metadata
    /// exported earlier: `timestamp.json`, `snapshot.json`, `targets.json`
    /// and any `N.root.json`, either directly in DIR (with --device) or in
    /// DIR/<device-id>/.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["credential", "token"],
        conflicts_with_all = ["credential", "token"]
    )]
    director_metadata: Option<PathBuf>,
    /// API credential (scope fleet:admin) to get the device's director
    /// metadata from the server (exchanged for a token).
    #[arg(long, conflicts_with = "token")]
    credential: Option<String>,
    /// Bearer token (scope fleet:admin) instead of --credential.
    #[arg(long)]
    token: Option<String>,
    /// Trusted image root to start the image repository walk from
    /// (default: the server's 1.root.json; devices verify everything again
    /// from their own pinned root).
    #[arg(long, value_name = "FILE")]
    image_root: Option<PathBuf>,
    /// Embed transparency-log evidence with a consistency proof from this
    /// checkpoint size (repeatable): the sizes the receiving devices stored
    /// (`custody agent status` shows it). A device with no stored
    /// checkpoint needs none; a device whose stored size is not listed
    /// refuses the bundle (not as an attack) and says which size to add.
    #[arg(long = "log-since", value_name = "SIZE")]
    log_since: Vec<u64>,
    /// Embed no transparency-log evidence (servers without a log). Devices
    /// that pin a log refuse such a bundle.
    #[arg(long)]
    no_log: bool,
    /// Output file.
    out: PathBuf,
}

pub fn run(args: BundleArgs) -> Result<ExitCode> {
    match args.command {
        BundleCommand::Create(c) => create(&c),
    }
}

/// Records every file the TUF client fetches, by file name.
/// Only URLs under `prefix` (the metadata URL) are buffered and recorded;
/// payloads stream through untouched.
struct Recording<T> {
    inner: T,
    prefix: String,
    files: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl<T: Transport> Transport for Recording<T> {
    fn fetch(&self, url: &Url, max_len: u64) -> Result<Fetched, FetchError> {
        if !url.as_str().starts_with(&self.prefix) {
            return self.inner.fetch(url, max_len);
        }
        let bytes = self.inner.fetch(url, max_len)?.read_all()?;
        let name = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_owned();
        if let Ok(mut f) = self.files.lock() {
            f.insert(name, bytes.clone());
        }
        Fetched::new(
            url.as_str(),
            max_len,
            Some(bytes.len() as u64),
            Box::new(std::io::Cursor::new(bytes)),
        )
    }
}

impl<T: Transport> Transport for &Recording<T> {
    fn fetch(&self, url: &Url, max_len: u64) -> Result<Fetched, FetchError> {
        (*self).fetch(url, max_len)
    }
}

fn read_set(dir: &Path) -> Result<DirectorMetadataSet> {
    let read = |n: &str| {
        let p = dir.join(n);
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    };
    let mut roots: Vec<(u64, Vec<u8>)> = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(v) = name.strip_suffix(".root.json") {
            if let Ok(v) = v.parse::<u64>() {
                roots.push((v, std::fs::read(e.path())?));
            }
        }
    }
    roots.sort_by_key(|(v, _)| *v);
    Ok(DirectorMetadataSet {
        roots: roots.into_iter().map(|(_, b)| b).collect(),
        timestamp: read("timestamp.json")?,
        snapshot: read("snapshot.json")?,
        targets: read("targets.json")?,
    })
}

/// Target names the director metadata lists (read, not trusted: the
/// device verifies; this only decides which payloads to pack).
fn target_names(set: &DirectorMetadataSet) -> Result<Vec<String>> {
    let v: serde_json::Value =
        serde_json::from_slice(&set.targets).context("director targets.json is not JSON")?;
    Ok(v.get("signed")
        .and_then(|s| s.get("targets"))
        .and_then(|t| t.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default())
}

/// Director metadata from files (`--director-metadata DIR`).
fn director_from_files(
    c: &CreateArgs,
    dir: &Path,
) -> Result<BTreeMap<String, DirectorMetadataSet>> {
    let mut director = BTreeMap::new();
    if let Some(dev) = &c.device {
        let sub = dir.join(dev);
        let d = if sub.is_dir() { sub } else { dir.to_path_buf() };
        director.insert(dev.clone(), read_set(&d)?);
    } else {
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let e = e?;
            if e.path().is_dir() {
                let id = e.file_name().to_string_lossy().into_owned();
                director.insert(id, read_set(&e.path())?);
            }
        }
        ensure!(
            !director.is_empty(),
            "{}: no per-device subdirectories of director metadata",
            dir.display()
        );
    }
    Ok(director)
}

/// One device's answer of the server's bundle-metadata export (the
/// server's `bundle_export::BundleMetadata`; declared here so the
/// agent-only build, without custody-server, has it).
#[derive(serde::Deserialize)]
struct BundleMetadata {
    device_id: String,
    hardware_id: String,
    assignment: String,
    director: DirectorMetadataSet,
}

#[derive(serde::Deserialize)]
struct BundleMetadataList {
    devices: Vec<BundleMetadata>,
}

/// Director metadata exported by the server's director (signed now, the
/// device's director versions bumped, audited).
fn director_from_server(
    c: &CreateArgs,
    server: &str,
) -> Result<BTreeMap<String, DirectorMetadataSet>> {
    if c.token.is_none() && c.credential.is_none() {
        bail!("--credential or --token is needed to ask the server");
    }
    // Director metadata of a whole hardware id can be large.
    let api = Api::connect(server, &c.repo, c.token.as_deref(), c.credential.as_deref())?
        .with_answer_limit(256 << 20);
    let mut director = BTreeMap::new();
    if let Some(dev) = &c.device {
        let v = api
            .send(
                "POST",
                &api.url(&["api", "v1", "fleet", "devices", dev, "bundle-metadata"]),
                "application/json",
                Body::json(&serde_json::json!({}))?,
            )
            .with_context(|| format!("exporting director metadata for device {dev}"))?;
        let m: BundleMetadata = serde_json::from_value(v)
            .with_context(|| format!("director metadata answer for device {dev}"))?;
        ensure!(
            &m.device_id == dev,
            "the server answered for device {} when asked for device {dev}",
            m.device_id
        );
        eprintln!("device {dev}: {}", m.assignment);
        director.insert(m.device_id, m.director);
    } else if let Some(hw) = &c.hardware_id {
        let mut url = api.url(&["api", "v1", "fleet", "bundle-metadata"]);
        url.query_pairs_mut().append_pair("hardware_id", hw);
        let v = api
            .send(
                "POST",
                &url,
                "application/json",
                Body::json(&serde_json::json!({}))?,
            )
            .with_context(|| format!("exporting director metadata for hardware id {hw}"))?;
        let l: BundleMetadataList = serde_json::from_value(v)
            .with_context(|| format!("director metadata answer for hardware id {hw}"))?;
        for m in l.devices {
            ensure!(
                &m.hardware_id == hw,
                "the server answered device {} of hardware id {} when asked for {hw}",
                m.device_id,
                m.hardware_id
            );
            eprintln!("device {}: {}", m.device_id, m.assignment);
            director.insert(m.device_id, m.director);
        }
        ensure!(
            !director.is_empty(),
            "hardware id {hw}: the server exported no device"
        );
    }
    Ok(director)
}

fn create(c: &CreateArgs) -> Result<ExitCode> {
    let server = c.server.trim_end_matches('/');
    let director = match &c.director_metadata {
        Some(dir) => director_from_files(c, dir)?,
        None => director_from_server(c, server)?,
    };
    let mut names: Vec<String> = Vec::new();
    for set in director.values() {
        for n in target_names(set)? {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let meta_url = Url::parse(&format!("{server}/repos/{}/metadata/", c.repo))?;
    let targets_url = Url::parse(&format!("{server}/repos/{}/targets/", c.repo))?;
    let work = tempfile::Builder::new()
        .prefix(".custody-bundle-work-")
        .tempdir_in(
            c.out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .context("creating a work directory next to the output")?;
    let rec = Recording {
        inner: HttpTransport::new(Timeouts::default()),
        prefix: meta_url.as_str().to_owned(),
        files: Mutex::new(BTreeMap::new()),
    };
    let meta_dir = work.path().join("metadata");
    std::fs::create_dir_all(&meta_dir)?;
    let root = match &c.image_root {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => {
            let u = meta_url.join("1.root.json")?;
            rec.fetch(&u, custody_tuf::Limits::default().max_root_bytes)
                .and_then(Fetched::read_all)
                .with_context(|| format!("fetching {u}"))?
        }
    };
    let root_file = work.path().join("root.json");
    std::fs::write(&root_file, &root)?;
    custody_client::init_trusted_root(&meta_dir, &root_file)
        .context("the image root is not a valid self-signed root")?;
    let mut updater = Updater::new(
        &meta_dir,
        meta_url.clone(),
        &rec,
        UpdaterConfig::default(),
        Utc::now(),
    )?;
    updater
        .refresh()
        .context("refreshing the image repository")?;
    let payload_dir = work.path().join("payloads");
    let mut payloads: Vec<(String, PathBuf)> = Vec::new();
    let mut log = BTreeMap::new();
    let log_base = Url::parse(&format!("{server}/log/v1/"))?;
    for n in &names {
        let got = updater
            .fetch_target(n, &targets_url, &payload_dir)
            .with_context(|| format!("downloading and verifying target {n}"))?;
        if !c.no_log {
            let expect = custody_client::log::ExpectedPublish {
                repo: c.repo.clone(),
                name: n.clone(),
                length: got.length,
                hashes: got.hashes.clone(),
            };
            let ev = custody_client::log::fetch_offline_evidence(
                &rec.inner,
                &log_base,
                &expect,
                &c.log_since,
            )
            .with_context(|| {
                format!("transparency-log evidence for target {n} (--no-log to bundle without it)")
            })?;
            eprintln!(
                "target {n}: log entry {} in checkpoint of size {}, consistency proofs from [{}]",
                ev.index,
                custody_client::log::evidence_size(&ev).unwrap_or_default(),
                ev.consistency
                    .iter()
                    .map(|p| p.old.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            log.insert(n.clone(), ev);
        }
        payloads.push((n.clone(), got.file));
    }
    drop(updater);
    let mut files = rec
        .files
        .into_inner()
        .map_err(|_| anyhow::anyhow!("recording lock poisoned"))?;
    if !files.contains_key("1.root.json") {
        files.insert("1.root.json".into(), root);
    }
    if names.is_empty() {
        bail!("the director metadata assigns no target: nothing to bundle");
    }
    let header = BundleHeader {
        format: 1,
        created: Utc::now().timestamp(),
        hardware_id: c.hardware_id.clone(),
        director,
        image_repository: c.repo.clone(),
        image_metadata: encode_files(&files),
        payloads: Vec::new(),
        log,
    };
    let devices = header.director.len();
    write_bundle(&c.out, header, &payloads)
        .with_context(|| format!("writing {}", c.out.display()))?;
    eprintln!(
        "wrote {}: {} device(s), {} payload(s), {} image metadata file(s)",
        c.out.display(),
        devices,
        payloads.len(),
        files.len()
    );
    Ok(ExitCode::SUCCESS)
}
