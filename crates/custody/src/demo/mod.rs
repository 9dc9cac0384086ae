//! `custody demo`: the whole trust chain, narrated, in a temp directory.
//!
//! Every step uses the real pieces and the interfaces an operator has,
//! nothing is simulated and nothing reaches into the server: offline root
//! and targets keys (custody-keys), `custody serve` on loopback with its
//! director and transparency log (embedded SQLite), a hosted image
//! repository created, filled, signed and published through the admin API
//! (the same calls as `custody server create-repo / upload / sign /
//! publish`), two devices that enrol (custody-agent: device key, pinned
//! roots and log key), a rollout through the fleet API, check-ins with
//! signed manifests, per-device director metadata verified together with
//! the image repository, the transparency-log check, A/B slot installs
//! with a health check, the server's record of who got what, and a
//! compromised mirror between one device and the server whose tampered
//! payload that device refuses and reports.
//!
//! Exit 0 only if every expected outcome happened.

mod mirror;

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
use custody_repo::keyring::KeyRing;
use custody_server::ServerConfig;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::api_client::{Api, Body};
use crate::remote::hosted::{self, OfflineRole, Publish};
use mirror::Mirror;

/// Run the whole custody flow on this machine, narrated.
///
/// Creates offline root and targets keys, starts `custody serve` on
/// loopback with the embedded SQLite store, creates a hosted repository
/// through the admin API and publishes a signed release for two hardware
/// types into it, lets two devices verify, install into an inactive A/B
/// slot, health-check and commit it, shows what each device reported, and
/// then shows a device refusing a payload tampered with on a mirror.
/// Nothing outside the temp directory is touched.
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

const PASSPHRASE: &[u8] = b"demo passphrase, not for production";
const REPO: &str = "fleet";

struct Device {
    name: &'static str,
    hardware_id: &'static str,
    dir: PathBuf,
}

/// The demo's principals: one credential each, separated duties.
struct Principals {
    /// fleet:admin (the bootstrap credential): creates the repository
    admin: Api,
    /// role:sign:root/targets@fleet: holds the offline keys
    signer: Api,
    /// target:upload/stage@fleet: CI
    ci: Api,
    /// repo:publish@fleet
    publisher: Api,
    /// fleet:admin: enrolment tokens, rollouts, device records
    fleet: Api,
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

    step(
        1,
        "offline keys, the server, a hosted repository, a signed release",
    );
    // Encrypted key files with a demo passphrase; real deployments keep
    // root and targets keys offline or on a PKCS#11 token.
    let keys_dir = base.join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let mut ring = KeyRing::new(SecretSource::Prompt);
    let mut offline = Vec::new();
    for role in ["root", "targets"] {
        let path = keys_dir.join(format!("{role}.pem"));
        let signer = keyfile::generate(&path, KeyType::Ed25519, PASSPHRASE)
            .with_context(|| format!("generating the {role} key"))?;
        detail(&format!(
            "{role:<9} key {} (ed25519, encrypted PKCS#8, mode 0600, offline)",
            short(signer.keyid())
        ));
        offline.push((signer.key().clone(), signer.keyid().to_owned()));
        ring.add(Box::new(signer));
    }

    // The server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let data_dir = base.join("server-data");
    // The server's online keys (the repository's snapshot/timestamp and
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
        "custody serve listening on {server_url}; state in {}",
        data_dir.display()
    ));
    let bootstrap = server
        .bootstrap_credential
        .clone()
        .context("the fresh server printed no bootstrap credential")?;
    let who = principals(&server_url, &bootstrap)?;

    // The hosted repository.
    let [(root_key, root_id), (targets_key, targets_id)] =
        <[_; 2]>::try_from(offline).map_err(|_| anyhow::anyhow!("two offline keys expected"))?;
    let created = hosted::create_repo(
        &who.admin,
        OfflineRole {
            keys: std::slice::from_ref(&root_key),
            threshold: 1,
        },
        OfflineRole {
            keys: std::slice::from_ref(&targets_key),
            threshold: 1,
        },
        None,
    )?;
    detail(&format!(
        "repository {REPO:?} created over the admin API; the server holds only its online keys ({})",
        created["online_keys"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(role, id)| format!("{role} {}", short(id.as_str().unwrap_or("?"))))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    hosted::sign_role(&who.signer, "root", std::slice::from_ref(&root_id), &ring)?;
    hosted::sign_role(
        &who.signer,
        "targets",
        std::slice::from_ref(&targets_id),
        &ring,
    )?;
    detail("root and targets signed here with the offline keys and sent back; the private keys never left this machine");

    // The release.
    let payloads = base.join("build");
    std::fs::create_dir_all(&payloads)?;
    let releases = [
        ("sensor-hub/firmware-2.4.0.img", "sensor-hub-v2", 24u64),
        ("gateway/firmware-7.1.0.img", "gateway-x86", 71u64),
    ];
    for (name, hw, counter) in releases {
        let file = payloads.join(name.replace('/', "_"));
        write_payload(&file, name, args.payload_mib)?;
        hosted::upload(
            &who.ci,
            &file,
            name,
            Some(json!({ "hardware_ids": [hw], "release_counter": counter })),
            None,
        )?;
        detail(&format!(
            "CI uploaded and staged {name}: {} MiB, hardware_id {hw}, release counter {counter}",
            args.payload_mib
        ));
    }
    let published = release(&who, &targets_id, &ring)?;
    let log_size = checkpoint_size(&who.admin)?;
    detail(&format!(
        "published generation {}: the server re-verified every signature, version, expiry and hash before it went live",
        published["generation"].as_str().unwrap_or("?")
    ));
    detail(&format!(
        "{} target_publish entries appended to the transparency log (size {log_size}); devices refuse any target not in it",
        releases.len()
    ));

    step(2, "enrol two devices with different hardware ids");
    // device-a reaches the server through a site mirror (a relay: device
    // requests are signed, so it may carry them).
    let mirror = Mirror::start(&server_url)?;
    let tokens = call(
        &who.fleet,
        "POST",
        &["api", "v1", "fleet", "enrolment-tokens"],
        Some(json!({"group": "demo", "count": 2})),
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
    // Given to devices out of band, as an operator would: the image root
    // and the log key, read once from the server.
    let image_root = who.admin.get_bytes(
        &who.admin.url(&["repos", REPO, "metadata", "1.root.json"]),
        1 << 20,
    )?;
    let log_key = String::from_utf8(
        who.admin
            .get_bytes(&who.admin.url(&["log", "v1", "key"]), 4096)?,
    )
    .context("the log key is not UTF-8")?
    .trim()
    .to_owned();
    let mut ids = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let token = tokens["tokens"][i]
            .as_str()
            .context("enrolment token missing")?;
        let via = if i == 0 { &mirror.url } else { &server_url };
        let cfg = enroll(&EnrollOptions {
            server: via.clone(),
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
            image_root: Some(image_root.clone()),
            rollback_keys: None,
            log: custody_agent::device::LogPinOptions {
                log_key: Some(log_key.clone()),
                ..Default::default()
            },
        })
        .with_context(|| format!("{}: enrolment", d.name))?;
        detail(&format!(
            "{} ({}) enrolled as {}{}: device id = key id of its new ed25519 key (0600); director root pinned, image root and transparency-log key given out of band",
            d.name,
            d.hardware_id,
            short(&cfg.device_id),
            if i == 0 { " through the site mirror" } else { "" }
        ));
        ids.push(cfg.device_id);
    }

    step(3, "roll the signed release out");
    for (name, hw, _) in releases {
        let r = call(
            &who.fleet,
            "POST",
            &["api", "v1", "fleet", "rollouts"],
            Some(json!({
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
        "devices check in, verify director + image repository + log, install into the inactive slot, health-check, commit",
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
        let v = call(
            &who.fleet,
            "GET",
            &["api", "v1", "fleet", "devices", id],
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
    let next = ("sensor-hub/firmware-2.5.0.img", "sensor-hub-v2", 25u64);
    let file = payloads.join(next.0.replace('/', "_"));
    write_payload(&file, next.0, args.payload_mib)?;
    hosted::upload(
        &who.ci,
        &file,
        next.0,
        Some(json!({"hardware_ids": [next.1], "release_counter": next.2})),
        None,
    )?;
    release(&who, &targets_id, &ring)?;
    let base_name = next.0.rsplit('/').next().unwrap_or(next.0);
    mirror.arm(&format!(".{base_name}"));
    detail(&format!(
        "release {} uploaded, signed, published and logged; the mirror in front of device-a will flip one byte of it",
        next.0
    ));
    call(
        &who.fleet,
        "POST",
        &["api", "v1", "fleet", "rollouts"],
        Some(json!({
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
    let tampered = mirror.tampered();
    ensure!(
        !tampered.is_empty(),
        "the mirror never served the armed payload"
    );
    detail(&format!("the mirror served {}", tampered.join(", ")));
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
    let v = call(
        &who.fleet,
        "GET",
        &["api", "v1", "fleet", "devices", &ids[0]],
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

/// One credential per duty, minted by the bootstrap credential.
fn principals(server: &str, bootstrap: &str) -> Result<Principals> {
    let admin = Api::connect(server, REPO, None, Some(bootstrap))?;
    let mint = |name: &str, scopes: &[String]| -> Result<Api> {
        let v = call(
            &admin,
            "POST",
            &["api", "v1", "credentials"],
            Some(json!({ "name": name, "scopes": scopes })),
        )?;
        let secret = v["secret"]
            .as_str()
            .context("credential answer without secret")?;
        admin.with_credential(secret)
    };
    let at =
        |scopes: &[&str]| -> Vec<String> { scopes.iter().map(|s| format!("{s}@{REPO}")).collect() };
    let who = Principals {
        signer: mint(
            "demo release signer",
            &at(&["role:sign:root", "role:sign:targets"]),
        )?,
        ci: mint("demo CI", &at(&["target:upload", "target:stage"]))?,
        publisher: mint("demo publisher", &at(&["repo:publish"]))?,
        fleet: mint("demo fleet operator", &["fleet:admin".to_owned()])?,
        admin,
    };
    detail("credentials with separated duties: release signer (offline keys), CI (upload, stage), publisher, fleet operator");
    Ok(who)
}

/// Publish what CI staged: the new targets version waits for the offline
/// targets signature, which completes it and makes it live.
fn release(who: &Principals, targets_id: &str, ring: &KeyRing) -> Result<Value> {
    match hosted::publish(&who.publisher)? {
        Publish::Live(v) => Ok(v),
        Publish::NeedsSignatures(_) => {
            let v = hosted::sign_role(&who.signer, "targets", &[targets_id.to_owned()], ring)?;
            v.get("published")
                .filter(|p| !p.is_null())
                .cloned()
                .context("the targets signature did not complete the publish")
        }
    }
}

/// The size of the log's latest checkpoint (second line of the note).
fn checkpoint_size(api: &Api) -> Result<u64> {
    let note = api.get_bytes(&api.url(&["log", "v1", "checkpoint"]), 1 << 16)?;
    String::from_utf8_lossy(&note)
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .context("the log checkpoint has no size line")
}

/// One admin or fleet API call with a JSON body.
fn call(api: &Api, method: &str, segs: &[&str], body: Option<Value>) -> Result<Value> {
    let (ct, body) = match body {
        Some(b) => ("application/json", Body::json(&b)?),
        None => ("", Body::Empty),
    };
    api.send(method, &api.url(segs), ct, body)
}

impl Device {
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
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
