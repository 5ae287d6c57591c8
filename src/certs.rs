//! `switchboard certs-dev`: a development CA and a server certificate for
//! localhost, 127.0.0.1 and ::1, made with rcgen. Never for production.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

pub fn write_dev_certificates(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let err = |what: &str, e: rcgen::Error| format!("certs-dev: {what}: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Switchboard development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(|e| err("CA key", e))?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| err("CA", e))?;

    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let mut params = CertificateParams::new(names).map_err(|e| err("server", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(|e| err("server key", e))?;
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(|e| err("server", e))?;

    // A client certificate for `[tls] client_ca = "certs-dev/ca.pem"`: logs in as
    // `dev-client`.
    let mut client_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("client", e))?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "dev-client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let client_key = KeyPair::generate().map_err(|e| err("client key", e))?;
    let client_cert = client_params
        .signed_by(&client_key, &ca_cert, &ca_key)
        .map_err(|e| err("client", e))?;

    std::fs::create_dir_all(dir)
        .map_err(|e| format!("certs-dev: cannot create {}: {e}", dir.display()))?;
    let files = [
        ("ca.pem", ca_cert.pem()),
        ("ca.key", ca_key.serialize_pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
        ("client.pem", client_cert.pem()),
        ("client.key", client_key.serialize_pem()),
    ];
    let mut written = Vec::new();
    for (name, contents) in files {
        let path = dir.join(name);
        // Private keys readable by their owner only, from the moment they exist.
        let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
        write_with_mode(&path, contents.as_bytes(), mode)
            .map_err(|e| format!("certs-dev: cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // An existing file keeps its old mode through open: set it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_keys_are_written_for_their_owner_only() {
        let dir = std::env::temp_dir().join(format!("sb-certs-{}", std::process::id()));
        let written = write_dev_certificates(&dir).unwrap();
        for path in written {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            let want = if path.extension().is_some_and(|e| e == "key") {
                0o600
            } else {
                0o644
            };
            assert_eq!(mode, want, "{}", path.display());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
