//! `custody bundle create`: one file with director metadata, image
//! repository metadata and payloads, for USB or air-gapped delivery.
//! Devices verify it with `custody agent install-bundle`, through the same
//! verification as online check-ins (custody-agent `verify::verify_update`).
//!
//! Director metadata is per device and signed by the director: it is read
//! from files the director exported (`--director-metadata DIR`), one
//! subdirectory per device id (or the files directly with `--device`).
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
    /// Director metadata exported by the director: `timestamp.json`,
    /// `snapshot.json`, `targets.json` and any `N.root.json`, either
    /// directly in DIR (with --device) or in DIR/<device-id>/.
    #[arg(long, value_name = "DIR")]
    director_metadata: PathBuf,
    /// Trusted image root to start the image repository walk from
    /// (default: the server's 1.root.json; devices verify everything again
    /// from their own pinned root).
    #[arg(long, value_name = "FILE")]
    image_root: Option<PathBuf>,
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

fn create(c: &CreateArgs) -> Result<ExitCode> {
    let mut director = BTreeMap::new();
    if let Some(dev) = &c.device {
        let sub = c.director_metadata.join(dev);
        let dir = if sub.is_dir() {
            sub
        } else {
            c.director_metadata.clone()
        };
        director.insert(dev.clone(), read_set(&dir)?);
    } else {
        for e in std::fs::read_dir(&c.director_metadata)
            .with_context(|| format!("listing {}", c.director_metadata.display()))?
        {
            let e = e?;
            if e.path().is_dir() {
                let id = e.file_name().to_string_lossy().into_owned();
                director.insert(id, read_set(&e.path())?);
            }
        }
        ensure!(
            !director.is_empty(),
            "{}: no per-device subdirectories of director metadata",
            c.director_metadata.display()
        );
    }
    let mut names: Vec<String> = Vec::new();
    for set in director.values() {
        for n in target_names(set)? {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let server = c.server.trim_end_matches('/');
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
    for n in &names {
        let got = updater
            .fetch_target(n, &targets_url, &payload_dir)
            .with_context(|| format!("downloading and verifying target {n}"))?;
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
