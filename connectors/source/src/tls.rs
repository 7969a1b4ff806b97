//! TLS for every connection ebis opens (the warehouse, PostgreSQL and MySQL sources), in
//! libpq's `sslmode` terms, over rustls: one client configuration built here, handed to
//! each driver.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error as TlsError, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// How a connection uses TLS (libpq's `sslmode` names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// Encrypted; the server's certificate is not checked (protects against listening,
    /// not against a server in the middle).
    Require,
    /// Encrypted; the certificate must chain to the CA, whatever name it carries.
    VerifyCa,
    /// Encrypted; the certificate must chain to the CA and name the host connected to.
    VerifyFull,
}

impl TlsMode {
    /// The modes as the config writes them.
    pub const NAMES: [(&'static str, TlsMode); 4] = [
        ("disable", TlsMode::Disable),
        ("require", TlsMode::Require),
        ("verify-ca", TlsMode::VerifyCa),
        ("verify-full", TlsMode::VerifyFull),
    ];

    /// From its config name.
    pub fn from_name(name: &str) -> Option<TlsMode> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
    }

    /// Its config name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("disable", |(n, _)| n)
    }
}

/// A connection's TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// How TLS is used.
    pub mode: TlsMode,
    /// The CA certificates (PEM) the server's certificate must chain to (verify modes).
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM), for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
}

impl Tls {
    /// True unless TLS is off.
    pub fn enabled(&self) -> bool {
        self.mode != TlsMode::Disable
    }

    /// The rustls client configuration for these settings (files read now). Errors name
    /// the file and what is wrong with it.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            TlsMode::Disable | TlsMode::Require => Arc::new(Lenient {
                chain: None,
                provider: provider.clone(),
            }),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let Some(ca) = &self.ca_file else {
                    return Err(format!(
                        "TLS mode {} needs a CA file (tls.ca_file) to check the server's certificate against",
                        self.mode.name()
                    ));
                };
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "TLS CA file {}: a certificate rustls refuses: {e}",
                            ca.display()
                        )
                    })?;
                }
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| format!("TLS CA file {}: {e}", ca.display()))?;
                if self.mode == TlsMode::VerifyCa {
                    Arc::new(Lenient {
                        chain: Some(webpki),
                        provider: provider.clone(),
                    })
                } else {
                    webpki
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!("TLS key file {}: no private key read: {e}", key.display())
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "TLS client certificate {} and its key do not go together: {e}",
                        cert.display()
                    )
                })
            }
            _ => Err(
                "TLS: a client certificate needs both tls.cert_file and tls.key_file".to_owned(),
            ),
        }
    }
}

/// The certificates of a PEM file, at least one.
fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("TLS certificate file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The certificate checks libpq's weaker modes make: `require` takes any certificate (the
/// channel is encrypted, the peer not authenticated), `verify-ca` wants the chain to lead
/// to the CA but does not compare the name with the host. Handshake signatures are always
/// checked, so the handshake itself is sound.
#[derive(Debug)]
struct Lenient {
    /// `None`: any certificate; `Some`: the CA's chain, any name.
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(TlsError::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(TlsError::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS failure as an operator reads it: which check failed, in plain words.
pub fn explain(error: &str) -> String {
    let e = error.to_ascii_lowercase().replace([' ', '_'], "");
    let hint = if e.contains("unknownissuer") {
        "the server's certificate is not signed by the CA in tls.ca_file (wrong CA file, or a server in the middle)"
    } else if e.contains("notvalidforname") {
        "the server's certificate does not name the host in the URL (use the name it was issued for, or tls.mode verify-ca)"
    } else if e.contains("expired") {
        "the server's certificate has expired"
    } else if e.contains("serverdoesnotsupporttls") {
        "the server does not offer TLS on this port"
    } else {
        return format!("TLS: {error}");
    };
    format!("TLS: {hint} ({error})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_named_as_libpq_names_them() {
        for (name, mode) in TlsMode::NAMES {
            assert_eq!(TlsMode::from_name(name), Some(mode));
            assert_eq!(mode.name(), name);
        }
        assert_eq!(TlsMode::from_name("prefer"), None);
        assert_eq!(TlsMode::default(), TlsMode::Disable);
    }

    #[test]
    fn verify_modes_need_a_ca_and_files_are_named_in_errors() {
        let tls = Tls {
            mode: TlsMode::VerifyFull,
            ..Tls::default()
        };
        let e = tls.client_config().expect_err("no CA");
        assert!(e.contains("needs a CA file (tls.ca_file)"), "{e}");
        let tls = Tls {
            mode: TlsMode::VerifyCa,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Tls::default()
        };
        let e = tls.client_config().expect_err("no file");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let tls = Tls {
            mode: TlsMode::Require,
            cert_file: Some("/nonexistent/client.pem".into()),
            ..Tls::default()
        };
        let e = tls.client_config().expect_err("half a client identity");
        assert!(e.contains("both tls.cert_file and tls.key_file"), "{e}");
        assert!(
            Tls {
                mode: TlsMode::Require,
                ..Tls::default()
            }
            .client_config()
            .is_ok()
        );
    }

    #[test]
    fn failures_read_as_what_to_fix() {
        assert!(
            explain("invalid peer certificate: UnknownIssuer").contains("not signed by the CA")
        );
        assert!(
            explain("invalid peer certificate: NotValidForName").contains("does not name the host")
        );
        assert!(
            explain(r#"invalid peer certificate: certificate not valid for name "127.0.0.1""#)
                .contains("does not name the host")
        );
    }
}
