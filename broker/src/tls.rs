//! TLS for the MQTTS and WSS listeners (and HTTPS): the server certificate and key
//! from PEM files, and optionally client certificates checked against a CA, whose
//! common name is the client's username (Mosquitto's `use_identity_as_username`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use crate::BrokerError;

/// Client certificates asked for: checked against `ca`, required or optional.
pub struct ClientCerts<'a> {
    pub ca: &'a Path,
    pub required: bool,
}

/// Builds the acceptor from `cert` (a PEM chain) and `key` (a PEM private key).
pub fn acceptor(
    cert: &Path,
    key: &Path,
    clients: Option<ClientCerts<'_>>,
) -> Result<TlsAcceptor, BrokerError> {
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
    let chain = read_certificates(cert).map_err(|e| tls_error(cert, e))?;
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_error(key, format!("cannot read private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert, e.to_string()))?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(clients) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certificates(clients.ca).map_err(|e| tls_error(clients.ca, e))? {
                roots
                    .add(ca)
                    .map_err(|e| tls_error(clients.ca, format!("not a CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match clients.required {
                true => verifier.build(),
                false => verifier.allow_unauthenticated().build(),
            }
            .map_err(|e| tls_error(clients.ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, private_key).map_err(|e| {
        tls_error(
            cert,
            format!("certificate and key do not work together: {e}"),
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cannot read certificates: {e}"))?;
    match certs.is_empty() {
        true => Err("no certificate in file".into()),
        false => Ok(certs),
    }
}

/// The common name of the (verified) client certificate, if one was presented.
pub fn client_identity(connection: &rustls::ServerConnection) -> Option<String> {
    let der = connection.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_string())
}
