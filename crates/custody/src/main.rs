//! `custody`: the one binary. Each subcommand lives in its own module and is
//! a thin layer over the library crates.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `custody serve` allocates per request; mimalloc instead of glibc malloc
/// (see crates/custody/Cargo.toml). Not in agent-only builds.
#[cfg(feature = "server")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod api_client;
mod audit;
mod bundle;
mod client;
#[cfg(feature = "server")]
mod demo;
#[cfg(feature = "authoring")]
mod fleet;
#[cfg(feature = "authoring")]
mod inventory;
#[cfg(feature = "authoring")]
mod key;
#[cfg(feature = "authoring")]
mod monitor;
#[cfg(feature = "authoring")]
mod remote;
#[cfg(feature = "authoring")]
mod repo;
#[cfg(feature = "scan")]
mod scan;
#[cfg(feature = "server")]
mod serve;
mod witness;

/// custody: the software update trust chain.
///
/// Every byte a device installs is checked against signed, versioned,
/// expiring metadata (TUF), bound to that one device, and written to a
/// transparency log. Run a subcommand with --help to learn it.
#[derive(Parser, Debug)]
#[command(
    name = "custody",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole trust chain on this machine, narrated: repository,
    /// server, two devices that verify, install and commit, and a tampered
    /// payload refused.
    #[cfg(feature = "server")]
    Demo(demo::DemoArgs),
    /// Device agent: enrol, check in, verify, install with health check and
    /// rollback, report; offline bundles.
    Agent(agent::AgentArgs),
    /// Offline bundles for USB / air-gapped delivery.
    Bundle(bundle::BundleArgs),
    /// TUF client: initialise trust, refresh metadata, download verified targets.
    Client(client::ClientArgs),
    /// Signing keys: generate encrypted key files, show key ids (files and PKCS#11 tokens).
    #[cfg(feature = "authoring")]
    Key(key::KeyArgs),
    /// TUF repository authoring: init, targets, signing, thresholds, publish.
    #[cfg(feature = "authoring")]
    Repo(repo::RepoArgs),
    /// Image trust-stack gate: scan a rootfs or OCI image for expired or
    /// untrusted CA certificates and outdated crypto libraries.
    #[cfg(feature = "scan")]
    Scan(scan::ScanArgs),
    /// HTTP server: host TUF repositories, admin API, metrics.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// Hosted repositories on a running server: create, upload targets with
    /// their build provenance, sign drafts with offline keys, publish, and
    /// the provenance policy.
    #[cfg(feature = "authoring")]
    Server(remote::ServerArgs),
    /// The fleet on a running server: enrolment tokens, devices, rollouts
    /// (create, watch, pause, abort), yanks, credentials, the audit trail.
    #[cfg(feature = "authoring")]
    Fleet(fleet::FleetArgs),
    /// Trust-stack inventory: every role and key of repositories with its
    /// expiry, sorted by urgency; a CI gate with --fail-on.
    #[cfg(feature = "authoring")]
    Inventory(inventory::InventoryArgs),
    /// Release monitor: follow a server's transparency log and alert on
    /// unusual release timing, privilege growth, drift and yanked targets.
    #[cfg(feature = "authoring")]
    Monitor(monitor::MonitorArgs),
    /// Transparency log witness: verify consistency, cosign, alarm on fork or rollback.
    Witness(witness::WitnessArgs),
    /// Audit a transparency log: replay it, who has a target, a device's history.
    Audit(audit::AuditArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are not errors; everything else is exit 1
            // (the conformance CLI protocol allows only 0 and 1).
            // The CI gates `custody scan` and `custody inventory` document 2
            // for usage errors (1 means findings or a failed gate).
            let code = match (err.use_stderr(), std::env::args().nth(1).as_deref()) {
                (false, _) => 0,
                #[cfg(feature = "scan")]
                (true, Some("scan")) => scan::EXIT_UNSCANNABLE,
                #[cfg(feature = "authoring")]
                (true, Some("inventory")) => 2,
                (true, _) => 1,
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_tracing();
    let result = match cli.command {
        #[cfg(feature = "server")]
        Command::Demo(args) => demo::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Client(args) => client::run(args),
        #[cfg(feature = "authoring")]
        Command::Key(args) => key::run(args),
        #[cfg(feature = "authoring")]
        Command::Repo(args) => repo::run(args),
        #[cfg(feature = "scan")]
        Command::Scan(args) => scan::run(args),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(args),
        #[cfg(feature = "authoring")]
        Command::Server(args) => remote::run(args),
        #[cfg(feature = "authoring")]
        Command::Fleet(args) => fleet::run(args),
        #[cfg(feature = "authoring")]
        Command::Inventory(args) => inventory::run(args),
        #[cfg(feature = "authoring")]
        Command::Monitor(args) => monitor::run(args),
        Command::Witness(args) => witness::run(args),
        Command::Audit(args) => audit::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr; `RUST_LOG` selects the level (default: warnings), and
/// `CUSTODY_LOG_FORMAT=json` switches to JSON lines for log shippers.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("CUSTODY_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
