//! TLS for the MQTTS and WSS listeners: the server certificate and key from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::BrokerError;

/// Builds the acceptor from `cert` (a PEM chain) and `key` (a PEM private key).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, BrokerError> {
    let tls_error = |path: &Path, message: String| BrokerError::Tls {
        path: path.to_path_buf(),
        message,
    };
    for path in [cert, key] {
        if !path.exists() {
            return Err(tls_error(
                path,
                "file not found; make development certificates with `switchboard certs-dev`".into(),
            ));
        }
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| tls_error(cert, format!("cannot read certificates: {e}")))?;
    if chain.is_empty() {
        return Err(tls_error(cert, "no certificate in file".into()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_error(key, format!("cannot read private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            tls_error(
                cert,
                format!("certificate and key do not work together: {e}"),
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
