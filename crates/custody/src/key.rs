//! `custody key …`: create and inspect signing keys.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use custody_keys::keyfile;
use custody_keys::passphrase::SecretSource;
use custody_keys::pkcs11::{Pkcs11Signer, Pkcs11Uri};
use custody_keys::{KeyType, Signer};

#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Examples:
  custody key generate --type ed25519 --out root-1.pem
  CUSTODY_PASS=… custody key generate --type ecdsa-p256 --out ts.pem --passphrase-env CUSTODY_PASS
  custody key show root-1.pem --json
  custody key show --pkcs11 'pkcs11:token=custody;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:PIN'")]
pub struct KeyArgs {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(clap::Subcommand, Debug)]
enum KeyCmd {
    /// Generate a key pair and store the private key encrypted (PKCS#8, scrypt + AES-256-CBC).
    ///
    /// The file is written with mode 0600 and is never overwritten. OpenSSL
    /// reads it: `openssl pkey -in FILE`. Prints the public key in TUF form
    /// and its key id.
    #[command(after_long_help = "\
Key types:
  ed25519      Ed25519 (TUF scheme ed25519). Small, fast; the default choice.
  ecdsa-p256   ECDSA P-256 with SHA-256 (ecdsa-sha2-nistp256), what Sigstore uses.
  ecdsa-p384   ECDSA P-384 with SHA-384 (ecdsa-sha2-nistp384).
  rsa-pss      RSA 3072 with RSASSA-PSS-SHA256 (rsassa-pss-sha256), for HSM-heavy shops.

Examples:
  custody key generate --type ed25519 --out keys/root-1.pem
  custody key generate --type rsa-pss --out keys/targets.pem --passphrase-file pass.txt --json")]
    Generate {
        /// Key type: ed25519, ecdsa-p256, ecdsa-p384 or rsa-pss.
        #[arg(long = "type", value_name = "TYPE")]
        key_type: KeyType,
        /// Where to write the encrypted private key (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        pass: PassphraseArgs,
        /// Print JSON: {"keyid", "type", "key"}.
        #[arg(long)]
        json: bool,
    },
    /// Show the key id, type and TUF public key of a key file, a public key
    /// JSON file, or a key on a PKCS#11 token.
    #[command(after_long_help = "\
Examples:
  custody key show keys/root-1.pem
  custody key show keys/root-1.pub.json
  custody key show --pkcs11 'pkcs11:token=custody;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin'")]
    Show {
        /// An encrypted key file or a public key JSON file.
        #[arg(
            value_name = "FILE",
            required_unless_present = "pkcs11",
            conflicts_with = "pkcs11"
        )]
        file: Option<PathBuf>,
        /// A PKCS#11 URI naming a key on a token (RFC 7512 subset).
        #[arg(long, value_name = "URI")]
        pkcs11: Option<String>,
        #[command(flatten)]
        pass: PassphraseArgs,
        /// Print JSON: {"keyid", "type", "key"}.
        #[arg(long)]
        json: bool,
    },
}

/// Where key-file passphrases come from (default: ask on the terminal).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PassphraseArgs {
    /// Read the key passphrase from this environment variable.
    #[arg(long, value_name = "VAR", global = true)]
    pub passphrase_env: Option<String>,
    /// Read the key passphrase from this file (one trailing newline is ignored).
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        conflicts_with = "passphrase_env"
    )]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    pub fn source(&self) -> SecretSource {
        match (&self.passphrase_env, &self.passphrase_file) {
            (Some(v), _) => SecretSource::Env(v.clone()),
            (None, Some(f)) => SecretSource::File(f.clone()),
            (None, None) => SecretSource::Prompt,
        }
    }
}

pub fn run(args: KeyArgs) -> anyhow::Result<ExitCode> {
    match args.cmd {
        KeyCmd::Generate {
            key_type,
            out,
            pass,
            json,
        } => {
            if key_type == KeyType::RsaPss && !json {
                eprintln!("generating an RSA 3072 key can take a few seconds…");
            }
            let passphrase = pass
                .source()
                .read(&format!("passphrase for new key {}", out.display()), true)?;
            let signer = keyfile::generate(&out, key_type, passphrase.as_bytes())
                .with_context(|| format!("generating a {key_type} key"))?;
            print_key(&signer, json)?;
            if !json {
                eprintln!("wrote encrypted private key {}", out.display());
            }
        }
        KeyCmd::Show {
            file,
            pkcs11,
            pass,
            json,
        } => {
            if let Some(uri) = pkcs11 {
                let uri: Pkcs11Uri = uri.parse()?;
                let signer = Pkcs11Signer::open(&uri)?;
                print_key(&signer, json)?;
            } else if let Some(file) = file {
                if let Some(key) = read_public_key_json(&file)? {
                    print_public(&key, json)?;
                } else {
                    let signer = load_key_file(&file, &pass)?;
                    print_key(&signer, json)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Decrypt a key file, asking for its passphrase as `pass` says.
pub fn load_key_file(file: &Path, pass: &PassphraseArgs) -> anyhow::Result<keyfile::FileSigner> {
    let passphrase = pass
        .source()
        .read(&format!("passphrase for {}", file.display()), false)?;
    Ok(keyfile::load(file, passphrase.as_bytes())?)
}

/// If `file` is a public key JSON (a TUF key object, or the output of
/// `custody key show --json`), return the key.
pub fn read_public_key_json(file: &Path) -> anyhow::Result<Option<custody_keys::TufPublicKey>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if bytes.len() > 64 * 1024 || bytes.first() != Some(&b'{') {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not valid JSON", file.display()))?;
    let key_v = v.get("key").cloned().unwrap_or(v);
    let key: custody_keys::TufPublicKey = serde_json::from_value(key_v).with_context(|| {
        format!(
            "{}: not a TUF public key (needs keytype, scheme, keyval.public)",
            file.display()
        )
    })?;
    Ok(Some(key))
}

fn print_public(key: &custody_keys::TufPublicKey, json: bool) -> anyhow::Result<()> {
    let keyid = custody_keys::keys::keyid(key)?;
    let kt = custody_keys::keys::key_type_of(key);
    let type_name = kt.map(|k| k.name()).unwrap_or("unsupported");
    if json {
        let out = serde_json::json!({ "keyid": keyid, "type": type_name, "key": key });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("keyid: {keyid}");
        println!(
            "type:  {type_name} (keytype {}, scheme {})",
            key.keytype, key.scheme
        );
        println!("TUF public key:");
        println!("{}", serde_json::to_string_pretty(key)?);
    }
    Ok(())
}

fn print_key(signer: &dyn Signer, json: bool) -> anyhow::Result<()> {
    print_public(signer.key(), json)
}
