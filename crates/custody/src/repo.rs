//! `custody repo …`: author and publish a TUF repository.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use custody_keys::TufPublicKey;
use custody_repo::keyring::{KeyLocation, KeyRing, KeySpec};
use custody_repo::policy::{parse_duration, ExpiryPolicy};
use custody_repo::repository::{sign_metadata_bytes, InitOptions, ProvenanceInput, RoleInit};
use custody_repo::Repository;

use crate::key::PassphraseArgs;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
A repository directory holds the staged metadata (metadata/), target files
(targets/), its configuration (custody-repo.json: expiry policy and where each
key lives, never a secret) and the custody log (custody-log.jsonl).

Keys are named by KEY: an encrypted key file from `custody key generate`, a
public key JSON (`custody key show --json` output; the key is then offline and
signs elsewhere), or a pkcs11: URI.

Typical session:
  custody repo init repo --root-key root1.pem --root-key root2.pem --root-threshold 2 \\
      --targets-key targets.pem --snapshot-key online.pem --timestamp-key ts.pem
  custody repo add-target repo dist/app-1.2.tar.gz --name app/app-1.2.tar.gz
  custody repo status repo
  custody repo publish repo /srv/tuf
  custody repo refresh repo            # from cron: new snapshot + timestamp

Offline threshold signing:
  custody repo export repo --role root --out root.unsigned.json
  custody repo sign-file root.unsigned.json --key root3.pem   # on the offline machine
  custody repo merge repo --role root root.unsigned.json")]
pub struct RepoArgs {
    #[command(subcommand)]
    cmd: Box<RepoCmd>,
    #[command(flatten)]
    pass: PassphraseArgs,
    /// Reference time instead of the clock (RFC 3339), for audits and tests.
    #[arg(long, value_name = "TIME", global = true, hide = true)]
    now: Option<String>,
}

#[derive(clap::Args, Debug)]
struct RoleKeyArgs {
    /// Root key (repeat for several).
    #[arg(long = "root-key", value_name = "KEY")]
    root: Vec<String>,
    /// Targets key (repeat for several).
    #[arg(long = "targets-key", value_name = "KEY")]
    targets: Vec<String>,
    /// Snapshot key (repeat for several); an online key.
    #[arg(long = "snapshot-key", value_name = "KEY")]
    snapshot: Vec<String>,
    /// Timestamp key (repeat for several); an online key.
    #[arg(long = "timestamp-key", value_name = "KEY")]
    timestamp: Vec<String>,
    /// Root threshold.
    #[arg(long, default_value_t = 1)]
    root_threshold: u64,
    /// Targets threshold.
    #[arg(long, default_value_t = 1)]
    targets_threshold: u64,
    /// Snapshot threshold.
    #[arg(long, default_value_t = 1)]
    snapshot_threshold: u64,
    /// Timestamp threshold.
    #[arg(long, default_value_t = 1)]
    timestamp_threshold: u64,
}

#[derive(clap::Args, Debug)]
struct ExpiryArgs {
    /// Root validity (e.g. 1y, 365d).
    #[arg(long, value_name = "DURATION", default_value = "365d")]
    root_expires: String,
    /// Targets (and delegated roles) validity.
    #[arg(long, value_name = "DURATION", default_value = "90d")]
    targets_expires: String,
    /// Snapshot validity.
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    snapshot_expires: String,
    /// Timestamp validity.
    #[arg(long, value_name = "DURATION", default_value = "1d")]
    timestamp_expires: String,
}

#[derive(clap::Subcommand, Debug)]
enum PolicyCmd {
    /// Check and store a policy (TOML or JSON): from then on every add-target must pass it.
    Set { dir: PathBuf, file: PathBuf },
    /// Print the stored policy as JSON.
    Show { dir: PathBuf },
    /// Remove the stored policy.
    Clear { dir: PathBuf },
}

#[derive(clap::Subcommand, Debug)]
enum RepoCmd {
    /// Create a repository: keys and threshold per role, expiry policy, consistent snapshots.
    ///
    /// A key may not serve more than one of root, targets and timestamp
    /// (unless --allow-shared-keys): stealing it would give both roles'
    /// powers, and root could no longer revoke it.
    #[command(after_long_help = "\
Example:
  custody repo init myrepo --root-key r1.pem --root-key r2.pem --root-key r3.pub.json \\
      --root-threshold 2 --targets-key t.pem --snapshot-key s.pem --timestamp-key ts.pem \\
      --timestamp-expires 6h --passphrase-env KEYPASS")]
    Init {
        /// New repository directory (must not exist or be empty).
        dir: PathBuf,
        #[command(flatten)]
        keys: RoleKeyArgs,
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Publish without consistent snapshots (not recommended).
        #[arg(long)]
        no_consistent_snapshot: bool,
        /// Allow one key in more than one of root, targets, timestamp (tests only).
        #[arg(long)]
        allow_shared_keys: bool,
    },
    /// Add a file or a directory (recursively) as targets; re-signs targets, snapshot, timestamp.
    ///
    /// The target goes into the role that the delegations assign its path
    /// to. Paths are relative, '/'-separated, with no '.', '..' or empty
    /// segment.
    #[command(after_long_help = "\
Examples:
  custody repo add-target repo build/fw.bin --name boards/x1/fw-2.0.bin --custom '{\"hwid\":\"x1\"}'
  custody repo add-target repo dist/ --name releases/2.0
  custody repo add-target repo build/fw.bin --name firmware/fw.bin --provenance fw.intoto.jsonl

Provenance: with a policy stored in the repository (custody repo
provenance-policy set) or given with --provenance-policy, every added file
must pass it (custody-provenance: DSSE envelope signed by the rule's keys,
in-toto Statement v1 naming the file's sha256, SLSA Provenance v1 from an
accepted builder, build type and source). The accepted envelope is kept as
provenance/<sha256>.dsse.json and its sha256 is recorded in the target's
custom.custody.provenance.sha256. A refusal names the rule and changes
nothing.")]
    AddTarget {
        dir: PathBuf,
        /// File or directory to add.
        path: PathBuf,
        /// Target name (for a directory: the prefix). Default: the file name / relative paths.
        #[arg(long)]
        name: Option<String>,
        /// Opaque JSON stored as the target's `custom` field.
        #[arg(long, value_name = "JSON")]
        custom: Option<String>,
        /// Extra signing keys (beyond those recorded in the repository).
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
        /// DSSE envelope (in-toto Statement v1 + SLSA Provenance v1) for the file(s).
        #[arg(long, value_name = "FILE")]
        provenance: Option<PathBuf>,
        /// Provenance policy (TOML or JSON) for this command, in addition to the stored one.
        #[arg(long, value_name = "FILE")]
        provenance_policy: Option<PathBuf>,
    },
    /// Store, show or remove the repository's provenance policy.
    #[command(subcommand)]
    ProvenancePolicy(PolicyCmd),
    /// Remove a target; re-signs its role, snapshot, timestamp.
    RemoveTarget {
        dir: PathBuf,
        /// Target name.
        name: String,
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
    },
    /// New snapshot and timestamp (run from cron well inside the timestamp expiry).
    #[command(after_long_help = "\
Examples:
  custody repo refresh repo --passphrase-env KEYPASS                   # daily: snapshot + timestamp
  custody repo refresh repo --timestamp-only --passphrase-env KEYPASS  # hourly: timestamp only")]
    Refresh {
        dir: PathBuf,
        /// Renew only the timestamp (the snapshot stays as it is).
        #[arg(long)]
        timestamp_only: bool,
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Verify everything as a client would, then publish atomically to OUT (a symlink).
    ///
    /// Refuses metadata under threshold, expired metadata, or target files
    /// that do not match their hashes. OUT is a symlink switched atomically
    /// to a complete new tree; the previous tree is kept for readers still in it.
    Publish { dir: PathBuf, out: PathBuf },
    /// Versions, expiry, signatures and missing keys per role; whether a publish would pass.
    Status {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Add signatures to a role with the given keys (threshold signing).
    Sign {
        dir: PathBuf,
        #[arg(long)]
        role: String,
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
    },
    /// Write a role's staged metadata to a file for an offline signer.
    Export {
        dir: PathBuf,
        #[arg(long)]
        role: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign an exported metadata file in place (offline; no repository needed).
    SignFile {
        file: PathBuf,
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
    },
    /// Merge the signatures of a file signed offline into the staged role.
    Merge {
        dir: PathBuf,
        #[arg(long)]
        role: String,
        file: PathBuf,
    },
    /// Delegate paths from a targets role to a new role.
    Delegate {
        dir: PathBuf,
        /// Delegating role.
        #[arg(long, default_value = "targets")]
        from: String,
        /// New role name.
        #[arg(long)]
        name: String,
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// Path patterns (e.g. 'boards/x1/*').
        #[arg(long = "path", value_name = "PATTERN")]
        paths: Vec<String>,
        /// Hex prefixes of sha256(path), instead of --path.
        #[arg(long = "hash-prefix", value_name = "HEX")]
        hash_prefixes: Vec<String>,
        #[arg(long)]
        terminating: bool,
        /// Validity of the new role's metadata (default: the targets policy).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// TAP 15 succinct hash bins: delegate everything to 2^BITS bins.
    HashBins {
        dir: PathBuf,
        #[arg(long, default_value = "targets")]
        from: String,
        #[arg(long, default_value = "bin")]
        prefix: String,
        #[arg(long)]
        bits: u32,
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
        #[arg(long, default_value_t = 1)]
        threshold: u64,
    },
    /// New root version changing a top-level role's keys or threshold.
    ///
    /// The new root must be signed by a threshold of the previous root keys
    /// and of the new ones; missing signatures can be added with sign/merge.
    RotateRoot {
        dir: PathBuf,
        /// Role whose keys change: root, targets, snapshot or timestamp.
        #[arg(long)]
        role: String,
        #[arg(long = "add-key", value_name = "KEY")]
        add: Vec<String>,
        #[arg(long = "remove-key", value_name = "KEYID")]
        remove: Vec<String>,
        #[arg(long)]
        threshold: Option<u64>,
        #[arg(long)]
        allow_shared_keys: bool,
        /// Signing keys (old and new root keys).
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Check the custody log's hash chain (each entry pins the previous line).
    VerifyLog { dir: PathBuf },
    /// Remove a key id from every top-level role (new root version) and every delegation.
    RevokeKey {
        dir: PathBuf,
        keyid: String,
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// Read at most `limit` bytes of `path`; larger files are refused
/// ([`custody_fs::read_to_end_bounded`]; also used by `remote`).
pub(crate) fn read_limited(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    match custody_fs::read_to_end_bounded(f, limit as u64, path) {
        Ok(buf) => Ok(buf),
        Err(custody_fs::FsError::TooLarge { .. }) => {
            bail!("{}: larger than {limit} bytes", path.display())
        }
        Err(custody_fs::FsError::Io { error, .. }) => {
            Err(error).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) => Err(e.into()),
    }
}

fn now_from(arg: &Option<String>) -> anyhow::Result<DateTime<Utc>> {
    match arg {
        Some(s) => Ok(DateTime::parse_from_rfc3339(s)
            .with_context(|| format!("--now {s:?} is not RFC 3339"))?
            .with_timezone(&Utc)),
        None => Ok(Utc::now()),
    }
}

pub(crate) fn load_keys(
    ring: &mut KeyRing,
    specs: &[String],
) -> anyhow::Result<Vec<(TufPublicKey, String, KeyLocation)>> {
    let mut out = Vec::new();
    for s in specs {
        let spec = KeySpec::parse(s).with_context(|| format!("key {s}"))?;
        out.push(ring.load_spec(&spec).with_context(|| format!("key {s}"))?);
    }
    Ok(out)
}

fn open(dir: &Path) -> anyhow::Result<Repository> {
    Repository::open(dir).with_context(|| format!("opening repository {}", dir.display()))
}

fn report_unsigned(repo: &Repository, now: DateTime<Utc>) -> anyhow::Result<()> {
    let status = repo.status(now)?;
    for r in &status.roles {
        if !r.threshold_met {
            eprintln!(
                "note: {} v{} has {}/{} signatures; missing keys: {}",
                r.role,
                r.version,
                r.signed_by.len(),
                r.threshold,
                r.missing.join(", ")
            );
        }
    }
    Ok(())
}

pub fn run(args: RepoArgs) -> anyhow::Result<ExitCode> {
    let now = now_from(&args.now)?;
    let mut ring = KeyRing::new(args.pass.source());
    match *args.cmd {
        RepoCmd::Init {
            dir,
            keys,
            expiry,
            no_consistent_snapshot,
            allow_shared_keys,
        } => {
            let mut policy = ExpiryPolicy::default();
            for (role, d) in [
                ("root", &expiry.root_expires),
                ("targets", &expiry.targets_expires),
                ("snapshot", &expiry.snapshot_expires),
                ("timestamp", &expiry.timestamp_expires),
            ] {
                policy.set(
                    role,
                    parse_duration(d).with_context(|| format!("--{role}-expires"))?,
                );
            }
            let mut roles = BTreeMap::new();
            for (role, specs, threshold) in [
                ("root", &keys.root, keys.root_threshold),
                ("targets", &keys.targets, keys.targets_threshold),
                ("snapshot", &keys.snapshot, keys.snapshot_threshold),
                ("timestamp", &keys.timestamp, keys.timestamp_threshold),
            ] {
                if specs.is_empty() {
                    bail!("role {role}: no keys given; pass --{role}-key KEY (at least one)");
                }
                let loaded = load_keys(&mut ring, specs)?;
                roles.insert(
                    role.to_owned(),
                    RoleInit {
                        keys: loaded,
                        threshold,
                    },
                );
            }
            let opts = InitOptions {
                roles,
                expiry: policy,
                consistent_snapshot: !no_consistent_snapshot,
                allow_shared_keys,
            };
            let mut repo = Repository::init(&dir, opts, &mut ring, now)?;
            repo.save()?;
            println!("initialised TUF repository in {}", dir.display());
            report_unsigned(&repo, now)?;
        }
        RepoCmd::AddTarget {
            dir,
            path,
            name,
            custom,
            keys,
            provenance,
            provenance_policy,
        } => {
            let custom = custom
                .map(|c| serde_json::from_str::<serde_json::Value>(&c))
                .transpose()
                .context("--custom is not valid JSON")?;
            let envelope = provenance
                .as_ref()
                .map(|p| {
                    read_limited(p, custody_repo::custody_provenance::MAX_ENVELOPE_BYTES)
                        .with_context(|| format!("--provenance {}", p.display()))
                })
                .transpose()?;
            let policy_bytes = provenance_policy
                .as_ref()
                .map(|p| {
                    read_limited(p, 1 << 20)
                        .with_context(|| format!("--provenance-policy {}", p.display()))
                })
                .transpose()?;
            let policy_name = provenance_policy
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let input = ProvenanceInput::from_files(
                envelope,
                policy_bytes.as_deref().map(|b| (policy_name.as_str(), b)),
            )?;
            let mut repo = open(&dir)?;
            load_keys(&mut ring, &keys)?;
            let added = repo.add_targets_with_provenance(
                &path,
                name.as_deref(),
                custom,
                &input,
                &mut ring,
                now,
            )?;
            repo.save()?;
            for (t, role) in added {
                println!("added {t} (role {role})");
            }
            report_unsigned(&repo, now)?;
        }
        RepoCmd::ProvenancePolicy(cmd) => match cmd {
            PolicyCmd::Set { dir, file } => {
                let bytes = read_limited(&file, 1 << 20)
                    .with_context(|| format!("provenance policy {}", file.display()))?;
                let mut repo = open(&dir)?;
                let policy =
                    repo.set_provenance_policy(&file.display().to_string(), &bytes, now)?;
                repo.save()?;
                let rules: Vec<&str> = policy
                    .spec()
                    .rules
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect();
                println!(
                    "provenance policy stored in {} (rules {rules:?}); every add-target must now pass it",
                    dir.display()
                );
            }
            PolicyCmd::Show { dir } => {
                let repo = open(&dir)?;
                match repo.provenance_policy()? {
                    Some(p) => println!("{}", serde_json::to_string_pretty(p.spec())?),
                    None => println!("no provenance policy is stored in {}", dir.display()),
                }
            }
            PolicyCmd::Clear { dir } => {
                let mut repo = open(&dir)?;
                repo.clear_provenance_policy(now);
                repo.save()?;
                println!("provenance policy removed from {}", dir.display());
            }
        },
        RepoCmd::RemoveTarget { dir, name, keys } => {
            let mut repo = open(&dir)?;
            load_keys(&mut ring, &keys)?;
            let role = repo.remove_target(&name, &mut ring, now)?;
            repo.save()?;
            println!("removed {name} (role {role})");
            report_unsigned(&repo, now)?;
        }
        RepoCmd::Refresh {
            dir,
            timestamp_only,
            keys,
        } => {
            let mut repo = open(&dir)?;
            load_keys(&mut ring, &keys)?;
            if timestamp_only {
                repo.refresh_timestamp(&mut ring, now)?;
            } else {
                repo.refresh(&mut ring, now)?;
            }
            repo.save()?;
            println!(
                "snapshot v{}, timestamp v{}",
                repo.snapshot().signed.version,
                repo.timestamp().signed.version
            );
            report_unsigned(&repo, now)?;
        }
        RepoCmd::Publish { dir, out } => {
            let mut repo = open(&dir)?;
            let gen = repo
                .publish(&out, now)
                .with_context(|| format!("publishing {} to {}", dir.display(), out.display()))?;
            println!("published to {} (-> {})", out.display(), gen.display());
        }
        RepoCmd::Status { dir, json } => {
            let repo = open(&dir)?;
            let st = repo.status(now)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!(
                    "{} targets, consistent snapshots {}",
                    st.targets,
                    if st.consistent_snapshot { "on" } else { "off" }
                );
                for r in &st.roles {
                    println!(
                        "{:<12} v{:<4} expires {}{}  signatures {}/{}{}",
                        r.role,
                        r.version,
                        r.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        if r.expired { " (EXPIRED)" } else { "" },
                        r.signed_by.len(),
                        r.threshold,
                        if r.threshold_met {
                            String::new()
                        } else {
                            format!("  missing: {}", r.missing.join(", "))
                        }
                    );
                }
                match &st.publish_blocker {
                    None => println!("publishable: yes"),
                    Some(why) => println!("publishable: no: {why}"),
                }
            }
        }
        RepoCmd::Sign { dir, role, keys } => {
            let mut repo = open(&dir)?;
            let loaded = load_keys(&mut ring, &keys)?;
            let ids: Vec<String> = loaded.iter().map(|(_, id, _)| id.clone()).collect();
            repo.sign_with(&role, &ids, &mut ring, now)?;
            repo.save()?;
            let st = repo.role_status(&role, now)?;
            println!(
                "{role} v{}: {}/{} signatures{}",
                st.version,
                st.signed_by.len(),
                st.threshold,
                if st.threshold_met {
                    String::new()
                } else {
                    format!("; missing: {}", st.missing.join(", "))
                }
            );
        }
        RepoCmd::Export { dir, role, out } => {
            let repo = open(&dir)?;
            let bytes = repo.export_role(&role)?;
            if out.exists() {
                bail!("{}: already exists; not overwriting", out.display());
            }
            custody_repo::fsutil::write_replace(&out, &bytes)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("exported {role} to {}", out.display());
        }
        RepoCmd::SignFile { file, keys } => {
            sign_file(&file, &keys, &mut ring)?;
        }
        RepoCmd::Merge { dir, role, file } => {
            let mut repo = open(&dir)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let merged = repo.merge_signatures(&role, &bytes, &file, &mut ring, now)?;
            repo.save()?;
            println!(
                "merged signatures from {}: {}",
                file.display(),
                merged.join(", ")
            );
            report_unsigned(&repo, now)?;
        }
        RepoCmd::Delegate {
            dir,
            from,
            name,
            keys,
            threshold,
            paths,
            hash_prefixes,
            terminating,
            expires,
        } => {
            let mut repo = open(&dir)?;
            if let Some(e) = expires {
                let d = parse_duration(&e).context("--expires")?;
                repo.config.expiry.set(&name, d);
            }
            let loaded = load_keys(&mut ring, &keys)?;
            let (p, h) = match (paths.is_empty(), hash_prefixes.is_empty()) {
                (false, true) => (Some(paths), None),
                (true, false) => (None, Some(hash_prefixes)),
                _ => bail!("give --path patterns or --hash-prefix values (exactly one kind)"),
            };
            repo.delegate(
                &from,
                &name,
                &loaded,
                threshold,
                p,
                h,
                terminating,
                &mut ring,
                now,
            )?;
            repo.save()?;
            println!("delegated from {from} to {name}");
            report_unsigned(&repo, now)?;
        }
        RepoCmd::HashBins {
            dir,
            from,
            prefix,
            bits,
            keys,
            threshold,
        } => {
            let mut repo = open(&dir)?;
            let loaded = load_keys(&mut ring, &keys)?;
            let n = repo.hash_bins(&from, &prefix, bits, &loaded, threshold, &mut ring, now)?;
            repo.save()?;
            println!("{from} now delegates to {n} hash bins {prefix}-*");
            report_unsigned(&repo, now)?;
        }
        RepoCmd::RotateRoot {
            dir,
            role,
            add,
            remove,
            threshold,
            allow_shared_keys,
            keys,
        } => {
            let mut repo = open(&dir)?;
            load_keys(&mut ring, &keys)?;
            let added = load_keys(&mut ring, &add)?;
            repo.change_root_role(
                &role,
                &added,
                &remove,
                threshold,
                allow_shared_keys,
                &mut ring,
                now,
            )?;
            repo.save()?;
            println!("root v{}", repo.root().signed.version);
            report_unsigned(&repo, now)?;
        }
        RepoCmd::VerifyLog { dir } => {
            let n = custody_repo::repository::verify_log(&dir)?;
            println!("custody log intact: {n} entries");
        }
        RepoCmd::RevokeKey { dir, keyid, keys } => {
            let mut repo = open(&dir)?;
            load_keys(&mut ring, &keys)?;
            let roles: Vec<String> = repo
                .root()
                .signed
                .roles
                .iter()
                .filter(|(_, r)| r.keyids.contains(&keyid))
                .map(|(n, _)| n.clone())
                .collect();
            for role in &roles {
                repo.change_root_role(
                    role,
                    &[],
                    std::slice::from_ref(&keyid),
                    None,
                    true,
                    &mut ring,
                    now,
                )?;
            }
            let delegators = repo.revoke_delegated_key(&keyid, &mut ring, now)?;
            if roles.is_empty() && delegators.is_empty() {
                bail!("key {keyid} is not a key of any top-level role or delegation");
            }
            repo.save()?;
            if !roles.is_empty() {
                println!(
                    "revoked {keyid} from {}; root v{}",
                    roles.join(", "),
                    repo.root().signed.version
                );
            }
            if !delegators.is_empty() {
                println!(
                    "revoked {keyid} from the delegations of {}",
                    delegators.join(", ")
                );
            }
            report_unsigned(&repo, now)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sign an exported metadata file in place with the given keys.
fn sign_file(file: &Path, specs: &[String], ring: &mut KeyRing) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let loaded = load_keys(ring, specs)?;
    let ids: Vec<String> = loaded.iter().map(|(_, id, _)| id.clone()).collect();
    let (ty, out) = sign_metadata_bytes(&bytes, file, &ids, ring)?;
    custody_repo::fsutil::write_replace(file, &out)
        .with_context(|| format!("writing {}", file.display()))?;
    println!("signed {} ({ty}) with {}", file.display(), ids.join(", "));
    Ok(())
}
