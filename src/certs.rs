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

    std::fs::create_dir_all(dir)
        .map_err(|e| format!("certs-dev: cannot create {}: {e}", dir.display()))?;
    let files = [
        ("ca.pem", ca_cert.pem()),
        ("ca.key", ca_key.serialize_pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
    ];
    let mut written = Vec::new();
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents)
            .map_err(|e| format!("certs-dev: cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
