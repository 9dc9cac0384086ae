//! Random identifiers: temp file names, event and rollout ids. The lowest
//! layer of the crate (every slice names things), so it imports nothing.

/// Random hex for temp file names and ids.
pub(crate) fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    // SystemRandom only fails if the OS RNG is unavailable; fall back to a
    // time-based name (names only need to be unique, not secret).
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{nanos:x}");
    }
    hex::encode(buf)
}
