//! Server configuration: a TOML file, then `CUSTODY_*` environment variables
//! and command-line flags (applied by the binary) on top.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::settings::AuthSettings;
pub use crate::auth::settings::{OidcProviderConfig, OidcRule, MAX_TOKEN_TTL_SECONDS};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config field {field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Everything `custody serve` needs. Every field has a default, so an empty
/// file (or none) is a working zero-config server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// State directory: SQLite database, blobs, hosted repositories.
    pub data_dir: PathBuf,
    /// `postgres://…` to keep state in PostgreSQL instead of SQLite.
    pub database_url: Option<String>,
    /// Keep uploaded target blobs in object storage instead of
    /// `<data_dir>/blobs`: `s3://bucket/prefix`, `gs://…`, `az://…` or
    /// `file:///dir`. Credentials come from `blob_store_options` or the
    /// usual `AWS_*` / `GOOGLE_*` / `AZURE_*` environment variables.
    pub blob_store_url: Option<String>,
    /// Backend options for `blob_store_url`, e.g. `aws_endpoint`,
    /// `aws_region`, `aws_allow_http` (object_store configuration keys).
    pub blob_store_options: BTreeMap<String, String>,
    /// PEM certificate chain and private key: serve HTTPS (rustls).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Default admin token lifetime (seconds).
    pub token_ttl_seconds: u64,
    /// Longest admin token lifetime a caller may ask for (≤ 3600).
    pub token_max_ttl_seconds: u64,
    /// Largest blob an upload may carry (bytes).
    pub max_blob_bytes: u64,
    /// Operator override of the separation-of-duties rule.
    pub allow_upload_and_publish: bool,
    /// Metadata files at most this large are served from memory.
    pub metadata_cache_file_bytes: u64,
    /// Total bytes of metadata kept in memory per repository generation.
    pub metadata_cache_total_bytes: u64,
    /// A client must send its request head within this many seconds
    /// (slowloris protection).
    pub header_read_timeout_seconds: u64,
    /// Token-signing key file (32+ random bytes). Default: a key kept in the
    /// database, shared by every replica that uses the same database.
    pub token_key_file: Option<PathBuf>,
    /// File holding the passphrase of the online (snapshot, timestamp) key
    /// files. Default: the `CUSTODY_KEY_PASSPHRASE` environment variable.
    pub key_passphrase_file: Option<PathBuf>,
    /// Keep the online snapshot/timestamp keys of new repositories on a
    /// PKCS#11 token instead of key files: a `pkcs11:` URI template with
    /// `{repo}` and `{role}`, e.g.
    /// `pkcs11:token=custody;object={repo}-{role}?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:CUSTODY_HSM_PIN`.
    /// The operator creates the keys on the token first.
    pub pkcs11_online_key_uri: Option<String>,
    /// CI identity providers whose OIDC ID tokens may be exchanged.
    pub oidc: Vec<OidcProviderConfig>,
    /// The director (`[director]`): device API and fleet API.
    pub director: crate::director::DirectorSettings,
    /// `POST /api/v1/token` requests per minute per client address
    /// (sustained), against secret guessing. Behind a proxy all clients
    /// share the proxy's address: raise it or limit at the proxy.
    pub token_requests_per_minute: u32,
    /// Burst allowance on top of the sustained token-request rate.
    pub token_request_burst: u32,
    /// The transparency log (`[log]`): the witness policy devices pin.
    pub log: crate::tlog::LogSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./custody-data"),
            database_url: None,
            blob_store_url: None,
            blob_store_options: BTreeMap::new(),
            tls_cert: None,
            tls_key: None,
            token_ttl_seconds: 900,
            token_max_ttl_seconds: MAX_TOKEN_TTL_SECONDS,
            max_blob_bytes: 1 << 30,
            allow_upload_and_publish: false,
            metadata_cache_file_bytes: 4 << 20,
            metadata_cache_total_bytes: 64 << 20,
            header_read_timeout_seconds: 20,
            token_key_file: None,
            key_passphrase_file: None,
            pkcs11_online_key_uri: None,
            oidc: Vec::new(),
            director: crate::director::DirectorSettings::default(),
            token_requests_per_minute: 60,
            token_request_burst: 30,
            log: crate::tlog::LogSettings::default(),
        }
    }
}

impl ServerConfig {
    /// The settings the auth slice reads (`crate::auth`).
    pub(crate) fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            token_ttl_seconds: self.token_ttl_seconds,
            token_max_ttl_seconds: self.token_max_ttl_seconds,
            allow_upload_and_publish: self.allow_upload_and_publish,
            token_requests_per_minute: self.token_requests_per_minute,
            token_request_burst: self.token_request_burst,
            token_key_file: self.token_key_file.clone(),
            oidc: self.oidc.clone(),
        }
    }

    pub fn from_toml_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks the cross-field rules; run before starting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.log.validate().map_err(|e| invalid("log", e))?;
        self.director
            .validate()
            .map_err(|e| invalid("director", e))?;
        crate::auth::settings::validate_token_ttls(
            self.token_max_ttl_seconds,
            self.token_ttl_seconds,
        )
        .map_err(|(field, reason)| invalid(field, reason))?;
        if !(1..=300).contains(&self.header_read_timeout_seconds) {
            return Err(invalid(
                "header_read_timeout_seconds",
                format!("must be 1..=300, got {}", self.header_read_timeout_seconds),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "tls_cert/tls_key",
                "give both the certificate chain and the private key, or neither",
            ));
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    "database_url",
                    "must start with postgres:// or postgresql:// (SQLite is the default without it)",
                ));
            }
        }
        crate::auth::settings::validate_oidc(&self.oidc, self.allow_upload_and_publish)
            .map_err(|(field, reason)| invalid(field, reason))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_valid() {
        let c: ServerConfig = toml::from_str("").unwrap();
        c.validate().unwrap();
        assert_eq!(c.token_ttl_seconds, 900);
    }

    #[test]
    fn oidc_rule_breaking_separation_of_duties_is_refused() {
        let c: ServerConfig = toml::from_str(
            r#"
            [[oidc]]
            issuer = "https://ci.example"
            audience = "custody"
            [[oidc.rules]]
            name = "both"
            claims = { repository = "acme/app" }
            scopes = ["target:upload@app", "repo:publish@app"]
            "#,
        )
        .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("separation of duties"), "{err}");
        let c = ServerConfig {
            allow_upload_and_publish: true,
            ..c
        };
        c.validate().unwrap();
    }

    #[test]
    fn ttl_above_one_hour_is_refused() {
        let c: ServerConfig = toml::from_str("token_max_ttl_seconds = 7200").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("3600"));
    }

    #[test]
    fn unknown_field_is_refused() {
        assert!(toml::from_str::<ServerConfig>("lissen = \"x\"").is_err());
    }
}
