//! `custody server`: talk to a running `custody serve` through its admin
//! API (`/api/v1`, bearer tokens): upload and stage a target with its build
//! provenance, and manage a hosted repository's provenance policy.
//!
//! The server does every check (custody-provenance against the stored
//! policy); this command moves bytes, names what it sends, and prints the
//! server's refusal, which names the rule.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::repo::read_limited;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

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
    #[command(subcommand)]
    cmd: ServerCmd,
}

/// Where and as whom.
#[derive(Args, Debug)]
struct Conn {
    /// Base URL of the server, e.g. https://updates.example.com.
    #[arg(long, env = "CUSTODY_SERVER", value_name = "URL")]
    server: String,
    /// Hosted repository name.
    #[arg(long, value_name = "REPO")]
    repo: String,
    /// API credential (cst1.<id>.<secret>), exchanged for a short-lived token.
    #[arg(
        long,
        env = "CUSTODY_CREDENTIAL",
        hide_env_values = true,
        value_name = "CREDENTIAL"
    )]
    credential: Option<String>,
    /// Bearer token (from POST /api/v1/token) instead of --credential.
    #[arg(
        long,
        env = "CUSTODY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
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
    match args.cmd {
        ServerCmd::Upload {
            conn,
            file,
            name,
            custom,
            provenance,
        } => upload(&conn, &file, name, custom, provenance.as_deref()),
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
            let api = Api::connect(&conn)?;
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
            let api = Api::connect(&conn)?;
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
            let api = Api::connect(&conn)?;
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
                .with_context(|| format!("--provenance {}", p.display()))
        })
        .transpose()?;
    let (sha, size) = sha256_file(file)?;
    let api = Api::connect(conn)?;

    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    api.send(
        "PUT",
        &api.repo_path(&["blobs", &sha]),
        "application/octet-stream",
        Body::File(f),
    )
    .with_context(|| format!("uploading {} ({size} bytes)", file.display()))?;
    eprintln!("uploaded {} ({size} bytes, sha256 {sha})", file.display());

    let mut stage = json!({ "blob_sha256": sha });
    if let Some(c) = custom {
        stage["custom"] = c;
    }
    if let (Some(env), Some(p)) = (envelope, provenance) {
        let env_sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &env));
        api.send(
            "PUT",
            &api.repo_path(&["provenance", &env_sha]),
            "application/json",
            Body::Bytes(env),
        )
        .with_context(|| format!("uploading provenance {}", p.display()))?;
        eprintln!("uploaded provenance {} (sha256 {env_sha})", p.display());
        stage["provenance_sha256"] = json!(env_sha);
    }
    let mut segs = vec!["targets"];
    segs.extend(name.split('/'));
    let staged = api
        .send(
            "PUT",
            &api.repo_path(&segs),
            "application/json",
            Body::Bytes(serde_json::to_vec(&stage)?),
        )
        .with_context(|| format!("staging target {name:?} in {:?}", conn.repo))?;
    println!("{}", serde_json::to_string_pretty(&staged)?);
    Ok(ExitCode::SUCCESS)
}

enum Body {
    Empty,
    Bytes(Vec<u8>),
    File(std::fs::File),
}

struct Api {
    http: ureq::Agent,
    base: url::Url,
    repo: String,
    token: String,
}

impl Api {
    fn connect(conn: &Conn) -> Result<Api> {
        let base = url::Url::parse(&conn.server)
            .with_context(|| format!("--server {:?} is not a URL", conn.server))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--server {:?}: scheme must be http or https", conn.server);
        }
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut api = Api {
            http,
            base,
            repo: conn.repo.clone(),
            token: String::new(),
        };
        api.token = match (&conn.token, &conn.credential) {
            (Some(t), _) => t.clone(),
            (None, Some(cred)) => {
                let v = api
                    .send(
                        "POST",
                        &api.url(&["api", "v1", "token"]),
                        "application/json",
                        Body::Bytes(serde_json::to_vec(&json!({ "credential": cred }))?),
                    )
                    .context("exchanging the credential for a token")?;
                v.get("token")
                    .and_then(Value::as_str)
                    .with_context(|| {
                        format!("POST /api/v1/token on {}: the answer has no \"token\" field: {v}", api.base)
                    })?
                    .to_owned()
            }
            (None, None) => bail!(
                "no credentials: give --credential (or CUSTODY_CREDENTIAL) or --token (or CUSTODY_TOKEN)"
            ),
        };
        Ok(api)
    }

    /// `base` + the segments, each percent-encoded.
    fn url(&self, segs: &[&str]) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segs);
        }
        u
    }

    fn repo_path(&self, segs: &[&str]) -> url::Url {
        let mut all = vec!["api", "v1", "repos", self.repo.as_str()];
        all.extend_from_slice(segs);
        self.url(&all)
    }

    /// One request; the JSON answer (Null when empty), or an error with
    /// the server's code and message.
    fn send(&self, method: &str, url: &url::Url, content_type: &str, body: Body) -> Result<Value> {
        let u = url.as_str();
        let mut req = ureq::http::Request::builder().method(method).uri(u);
        if !self.token.is_empty() {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let resp = match body {
            Body::Empty => self.http.run(req.body(())?),
            Body::Bytes(b) => self.http.run(req.body(b)?),
            // Streamed with its length (ureq reads the file's size).
            Body::File(f) => self.http.run(req.body(f)?),
        }
        .with_context(|| format!("{method} {u}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .with_context(|| format!("{method} {u}: reading the answer"))?;
        let v: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if !(200..300).contains(&status) {
            let code = v.get("error").and_then(Value::as_str).unwrap_or("error");
            let msg = v.get("message").and_then(Value::as_str).unwrap_or(&text);
            bail!("{method} {u}: the server answered {status} {code}: {msg}");
        }
        Ok(v)
    }
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(buf.get(..n).unwrap_or_default());
    }
    Ok((hex::encode(ctx.finish()), size))
}
