//! `custody demo`: the whole trust chain, narrated, in a temp directory.
//!
//! Every step uses the real pieces, nothing is simulated: keys and a TUF
//! image repository (custody-repo), the HTTP server on loopback
//! (custody-server with its director, embedded SQLite), two devices that
//! enrol (custody-agent: device key, pinned roots), a rollout through the
//! fleet API, check-ins with signed manifests, per-device director metadata
//! verified together with the image repository (custody-agent's one
//! verification pipeline over custody-tuf / custody-director), A/B slot
//! installs with a health check, the server's record of who got what, and
//! a compromised mirror whose tampered payload a device refuses and reports.
//!
//! Exit 0 only if every expected outcome happened.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::Utc;
use custody_agent::device::{
    enroll, Action, CheckReport, Credential, Device as AgentDevice, EnrollOptions, LocalConfig,
};
use custody_agent::keystore::DeviceKeyType;
use custody_agent::{HookCommand, InstallerConfig};
use custody_director::wire::DeviceAttributes;
use custody_keys::passphrase::SecretSource;
use custody_keys::{keyfile, KeyType, Signer};
use custody_repo::keyring::{KeyLocation, KeyRing};
use custody_repo::policy::ExpiryPolicy;
use custody_repo::repository::{InitOptions, PublishFile, RoleInit};
use custody_repo::Repository;
use custody_server::ServerConfig;
use indicatif::{ProgressBar, ProgressStyle};

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
    step(
        1,
        "create a TUF repository, start the server, build and sign a release",
    );
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
    detail("start custody serve on loopback (embedded SQLite + local blobs, director on)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let data_dir = base.join("server-data");
    // The server's online keys (image repository snapshot/timestamp and
    // the director's) are encrypted with this demo passphrase.
    let pass_file = base.join("server-key-passphrase");
    std::fs::write(&pass_file, "demo server passphrase, not for production")?;
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data_dir.clone(),
        key_passphrase_file: Some(pass_file),
        ..ServerConfig::default()
    };
    config.director.image_repository = REPO.to_owned();
    let server = rt
        .block_on(custody_server::start(config))
        .context("starting the server")?;
    let server_url = server.url();
    detail(&format!(
        "listening on {server_url}; state in {}",
        data_dir.display()
    ));

    // 3. Release.
    detail("build and sign a release for two hardware types");
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
            "hardware_ids": [hw],
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
    let names: Vec<String> = releases.iter().map(|(n, _, _)| (*n).to_owned()).collect();
    let size = log_release(&rt, &server.state, &repo_dir, &names)?;
    detail(&format!(
        "{} target_publish entries appended to the transparency log (size {size}); devices refuse any target not in it",
        names.len()
    ));

    // 4. Fleet operator, devices.
    let admin = Api::new(&server_url);
    let bootstrap = server
        .bootstrap_credential
        .clone()
        .context("the fresh server printed no bootstrap credential")?;
    let admin_token = admin.token(&bootstrap)?;
    let fleet_secret = admin.call(
        "POST",
        "/api/v1/credentials",
        Some(&admin_token),
        Some(serde_json::json!({"name": "demo fleet operator", "scopes": ["fleet:admin"]})),
    )?["secret"]
        .as_str()
        .context("credential answer without secret")?
        .to_owned();
    let fleet = admin.token(&fleet_secret)?;

    step(2, "enrol two devices with different hardware ids");
    let tokens = admin.call(
        "POST",
        "/api/v1/fleet/enrolment-tokens",
        Some(&fleet),
        Some(serde_json::json!({"group": "demo", "count": 2})),
    )?;
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
    let mut ids = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let token = tokens["tokens"][i]
            .as_str()
            .context("enrolment token missing")?;
        let cfg = enroll(&EnrollOptions {
            server: server_url.clone(),
            credential: Credential::Token(token.to_owned()),
            hardware_id: d.hardware_id.to_owned(),
            attributes: DeviceAttributes {
                environment: "production".into(),
                tags: Default::default(),
                group: None,
            },
            state_dir: d.state(),
            key_type: DeviceKeyType::Ed25519,
            director_root: None,
            image_root: Some(std::fs::read(&root_v1)?),
            rollback_keys: None,
            // pinned out of band, as an operator would from /log/v1/key
            log: custody_agent::device::LogPinOptions {
                log_key: Some(server.state.log.verifier_key().to_vkey()),
                ..Default::default()
            },
        })
        .with_context(|| format!("{}: enrolment", d.name))?;
        detail(&format!(
            "{} ({}) enrolled as {}: device id = key id of its new ed25519 key (0600); director root pinned, image root and transparency-log key given out of band",
            d.name,
            d.hardware_id,
            short(&cfg.device_id)
        ));
        ids.push(cfg.device_id);
    }

    step(3, "roll the signed release out");
    for (name, hw, _) in releases {
        let r = admin.call(
            "POST",
            "/api/v1/fleet/rollouts",
            Some(&fleet),
            Some(serde_json::json!({
                "id": format!("rollout-{hw}"),
                "target": name,
                "selector": {"hardware_ids": [hw]},
            })),
        )?;
        detail(&format!(
            "rollout {} of {name} (release counter {}) to hardware {hw}; the director signs per-device metadata",
            r["id"].as_str().unwrap_or("?"),
            r["release_counter"]
        ));
    }

    step(
        4,
        "devices check in, verify director + image repository, install into the inactive slot, health-check, commit",
    );
    for d in &devices {
        let (name, _, _) = releases
            .iter()
            .find(|(_, hw, _)| *hw == d.hardware_id)
            .copied()
            .context("no release for this hardware id")?;
        let report = check_in(d)?;
        match &report.action {
            Action::Installed { target, .. } if target == name => {}
            other => bail!("{}: expected {name} to install, got {other:?}", d.name),
        }
        let current = std::fs::read_link(d.dir.join("current"))
            .with_context(|| format!("{}: reading the current slot link", d.name))?;
        detail(&format!(
            "{} ({}) committed {name}; current -> {}; outcome reported in signed manifest {:?}",
            d.name,
            d.hardware_id,
            current.display(),
            report.accepted_counters.last().copied().unwrap_or(0)
        ));
        detail(&format!(
            "{}: transparency log checked before install: publish entry included in a checkpoint signed by the pinned log key, stored as its last checkpoint (size {})",
            d.name,
            stored_log_size(&d.state()).unwrap_or_default()
        ));
    }

    step(
        5,
        "audit: who got what, as the server's fleet API records it",
    );
    for (d, id) in devices.iter().zip(&ids) {
        let v = admin.call(
            "GET",
            &format!("/api/v1/fleet/devices/{id}"),
            Some(&fleet),
            None,
        )?;
        detail(&format!(
            "{} {} runs {} (counter {}), assigned {}, drift {}",
            d.name,
            short(id),
            v["installed"]["target"].as_str().unwrap_or("nothing"),
            v["installed"]["release_counter"],
            v["assigned"]["target"].as_str().unwrap_or("nothing"),
            v["drift"]
        ));
    }

    step(6, "a compromised mirror serves a tampered payload");
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
        Some(serde_json::json!({"hardware_ids": [next.1], "release_counter": next.2})),
        &mut ring,
        Utc::now(),
    )?;
    repo.save()?;
    let tampered_rel = publish(&repo, &server.state.hosting, Some(next.0))?;
    log_release(&rt, &server.state, &repo_dir, &[next.0.to_owned()])?;
    detail(&format!(
        "release {} signed and published, then its bytes were flipped on the mirror ({tampered_rel})",
        next.0
    ));
    admin.call(
        "POST",
        "/api/v1/fleet/rollouts",
        Some(&fleet),
        Some(serde_json::json!({
            "id": "rollout-sensor-hub-2.5",
            "target": next.0,
            "selector": {"hardware_ids": [next.1]},
        })),
    )?;
    let report = check_in(&devices[0])?;
    let Action::Refused { reason, .. } = &report.action else {
        bail!(
            "device-a: expected the tampered payload to be refused, got {:?}",
            report.action
        );
    };
    detail(&format!("device-a refused it: {reason}"));
    let committed = report.installed.clone();
    ensure!(
        committed.as_deref() == Some(releases[0].0),
        "device-a: the installed version changed to {committed:?}"
    );
    detail(&format!(
        "device-a still runs {}: nothing unverified was installed",
        releases[0].0
    ));
    let v = admin.call(
        "GET",
        &format!("/api/v1/fleet/devices/{}", ids[0]),
        Some(&fleet),
        None,
    )?;
    let mut found = false;
    for r in v["reports"].as_array().into_iter().flatten() {
        let when = r["device_time"]
            .as_i64()
            .and_then(|t| chrono::DateTime::<Utc>::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        detail(&format!(
            "server record: {when} device-a {:<15} {} (counter {})",
            r["outcome"].as_str().unwrap_or("?"),
            r["target"].as_str().unwrap_or("?"),
            r["release_counter"]
        ));
        found |= r["outcome"] == "attack_detected" && r["target"] == next.0;
    }
    ensure!(found, "the server has no record of device-a's refusal");

    rt.block_on(server.shutdown())
        .context("stopping the server")?;
    println!(
        "\ndemo complete in {:.1}s: 2 devices enrolled, updated and verified against both repositories, 1 tampered payload refused and reported",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

impl Device {
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
}

/// Append the `target_publish` entries of `names` (as the server's publish
/// endpoint does; the demo publishes into hosting itself). Returns the log
/// size.
fn log_release(
    rt: &tokio::runtime::Runtime,
    state: &custody_server::state::AppState,
    repo_dir: &Path,
    names: &[String],
) -> Result<u64> {
    let targets: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo_dir.join("metadata").join("targets.json"))
            .context("reading the published targets role")?,
    )?;
    let version = targets["signed"]["version"].as_u64();
    rt.block_on(custody_server::log::log_targets(
        &state.log, REPO, &targets, names, version,
    ))
    .context("appending to the transparency log")?;
    Ok(state.log.size())
}

/// The size of the checkpoint a device stored (second line of the note).
fn stored_log_size(state: &Path) -> Option<u64> {
    std::fs::read_to_string(custody_agent::device::log_checkpoint_path(state))
        .ok()?
        .lines()
        .nth(1)?
        .parse()
        .ok()
}

/// One check-in of a device (the agent library, as `custody agent check`).
fn check_in(d: &Device) -> Result<CheckReport> {
    let local = LocalConfig {
        installer: Some(InstallerConfig::Slot {
            root: d.dir.clone(),
        }),
        health_check: Some(HookCommand {
            argv: vec![
                "sh".into(),
                "-c".into(),
                // the new slot's payload must be in place and non-empty
                r#"test -s "$CUSTODY_PAYLOAD""#.into(),
            ],
            timeout: Duration::from_secs(30),
        }),
        reserve_bytes: None,
        poll_secs: None,
    };
    let mut dev = AgentDevice::open(&d.state(), Some(local))
        .with_context(|| format!("{}: opening the agent", d.name))?;
    let bar = spinner(&format!("{}: checking in, verifying, downloading", d.name));
    let r = dev.check_once();
    bar.finish_and_clear();
    r.with_context(|| format!("{}: check-in", d.name))
}

/// The admin and fleet API over HTTP.
struct Api {
    base: String,
    http: ureq::Agent,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent(),
        }
    }

    fn token(&self, credential: &str) -> Result<String> {
        let v = self.call(
            "POST",
            "/api/v1/token",
            None,
            Some(serde_json::json!({"credential": credential})),
        )?;
        Ok(v["token"]
            .as_str()
            .context("token answer without token")?
            .to_owned())
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = if method == "GET" {
            let mut r = self.http.get(&url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        } else {
            let mut r = self.http.post(&url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.header("content-type", "application/json")
                .send(serde_json::to_vec(&body.unwrap_or_default())?.as_slice())
        }
        .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("{method} {url}: reading the answer"))?;
        ensure!(
            (200..300).contains(&status),
            "{method} {url}: HTTP {status}: {text}"
        );
        serde_json::from_str(&text).with_context(|| format!("{method} {url}: not JSON: {text}"))
    }
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
