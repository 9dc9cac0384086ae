//! Enrolment: the credential a device presents, the log pin it takes (out of
//! band or from the server's offer), and [`enroll`] itself, which creates the
//! device key and the state directory a [`Device`](super::Device) opens.

use super::*;

/// How the device proves it may join.
#[derive(Clone)]
pub enum Credential {
    /// one-time enrolment token
    Token(String),
    /// factory X.509 identity: chain (DER, leaf first) and a signer for the
    /// leaf's key
    Factory {
        /// DER certificates, leaf first
        chain: Vec<Vec<u8>>,
        /// signs with the certificate's private key
        sign: FactorySigner,
    },
}

/// Enrolment options.
#[derive(Clone)]
pub struct EnrollOptions {
    /// server base URL
    pub server: String,
    /// credential
    pub credential: Credential,
    /// hardware id
    pub hardware_id: String,
    /// fleet attributes
    pub attributes: DeviceAttributes,
    /// state directory (created)
    pub state_dir: PathBuf,
    /// key algorithm
    pub key_type: DeviceKeyType,
    /// director root supplied out of band (else the server's, trust on
    /// first use)
    pub director_root: Option<Vec<u8>>,
    /// image root supplied out of band
    pub image_root: Option<Vec<u8>>,
    /// rollback keys to provision
    pub rollback_keys: Option<RollbackKeysConfig>,
    /// transparency-log pin given out of band (overrides the server's
    /// offer, which must then agree)
    pub log: LogPinOptions,
}

/// An out-of-band transparency-log pin (`custody agent enroll --log-key K
/// --witness W... --witness-threshold N`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPinOptions {
    /// the log's note verifier key
    pub log_key: Option<String>,
    /// witness verifier keys
    pub witnesses: Vec<String>,
    /// how many witnesses must cosign (default: all given witnesses when
    /// some are given)
    pub witness_threshold: Option<usize>,
}

/// The log pin to store: the operator's where given, the server's offer
/// otherwise; an offer that contradicts an explicit pin is refused (a
/// server showing another log key or witness set than the operator pinned
/// is not the server the operator meant).
pub fn resolve_log_pin(
    offer: Option<&LogPin>,
    explicit: &LogPinOptions,
) -> Result<Option<LogPin>, DeviceError> {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|k| k.trim().to_owned()).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut pin = match (offer, &explicit.log_key) {
        (None, None) => {
            if !explicit.witnesses.is_empty() || explicit.witness_threshold.is_some() {
                return Err(DeviceError::Enrol(
                    "--witness / --witness-threshold need a log: the server offers none, give --log-key".into(),
                ));
            }
            return Ok(None);
        }
        (Some(o), None) => o.clone(),
        (offer, Some(k)) => {
            let k = k.trim().to_owned();
            if let Some(o) = offer {
                if o.log_key.trim() != k {
                    return Err(DeviceError::Enrol(format!(
                        "the server offers log key {:?}, but --log-key pins {k:?}: refusing to enrol with a server that shows another log",
                        o.log_key
                    )));
                }
            }
            LogPin {
                origin: offer.map(|o| o.origin.clone()).unwrap_or_default(),
                log_key: k,
                witnesses: offer.map(|o| o.witnesses.clone()).unwrap_or_default(),
                witness_threshold: offer.map_or(0, |o| o.witness_threshold),
                log_path: offer.map_or_else(|| "/log/v1/".to_owned(), |o| o.log_path.clone()),
            }
        }
    };
    if !explicit.witnesses.is_empty() || explicit.witness_threshold.is_some() {
        let ws = norm(&explicit.witnesses);
        let k = explicit.witness_threshold.unwrap_or(ws.len());
        if let Some(o) = offer {
            let offered = norm(&o.witnesses);
            if !offered.is_empty() && (offered != ws || o.witness_threshold != k) {
                return Err(DeviceError::Enrol(format!(
                    "the server offers witness policy {} of [{}], but the pin is {k} of [{}]: refusing",
                    o.witness_threshold,
                    offered.join(", "),
                    ws.join(", ")
                )));
            }
        }
        pin.witnesses = ws;
        pin.witness_threshold = k;
    }
    if pin.origin.is_empty() {
        // custody's log is named after its origin
        pin.origin = pin.log_key.split('+').next().unwrap_or_default().to_owned();
    }
    pin.validate("log pin")
        .map_err(|e| DeviceError::Enrol(e.to_string()))?;
    pin_trust(&pin).map_err(DeviceError::Enrol)?;
    Ok(Some(pin))
}

/// The custody-log trust of a pin.
pub fn pin_trust(pin: &LogPin) -> Result<LogTrust, String> {
    trust_from_keys(
        Some(&pin.origin),
        &pin.log_key,
        &pin.witnesses,
        pin.witness_threshold,
    )
}

/// Enrol: generate the device key, send the enrolment request, pin the
/// roots, write `device.json`. The returned device id equals the key id.
pub fn enroll(opts: &EnrollOptions) -> Result<DeviceConfig, DeviceError> {
    let state = &opts.state_dir;
    ensure_dir(state)?;
    if device_json(state).exists() {
        return Err(DeviceError::Config {
            path: device_json(state),
            detail: "already enrolled (a new enrolment needs a new state directory: a new key is a new device)".into(),
        });
    }
    let backend = FileKeyBackend::new(key_path(state));
    let signer = if backend.path().exists() {
        // a previous enrolment attempt that failed after key generation
        backend.load()?
    } else {
        backend.generate(opts.key_type)?
    };
    let nonce = fresh_nonce().map_err(|e| DeviceError::Enrol(e.to_string()))?;
    let credential = match &opts.credential {
        Credential::Token(t) => EnrolmentCredential::Token { token: t.clone() },
        Credential::Factory { chain, .. } => EnrolmentCredential::Factory {
            chain: chain
                .iter()
                .map(|c| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(c)
                })
                .collect(),
        },
    };
    let claims = EnrolmentClaims {
        type_: TYPE_ENROLMENT.to_owned(),
        wire_version: WIRE_VERSION,
        key: signer.key().clone(),
        hardware_id: opts.hardware_id.clone(),
        attributes: opts.attributes.clone(),
        credential,
        timestamp: now_secs(),
        nonce,
    };
    let factory_fn;
    let factory: Option<&FactorySign<'_>> = match &opts.credential {
        Credential::Factory { sign, .. } => {
            let s = sign.clone();
            factory_fn = move |m: &[u8]| s(m);
            Some(&factory_fn)
        }
        Credential::Token(_) => None,
    };
    let req = EnrolmentRequest::sign(claims, signer.as_ref(), factory)
        .map_err(|e| DeviceError::Enrol(e.to_string()))?;
    let body = req
        .to_bytes()
        .map_err(|e| DeviceError::Enrol(e.to_string()))?;
    let url = join(&opts.server, "/device/v1/enrol");
    let http = http_agent(&DownloadConfig::default());
    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .send(&body[..])
        .map_err(|e| DeviceError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let (status, body) = read_body(&url, resp)?;
    if !(200..300).contains(&status) {
        return Err(server_error(&url, status, &body));
    }
    let er = EnrolResponse::from_bytes(&body).map_err(|e| DeviceError::Enrol(e.to_string()))?;
    if er.device_id != signer.keyid() {
        return Err(DeviceError::Enrol(format!(
            "the server registered device id {}, but this device's key id is {}: refusing (the device id must be the key id)",
            er.device_id,
            signer.keyid()
        )));
    }
    let log = resolve_log_pin(er.log.as_ref(), &opts.log)?;
    // Pin the roots: out of band if given, else the server's (TOFU). Each
    // must be a root signed by a threshold of its own keys (custody-tuf).
    for (what, dir, given, served) in [
        (
            "director",
            state.join("director"),
            &opts.director_root,
            &er.director_root,
        ),
        (
            "image",
            state.join("image"),
            &opts.image_root,
            &er.image_root,
        ),
    ] {
        let bytes = given.as_ref().unwrap_or(served);
        custody_tuf::TrustedMetadata::new(bytes).map_err(|e| {
            DeviceError::Enrol(format!("{what} root: not a valid self-signed root: {e}"))
        })?;
        let store = custody_client::MetadataStore::create(&dir)
            .map_err(custody_client::ClientError::from)?;
        store
            .persist("root", bytes)
            .map_err(custody_client::ClientError::from)?;
    }
    let config = DeviceConfig {
        format: DEVICE_FORMAT,
        server: opts.server.trim_end_matches('/').to_owned(),
        device_id: er.device_id,
        hardware_id: opts.hardware_id.clone(),
        key_type: opts.key_type,
        image_repository: er.image_repository,
        image_metadata_path: er.image_metadata_path,
        image_targets_path: er.image_targets_path,
        rollback_keys: opts.rollback_keys.clone(),
        log,
    };
    write_json(&device_json(state), &config)?;
    Ok(config)
}

/// A factory credential from PEM files: the certificate chain (leaf first)
/// and the leaf's PKCS#8 private key (ECDSA P-256 or Ed25519).
pub fn factory_credential(chain_pem: &[u8], key_pem: &[u8]) -> Result<Credential, String> {
    let mut chain = Vec::new();
    for item in ureq::tls::parse_pem(chain_pem) {
        let item = item.map_err(|e| format!("factory certificate: invalid PEM: {e}"))?;
        if let ureq::tls::PemItem::Certificate(c) = item {
            chain.push(c.der().to_vec());
        }
    }
    if chain.is_empty() {
        return Err("factory certificate: no CERTIFICATE block".into());
    }
    let mut der = None;
    for item in ureq::tls::parse_pem(key_pem) {
        if let Ok(ureq::tls::PemItem::PrivateKey(k)) = item {
            der = Some(k.der().to_vec());
        }
    }
    let der = der.ok_or("factory key: no PKCS#8 PRIVATE KEY block")?;
    let rng = ring::rand::SystemRandom::new();
    let sign: FactorySigner = if let Ok(k) = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &der,
        &rng,
    ) {
        std::sync::Arc::new(move |m: &[u8]| {
            k.sign(&ring::rand::SystemRandom::new(), m)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ECDSA signing failed".to_owned())
        })
    } else if let Ok(k) = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
        std::sync::Arc::new(move |m: &[u8]| Ok(k.sign(m).as_ref().to_vec()))
    } else {
        return Err("factory key: not an ECDSA P-256 or Ed25519 PKCS#8 key".into());
    };
    Ok(Credential::Factory { chain, sign })
}
