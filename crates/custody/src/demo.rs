//! `custody demo`: the whole trust chain, narrated, in a temp directory.
//!
//! Every step uses the real pieces, nothing is simulated:
//! keys and a TUF repository (custody-repo), the HTTP server on loopback
//! (custody-server, embedded SQLite), devices that verify with the TUF
//! client (custody-client / custody-tuf) and install into A/B slots with a
//! health check (custody-agent), and a compromised mirror whose tampered
//! payload a device refuses.
//!
//! Exit 0 only if every expected outcome happened.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::Utc;
use custody_agent::{Agent, AgentConfig, HookCommand, Outcome, Probe, SlotInstaller, TargetMeta};
use custody_client::{AnyTransport, Timeouts, Updater, UpdaterConfig};
use custody_repo::keyring::{KeyLocation, KeyRing};
use custody_repo::passphrase::SecretSource;
use custody_repo::policy::ExpiryPolicy;
use custody_repo::repository::{InitOptions, PublishFile, RoleInit};
use custody_repo::{keyfile, KeyType, Repository, Signer};
use custody_server::ServerConfig;
use indicatif::{ProgressBar, ProgressStyle};
use url::Url;

/// Run the whole custody flow on this machine, narrated.
///
/// Creates a TUF repository with offline-style key files, starts `custody
/// serve` on loopback with the embedded SQLite store, publishes a signed
/// release for two hardware types, lets two devices verify, install into
/// an inactive A/B slot, health-check and commit it, shows what each
/// device reported, and then shows a device refusing a payload tampered
/// with on the mirror. Nothing outside the temp directory is touched.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  cargo run --release -- demo\n  custody demo --keep /tmp/custody-demo   # keep the files to look at"
)]
pub struct DemoArgs {
    /// Keep everything in DIR (must not exist) instead of a temp directory
    /// that is removed at the end.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Size of each demo payload in MiB.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    payload_mib: u64,
}

const PASSPHRASE_ENV: &str = "CUSTODY_DEMO_PASSPHRASE";
const REPO: &str = "fleet";

struct Device {
    name: &'static str,
    hardware_id: &'static str,
    dir: PathBuf,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let _tmp;
    let base = match &args.keep {
        Some(dir) => {
            ensure!(
                !dir.exists(),
                "--keep {}: already exists; name a new directory",
                dir.display()
            );
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            _tmp = tempfile::Builder::new()
                .prefix("custody-demo-")
                .tempdir()
                .context("creating a temp directory")?;
            _tmp.path().to_owned()
        }
    };
    println!("custody demo: the update trust chain, end to end");
    println!("working in {}\n", base.display());

    // 1. Keys and repository.
    step(1, "create signing keys and a TUF repository");
    // A demo passphrase for the encrypted key files; real deployments keep
    // root and targets keys offline or on a PKCS#11 token.
    std::env::set_var(PASSPHRASE_ENV, "demo passphrase, not for production");
    let keys_dir = base.join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let mut ring = KeyRing::new(SecretSource::Env(PASSPHRASE_ENV.to_owned()));
    let mut roles = BTreeMap::new();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let path = keys_dir.join(format!("{role}.pem"));
        let signer = keyfile::generate(
            &path,
            KeyType::Ed25519,
            b"demo passphrase, not for production",
        )
        .with_context(|| format!("generating the {role} key"))?;
        detail(&format!(
            "{role:<9} key {} (ed25519, encrypted PKCS#8, mode 0600)",
            short(signer.keyid())
        ));
        roles.insert(
            role.to_owned(),
            RoleInit {
                keys: vec![(
                    signer.key().clone(),
                    signer.keyid().to_owned(),
                    KeyLocation::File { path },
                )],
                threshold: 1,
            },
        );
        ring.add(Box::new(signer));
    }
    let repo_dir = base.join("repository");
    let now = Utc::now();
    let mut repo = Repository::init(
        &repo_dir,
        InitOptions {
            roles,
            expiry: ExpiryPolicy::default(),
            consistent_snapshot: true,
            allow_shared_keys: false,
        },
        &mut ring,
        now,
    )
    .context("initialising the repository")?;
    repo.save()?;
    detail("root, targets, snapshot, timestamp signed; consistent snapshots on");

    // 2. Server.
    step(
        2,
        "start custody serve on loopback (embedded SQLite + local blobs)",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let data_dir = base.join("server-data");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data_dir.clone(),
        ..ServerConfig::default()
    };
    let server = rt
        .block_on(custody_server::start(config))
        .context("starting the server")?;
    let server_url = server.url();
    detail(&format!(
        "listening on {server_url}; state in {}",
        data_dir.display()
    ));
    let metadata_url = Url::parse(&format!("{server_url}/repos/{REPO}/metadata/"))?;
    let targets_url = Url::parse(&format!("{server_url}/repos/{REPO}/targets/"))?;

    // 3. Release.
    step(3, "build and sign a release for two hardware types");
    let payloads = base.join("build");
    std::fs::create_dir_all(&payloads)?;
    let releases = [
        ("sensor-hub/firmware-2.4.0.img", "sensor-hub-v2", 24u64),
        ("gateway/firmware-7.1.0.img", "gateway-x86", 71u64),
    ];
    for (name, hw, counter) in releases {
        let file = payloads.join(name.replace('/', "_"));
        write_payload(&file, name, args.payload_mib)?;
        let custom = serde_json::json!({
            "hardware_id": hw,
            "release_counter": counter,
        });
        repo.add_targets(&file, Some(name), Some(custom), &mut ring, Utc::now())
            .with_context(|| format!("adding target {name}"))?;
        detail(&format!(
            "{name}: {} MiB, hardware_id {hw}, release counter {counter}",
            args.payload_mib
        ));
    }
    repo.save()?;
    let generation = publish(&repo, &server.state.hosting, None)?;
    detail(&format!(
        "published generation {generation}: every signature, version, expiry and hash re-verified before it went live"
    ));

    // 4. Devices.
    step(
        4,
        "two devices verify, install into their inactive slot, health-check and commit",
    );
    let devices = [
        Device {
            name: "device-a",
            hardware_id: "sensor-hub-v2",
            dir: base.join("devices/device-a"),
        },
        Device {
            name: "device-b",
            hardware_id: "gateway-x86",
            dir: base.join("devices/device-b"),
        },
    ];
    let root_v1 = repo_dir.join("metadata").join("root.json");
    for d in &devices {
        std::fs::create_dir_all(d.dir.join("metadata"))?;
        custody_client::init_trusted_root(&d.dir.join("metadata"), &root_v1)
            .with_context(|| format!("{}: pinning the initial root", d.name))?;
    }
    for d in &devices {
        let (name, _, _) = releases
            .iter()
            .find(|(_, hw, _)| *hw == d.hardware_id)
            .copied()
            .context("no release for this hardware id")?;
        let outcome = update_device(d, &metadata_url, &targets_url, name)?;
        ensure!(
            matches!(outcome, Outcome::Installed),
            "{}: expected the release to install, got {outcome:?}",
            d.name
        );
        let current = std::fs::read_link(d.dir.join("current"))
            .with_context(|| format!("{}: reading the current slot link", d.name))?;
        detail(&format!(
            "{} ({}) committed {name}; current -> {}",
            d.name,
            d.hardware_id,
            current.display()
        ));
    }

    // 5. A compromised mirror.
    step(5, "a compromised mirror serves a tampered payload");
    // A new editing session, as a second `custody repo add-target` would be:
    // every role it changes gets a new version.
    drop(repo);
    let mut repo = Repository::open(&repo_dir).context("reopening the repository")?;
    let next = ("sensor-hub/firmware-2.5.0.img", "sensor-hub-v2", 25u64);
    let file = payloads.join(next.0.replace('/', "_"));
    write_payload(&file, next.0, args.payload_mib)?;
    repo.add_targets(
        &file,
        Some(next.0),
        Some(serde_json::json!({"hardware_id": next.1, "release_counter": next.2})),
        &mut ring,
        Utc::now(),
    )?;
    repo.save()?;
    let tampered_rel = publish(&repo, &server.state.hosting, Some(next.0))?;
    detail(&format!(
        "release {} signed and published, then its bytes were flipped on the mirror ({tampered_rel})",
        next.0
    ));
    let outcome = update_device(&devices[0], &metadata_url, &targets_url, next.0)?;
    let Outcome::AttackDetected { reason } = &outcome else {
        bail!("device-a: expected the tampered payload to be refused, got {outcome:?}");
    };
    detail(&format!("device-a refused it: {reason}"));
    let committed = committed_name(&devices[0])?;
    ensure!(
        committed.as_deref() == Some(releases[0].0),
        "device-a: the installed version changed to {committed:?}"
    );
    detail(&format!(
        "device-a still runs {}: nothing unverified was installed",
        releases[0].0
    ));

    // 6. Audit.
    step(6, "audit: what each device reported, in order");
    for d in &devices {
        let queue = custody_agent::ReportQueue::open(d.dir.join("agent/reports"))?;
        for q in queue.pending()? {
            let r = &q.report;
            let when = chrono::DateTime::<Utc>::from_timestamp(r.decided_at as i64, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            detail(&format!(
                "{} {} {:<15} {} (counter {})",
                when,
                d.name,
                r.outcome.kind(),
                r.target.name,
                r.target.release_counter
            ));
        }
    }
    detail("reports are queued durably on each device until the server acknowledges them");
    detail("not in this build yet: director assignment, signed manifests, transparency log proofs");

    rt.block_on(server.shutdown())
        .context("stopping the server")?;
    println!(
        "\ndemo complete in {:.1}s: 2 devices updated and verified, 1 tampered payload refused",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// One device update: refresh TUF metadata, look the target up, stream it
/// through the verifier into the agent's download slot, install.
fn update_device(d: &Device, metadata_url: &Url, targets_url: &Url, name: &str) -> Result<Outcome> {
    let mut updater = Updater::new(
        d.dir.join("metadata"),
        metadata_url.clone(),
        AnyTransport::new(Timeouts::default()),
        UpdaterConfig::default(),
        Utc::now(),
    )
    .with_context(|| format!("{}: loading trusted metadata", d.name))?;
    updater
        .refresh()
        .with_context(|| format!("{}: refreshing metadata", d.name))?;
    let (_role, info) = updater
        .get_target_info(name)
        .with_context(|| format!("{}: looking up {name}", d.name))?
        .with_context(|| format!("{}: {name} is not in the signed targets", d.name))?;
    let counter = info
        .custom
        .as_ref()
        .and_then(|c| c.get("release_counter"))
        .and_then(|c| c.as_u64())
        .unwrap_or(0);
    let meta = TargetMeta {
        name: name.to_owned(),
        length: info.length,
        hashes: info
            .hashes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        release_counter: counter,
        custom: info.custom.clone(),
    };

    let slots = d.dir.clone();
    let installer = SlotInstaller::open(&slots)?;
    let mut config = AgentConfig::new(d.dir.join("agent"));
    config.health_check = Some(HookCommand {
        argv: vec![
            "sh".into(),
            "-c".into(),
            // the new slot's payload must be in place and non-empty
            r#"test -s "$CUSTODY_PAYLOAD""#.into(),
        ],
        timeout: Duration::from_secs(30),
    });
    let mut agent = Agent::open(config, Box::new(installer), Probe::none())?;
    agent.recover()?;
    let attempt = agent.begin(meta)?;
    let url = targets_url.join(&updater.trusted().target_remote_path(name, &info))?;
    let dest = agent.download_path(attempt);
    let bar = spinner(&format!("{}: downloading and verifying {name}", d.name));
    let transport = AnyTransport::new(Timeouts::default());
    let fetched = custody_client::target::download_verified(&transport, &url, name, &info, &dest);
    bar.finish_and_clear();
    match fetched {
        Ok(()) => {
            agent.downloaded(attempt, &dest)?;
            Ok(agent.install(attempt)?)
        }
        Err(e) => Ok(agent.abort(
            attempt,
            Outcome::AttackDetected {
                reason: e.to_string(),
            },
        )?),
    }
}

fn committed_name(d: &Device) -> Result<Option<String>> {
    let installer = SlotInstaller::open(&d.dir)?;
    let agent = Agent::open(
        AgentConfig::new(d.dir.join("agent")),
        Box::new(installer),
        Probe::none(),
    )?;
    Ok(agent
        .state()
        .committed
        .as_ref()
        .map(|c| c.target.name.clone()))
}

/// Publish the repository into the server as a new generation. With
/// `tamper`, that target's bytes are flipped on the way (a compromised
/// mirror); returns the tampered path, else the generation id.
fn publish(
    repo: &Repository,
    hosting: &custody_server::hosting::Hosting,
    tamper: Option<&str>,
) -> Result<String> {
    let files = repo
        .build_publish_set(Utc::now())
        .context("verifying the publish set")?;
    let gen = hosting.begin_generation(REPO)?;
    let mut tampered = None;
    for (path, file) in files {
        match (path.strip_prefix("targets/"), file) {
            (Some(rel), PublishFile::Copy(src)) => {
                let name_matches = tamper.is_some_and(|t| {
                    let (dir, base) = t.rsplit_once('/').unwrap_or(("", t));
                    rel.starts_with(dir) && rel.ends_with(&format!(".{base}"))
                });
                if name_matches {
                    let mut bytes = std::fs::read(&src)?;
                    if let Some(b) = bytes.get_mut(4096) {
                        *b ^= 0x01;
                    }
                    gen.write_target(rel, &bytes)?;
                    tampered = Some(format!("targets/{rel}"));
                } else {
                    gen.add_target_file(rel, &src)?;
                }
            }
            (Some(rel), PublishFile::Bytes(b)) => gen.write_target(rel, &b)?,
            (None, PublishFile::Bytes(b)) => gen.write_metadata(&path, &b)?,
            (None, PublishFile::Copy(src)) => gen.write_metadata(&path, &std::fs::read(src)?)?,
        }
    }
    let id = gen.commit(hosting)?;
    Ok(tampered.unwrap_or(id))
}

/// A deterministic pseudo-random payload (xorshift), with a progress bar.
fn write_payload(path: &Path, name: &str, mib: u64) -> Result<()> {
    let total = mib * 1024 * 1024;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("      {msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("building {name}"));
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut state: u64 = name.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for w in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&state.to_le_bytes());
        }
        f.write_all(&chunk)?;
        bar.inc(chunk.len() as u64);
    }
    f.flush()?;
    bar.finish_and_clear();
    Ok(())
}

fn spinner(msg: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(msg.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn step(n: u32, what: &str) {
    println!("[{n}/6] {what}");
}

fn detail(what: &str) {
    println!("      {what}");
}

fn short(keyid: &str) -> &str {
    keyid.get(..12).unwrap_or(keyid)
}
