//! `custody server`: talk to a running `custody serve` through its admin
//! API (`/api/v1`, bearer tokens): upload and stage a target with its build
//! provenance, and manage a hosted repository's provenance policy.
//!
//! The server does every check (custody-provenance against the stored
//! policy); this command moves bytes, names what it sends, and prints the
//! server's refusal, which names the rule.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::key::PassphraseArgs;
use crate::repo::read_limited;

pub(crate) mod hosted;

use crate::api_client::{Api, Body, Endpoint};
use hosted::{OfflineRole, Publish};

/// Largest provenance envelope the server accepts (custody-provenance's bound).
const MAX_ENVELOPE_BYTES: usize = custody_repo::custody_provenance::MAX_ENVELOPE_BYTES;
/// Largest policy file sent (the server's bound).
const MAX_POLICY_BYTES: usize = 1 << 20;

#[derive(Args, Debug)]
#[command(after_long_help = "\
The server is `custody serve`. Authenticate with an API credential (exchanged
for a short-lived token) or a token; prefer the environment variables
CUSTODY_CREDENTIAL / CUSTODY_TOKEN, since command lines are visible to other
users of the machine.

Examples:
  export CUSTODY_SERVER=https://updates.example.com
  CUSTODY_CREDENTIAL=$SECURITY_CRED custody server provenance-policy set --repo app policy.toml
  CUSTODY_CREDENTIAL=$CI_CRED custody server upload --repo app build/fw.bin \\
      --name firmware/fw-2.0.bin --provenance fw.intoto.jsonl
  CUSTODY_TOKEN=$TOKEN custody server provenance-policy show --repo app")]
pub struct ServerArgs {
    /// Where the passphrase of key files comes from (create-repo, sign).
    #[command(flatten)]
    pass: PassphraseArgs,
    /// Print the server's JSON answer (create-repo, sign, publish).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: ServerCmd,
}

/// Where, as whom, and which hosted repository.
#[derive(Args, Debug)]
struct Conn {
    #[command(flatten)]
    endpoint: Endpoint,
    /// Hosted repository name.
    #[arg(long, value_name = "REPO")]
    repo: String,
}

#[derive(Subcommand, Debug)]
enum ServerCmd {
    /// Upload a file and stage it as a target, with its build provenance.
    ///
    /// Uploads the file as a blob (content-addressed: its sha256), the DSSE
    /// envelope given with --provenance (at most 1 MiB), then stages the
    /// target. The server checks the envelope against the repository's
    /// provenance policy: signed by the rule's keys (k of n), an in-toto
    /// Statement v1 naming this file's sha256, SLSA Provenance v1 from an
    /// accepted builder, build type, source repository and ref. A refusal
    /// names the rule, the path pattern and why, and stages nothing. When
    /// accepted, the envelope's sha256 goes into the target's
    /// custom.custody.provenance.sha256; it is signed into the targets
    /// metadata and the transparency log at the next publish.
    ///
    /// Needs scopes target:upload@REPO and target:stage@REPO.
    #[command(after_long_help = "\
Examples:
  custody server upload --repo app build/fw.bin --name firmware/fw-2.0.bin --provenance fw.intoto.jsonl
  custody server upload --repo app notes.txt --name docs/notes.txt --custom '{\"lang\":\"en\"}'")]
    Upload {
        #[command(flatten)]
        conn: Conn,
        /// The file to upload.
        file: PathBuf,
        /// Target name (relative, '/'-separated). Default: the file name.
        #[arg(long)]
        name: Option<String>,
        /// JSON object stored as the target's `custom` field
        /// (custody.provenance is the server's to set).
        #[arg(long, value_name = "JSON")]
        custom: Option<String>,
        /// DSSE envelope (in-toto Statement v1 + SLSA Provenance v1) for the
        /// file; required when a policy rule covers the target name.
        #[arg(long, value_name = "FILE")]
        provenance: Option<PathBuf>,
    },
    /// Create a hosted repository whose root and targets keys stay offline.
    ///
    /// Sends the public halves of the root and targets keys with their
    /// thresholds; the server makes its online snapshot and timestamp keys
    /// (and, with --hash-bins, the online key of the hash bins) and prints
    /// their key ids. Nothing is served until root and targets are signed:
    /// `custody server sign --role root`, then `--role targets`. Needs
    /// scope fleet:admin.
    #[command(after_long_help = "\
Keys are public key JSON files (`custody key show --json`), encrypted key
files (only the public half is sent; the passphrase is asked for) or PKCS#11
URIs.

Examples:
  custody key generate --type ed25519 --out root.pem && custody key generate --type ed25519 --out targets.pem
  custody server create-repo --repo app --root-key root.pem --targets-key targets.pem
  custody server create-repo --repo big --root-key r1.json --root-key r2.json \\
      --root-threshold 2 --targets-key t.json --hash-bins 256")]
    CreateRepo {
        #[command(flatten)]
        conn: Conn,
        /// A root key (repeat for several).
        #[arg(long = "root-key", value_name = "KEY", required = true)]
        root_keys: Vec<String>,
        /// Root signatures needed.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        root_threshold: u32,
        /// A targets key (repeat for several).
        #[arg(long = "targets-key", value_name = "KEY", required = true)]
        targets_keys: Vec<String>,
        /// Targets signatures needed.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        targets_threshold: u32,
        /// Delegate all targets to this many hash bins (a power of two,
        /// 2..=65536) signed online: after one offline signature of the
        /// delegation, publishes need no offline key.
        #[arg(long, value_name = "N")]
        hash_bins: Option<u32>,
    },
    /// Sign the server's draft of an offline role with local keys.
    ///
    /// Fetches the draft (GET …/roles/ROLE), signs it here (the private keys
    /// never leave this machine) and sends the signed copy back. The server
    /// merges only signatures that verify with keys of the role; when the
    /// threshold is met the draft goes live at once. Needs scope
    /// role:sign:ROLE@REPO.
    #[command(after_long_help = "\
Examples:
  custody server sign --repo app --role root --key root.pem --passphrase-env ROOT_PASS
  custody server sign --repo app --role targets --key 'pkcs11:token=ci;object=targets'")]
    Sign {
        #[command(flatten)]
        conn: Conn,
        /// The role to sign (root, targets, or a delegated role).
        #[arg(long)]
        role: String,
        /// A signing key: encrypted key file or PKCS#11 URI (repeat for several).
        #[arg(long = "key", value_name = "KEY", required = true)]
        keys: Vec<String>,
    },
    /// Publish what is staged: a new generation goes live, and every new
    /// target is appended to the transparency log.
    ///
    /// When the change needs offline signatures (a new targets version
    /// without hash bins), nothing goes live: the draft waits and the
    /// command names the keys that must sign it (`custody server sign`);
    /// it exits 3. Needs scope repo:publish@REPO.
    Publish {
        #[command(flatten)]
        conn: Conn,
    },
    /// Set, show or remove a hosted repository's provenance policy.
    #[command(subcommand)]
    ProvenancePolicy(PolicyCmd),
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Store a policy (TOML, or JSON for a .json file): from now on every
    /// staged target must pass it, and publish checks it again.
    ///
    /// The format is the one of `custody repo provenance-policy set`
    /// (rules by path pattern or delegated role: builders, build types,
    /// sources and refs, signers k of n; allow_unattested for paths that
    /// may come without provenance). Needs scope provenance:admin@REPO,
    /// which must not be held together with target:upload or target:stage
    /// (separation of duties). Audited, and logged.
    #[command(after_long_help = "\
Example policy.toml:
  allow_unattested = [\"docs/*\"]
  [[rule]]
  name = \"firmware\"
  paths = [\"firmware/*\"]
  builders = [\"https://github.com/actions/runner/github-hosted\"]
  build_types = [\"https://actions.github.io/buildtypes/workflow/v1\"]
  [[rule.sources]]
  repository = \"https://github.com/org/firmware\"
  refs = [\"refs/heads/main\", \"refs/tags/v*\"]
  [rule.signers]
  threshold = 1
  [rule.signers.keys.ci-2026]
  keytype = \"ed25519\"
  scheme = \"ed25519\"
  keyval = { public = \"<64 hex chars>\" }")]
    Set {
        #[command(flatten)]
        conn: Conn,
        /// Policy file (TOML, or JSON when it ends in .json).
        file: PathBuf,
    },
    /// Print the stored policy as JSON (any scope of the repository).
    Show {
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove the policy: staging no longer needs provenance. Needs
    /// provenance:admin@REPO.
    Clear {
        #[command(flatten)]
        conn: Conn,
    },
}

pub fn run(args: ServerArgs) -> Result<ExitCode> {
    let (pass, json) = (args.pass, args.json);
    match args.cmd {
        ServerCmd::Upload {
            conn,
            file,
            name,
            custom,
            provenance,
        } => upload(&conn, &file, name, custom, provenance.as_deref()),
        ServerCmd::CreateRepo {
            conn,
            root_keys,
            root_threshold,
            targets_keys,
            targets_threshold,
            hash_bins,
        } => {
            let mut ring = custody_repo::keyring::KeyRing::new(pass.source());
            let public = |ring: &mut _, specs: &[String]| -> Result<Vec<_>> {
                Ok(crate::repo::load_keys(ring, specs)?
                    .into_iter()
                    .map(|(k, _, _)| k)
                    .collect())
            };
            let root = public(&mut ring, &root_keys)?;
            let targets = public(&mut ring, &targets_keys)?;
            let api = conn.connect()?;
            let v = hosted::create_repo(
                &api,
                OfflineRole {
                    keys: &root,
                    threshold: root_threshold,
                },
                OfflineRole {
                    keys: &targets,
                    threshold: targets_threshold,
                },
                hash_bins,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("created repository {:?}", conn.repo);
                for (role, id) in v["online_keys"].as_object().into_iter().flatten() {
                    println!("  online {role:<9} key {}", id.as_str().unwrap_or("?"));
                }
                for role in v["unsigned_roles"].as_array().into_iter().flatten() {
                    let role = role.as_str().unwrap_or("?");
                    println!(
                        "  next: custody server sign --repo {} --role {role} --key <{role} key>",
                        conn.repo
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Sign { conn, role, keys } => {
            let mut ring = custody_repo::keyring::KeyRing::new(pass.source());
            let ids: Vec<String> = crate::repo::load_keys(&mut ring, &keys)?
                .into_iter()
                .map(|(_, id, _)| id)
                .collect();
            let api = conn.connect()?;
            let v = hosted::sign_role(&api, &role, &ids, &ring)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let merged: Vec<&str> = v["merged"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!("{role} of {:?}: merged {}", conn.repo, merged.join(", "));
                match v.get("published").filter(|p| !p.is_null()) {
                    Some(p) => println!("published: version {}", p["version"]),
                    None => println!("not live yet: {}", v["role"]),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::Publish { conn } => {
            let api = conn.connect()?;
            match hosted::publish(&api)? {
                Publish::Live(v) if json => println!("{}", serde_json::to_string_pretty(&v)?),
                Publish::Live(v) => println!(
                    "published {:?}: targets v{}, snapshot v{}, timestamp v{}, generation {}; added {}, removed {}",
                    conn.repo,
                    v["targets_version"],
                    v["snapshot_version"],
                    v["timestamp_version"],
                    v["generation"].as_str().unwrap_or("-"),
                    v["added"],
                    v["removed"]
                ),
                Publish::NeedsSignatures(msg) => {
                    eprintln!(
                        "not published: {msg}\nsign the draft: custody server sign --repo {} --role targets --key <targets key>",
                        conn.repo
                    );
                    return Ok(ExitCode::from(3));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::ProvenancePolicy(PolicyCmd::Set { conn, file }) => {
            let bytes = read_limited(&file, MAX_POLICY_BYTES)?;
            // Parsed here too, for an early message with the file's name;
            // the server parses and checks it again with the same code.
            let name = file.display().to_string();
            custody_repo::custody_provenance::Policy::from_file_contents(&name, &bytes)
                .with_context(|| format!("provenance policy {name}"))?;
            let content_type = if name.ends_with(".json") {
                "application/json"
            } else {
                "application/toml"
            };
            let api = conn.connect()?;
            let v = api.send(
                "PUT",
                &api.repo_path(&["provenance-policy"]),
                content_type,
                Body::Bytes(bytes),
            )?;
            println!(
                "provenance policy of {:?} stored (sha256 {}, rules {})",
                conn.repo,
                v.get("sha256").and_then(Value::as_str).unwrap_or("?"),
                v.get("rules").map(Value::to_string).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::ProvenancePolicy(PolicyCmd::Show { conn }) => {
            let api = conn.connect()?;
            let v = api.send(
                "GET",
                &api.repo_path(&["provenance-policy"]),
                "",
                Body::Empty,
            )?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        ServerCmd::ProvenancePolicy(PolicyCmd::Clear { conn }) => {
            let api = conn.connect()?;
            api.send(
                "DELETE",
                &api.repo_path(&["provenance-policy"]),
                "",
                Body::Empty,
            )?;
            println!("provenance policy of {:?} removed", conn.repo);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn upload(
    conn: &Conn,
    file: &Path,
    name: Option<String>,
    custom: Option<String>,
    provenance: Option<&Path>,
) -> Result<ExitCode> {
    let name = match name {
        Some(n) => n,
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| {
                format!(
                    "{}: no UTF-8 file name; give the target a name with --name",
                    file.display()
                )
            })?
            .to_owned(),
    };
    let custom: Option<Value> = custom
        .map(|c| serde_json::from_str(&c).with_context(|| format!("--custom {c:?} is not JSON")))
        .transpose()?;
    if let Some(c) = custom.as_ref().filter(|c| !c.is_object()) {
        bail!("--custom {c}: must be a JSON object (it becomes the target's TUF `custom` field)");
    }
    let envelope = provenance
        .map(|p| {
            read_limited(p, MAX_ENVELOPE_BYTES)
                .map(|b| (p, b))
                .with_context(|| format!("--provenance {}", p.display()))
        })
        .transpose()?;
    let api = conn.connect()?;
    let up = hosted::upload(&api, file, &name, custom, envelope)?;
    eprintln!(
        "uploaded {} ({} bytes, sha256 {})",
        file.display(),
        up.size,
        up.sha256
    );
    if let Some(sha) = &up.provenance_sha256 {
        eprintln!("uploaded provenance (sha256 {sha})");
    }
    println!("{}", serde_json::to_string_pretty(&up.staged)?);
    Ok(ExitCode::SUCCESS)
}

impl Conn {
    fn connect(&self) -> Result<Api> {
        self.endpoint.connect(&self.repo)
    }
}
