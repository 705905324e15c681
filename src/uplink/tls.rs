//! TLS to the broker: a rustls `ClientConfig` built from `[mqtt.tls]`, on the ring provider.
//!
//! - `ca_file`: PEM CA certificate(s); the broker's certificate must chain to one of them
//!   (the system's trust store is not used: a gateway trusts the broker it was set up for).
//! - `client_cert_file` + `client_key_file`: mutual TLS, both or neither.
//! - `server_name`: the name the broker's certificate is checked against when it is not
//!   `mqtt.host`. rumqttc always sends `mqtt.host` as the TLS server name (SNI), so a
//!   different name is applied by the certificate check itself: the standard WebPKI verifier
//!   is asked about `server_name` instead of the host.
//!
//! Every error names the key and the file, so `fleetedge check-config` points at the fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use serde::{Deserialize, Serialize};

/// Largest PEM file read (a CA bundle of a few hundred certificates fits easily).
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// `[mqtt.tls]`: TLS to the broker with rustls. Mutual TLS when a client certificate is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttTlsSettings {
    /// Connect with TLS (usually to port 8883). Default false.
    pub enabled: bool,
    /// PEM file of the CA certificate(s) the broker's certificate must chain to. Required
    /// when `enabled`. Default none.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; set with `client_key_file`, or neither.
    /// Default none.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`. Default none.
    pub client_key_file: Option<PathBuf>,
    /// The name the broker's certificate must carry (a DNS name or an IP address), when it
    /// is not `mqtt.host` (e.g. connecting by address to a broker certified by name).
    /// Default none: `mqtt.host`.
    pub server_name: Option<String>,
}

/// Builds the client configuration for `mqtt.tls` (whether or not it is enabled) to the
/// broker at `mqtt_host` (`mqtt.host`).
pub fn client_config(tls: &MqttTlsSettings, mqtt_host: &str) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Some(ca_file) = &tls.ca_file else {
        return Err("mqtt.tls.ca_file: required when mqtt.tls.enabled = true \
                    (PEM file of the CA that signed the broker's certificate)"
            .into());
    };
    // Cheap checks first, so a config with several mistakes shows the simple ones.
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(_), None) => {
            return Err(
                "mqtt.tls.client_key_file: required with mqtt.tls.client_cert_file \
                        (both or neither)"
                    .into(),
            )
        }
        (None, Some(_)) => {
            return Err(
                "mqtt.tls.client_cert_file: required with mqtt.tls.client_key_file \
                        (both or neither)"
                    .into(),
            )
        }
        _ => {}
    }
    let host = tls.server_name.as_deref().unwrap_or(mqtt_host);
    let expected = ServerName::try_from(host.to_string()).map_err(|_| {
        let key = if tls.server_name.is_some() {
            "mqtt.tls.server_name"
        } else {
            "mqtt.host"
        };
        format!(
            "{key}: {host:?} is neither a DNS name nor an IP address, so no certificate can \
             match it"
        )
    })?;
    let mut roots = RootCertStore::empty();
    // A system bundle (`/etc/ssl/certs/ca-certificates.crt`) may hold a certificate webpki
    // cannot use as an anchor; skip those as every TLS client does, but not all of them.
    let (added, _skipped) =
        roots.add_parsable_certificates(read_certs("mqtt.tls.ca_file", ca_file)?);
    if added == 0 {
        return Err(format!(
            "mqtt.tls.ca_file: {} holds no certificate usable as a trust anchor",
            ca_file.display()
        ));
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("mqtt.tls: no TLS protocol version available: {e}"))?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| {
            format!(
                "mqtt.tls.ca_file: {} cannot verify servers: {e}",
                ca_file.display()
            )
        })?;
    // rumqttc passes mqtt.host to the verifier; only another name needs the wrapper.
    let verifier: Arc<dyn ServerCertVerifier> = match &tls.server_name {
        Some(name) if name != mqtt_host => Arc::new(ExpectName {
            inner: webpki,
            name: expected,
        }),
        _ => webpki,
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = read_certs("mqtt.tls.client_cert_file", cert_file)?;
            let key = read_key(key_file)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "mqtt.tls.client_key_file: {} does not fit the certificate in {}: {e}",
                    key_file.display(),
                    cert_file.display()
                )
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let why = |e: &dyn std::fmt::Display| format!("{key}: cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| why(&e))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| why(&e))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(why(&format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(bytes)
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let key = "mqtt.tls.client_key_file";
    let pem = read_pem(key, path)?;
    // The error text of pki-types never includes key material, only what was missing.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{key}: {} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        )
    })
}

/// The standard verifier, asked about `name` instead of the name rumqttc connected with.
#[derive(Debug)]
struct ExpectName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Words for a failed TLS or connection error that point at the likely fix, appended to the
/// error itself in the log (e.g. a broker that requires a client certificate).
pub fn hint(error_text: &str, has_client_cert: bool) -> Option<&'static str> {
    let e = error_text;
    if e.contains("CertificateRequired") || (!has_client_cert && e.contains("HandshakeFailure")) {
        return Some(
            "the broker requires a client certificate: set mqtt.tls.client_cert_file and \
             mqtt.tls.client_key_file",
        );
    }
    if e.contains("UnknownIssuer") {
        return Some("the broker's certificate does not chain to mqtt.tls.ca_file");
    }
    if e.contains("NotValidForName") {
        return Some(
            "the broker's certificate does not carry the name expected (mqtt.host, or \
             mqtt.tls.server_name when set)",
        );
    }
    if e.contains("UnknownCA") || e.contains("BadCertificate") || e.contains("DecryptError") {
        return Some(
            "the broker did not accept the client certificate (mqtt.tls.client_cert_file)",
        );
    }
    if e.contains("CorruptMessage") || e.contains("InvalidContentType") {
        return Some("the broker did not answer TLS: is mqtt.port its TLS port?");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `client_config` for a broker at the default `mqtt.host`.
    fn for_default_host(tls: MqttTlsSettings) -> Result<ClientConfig, String> {
        client_config(&tls, "127.0.0.1")
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = for_default_host(MqttTlsSettings {
            enabled: true,
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.starts_with("mqtt.tls.ca_file: required"), "{err}");

        let missing = dir.path().join("nope.pem");
        let err = for_default_host(MqttTlsSettings {
            enabled: true,
            ca_file: Some(missing.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.starts_with("mqtt.tls.ca_file: cannot read"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = for_default_host(MqttTlsSettings {
            enabled: true,
            ca_file: Some(junk.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.starts_with("mqtt.tls.ca_file:"), "{err}");
        assert!(err.contains("no PEM certificate"), "{err}");
        assert!(err.contains("junk.pem"), "{err}");
    }

    #[test]
    fn client_certificate_and_key_go_together() {
        let half = |cert: bool| MqttTlsSettings {
            enabled: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
            client_cert_file: cert.then(|| "/etc/c.pem".into()),
            client_key_file: (!cert).then(|| "/etc/k.pem".into()),
            ..Default::default()
        };
        let err = for_default_host(half(true)).unwrap_err();
        assert!(
            err.starts_with("mqtt.tls.client_key_file: required"),
            "{err}"
        );
        let err = for_default_host(half(false)).unwrap_err();
        assert!(
            err.starts_with("mqtt.tls.client_cert_file: required"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_server_name_names_its_key() {
        let mut tls = MqttTlsSettings {
            enabled: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
            server_name: Some("not a name!".into()),
            ..Default::default()
        };
        let err = client_config(&tls, "127.0.0.1").unwrap_err();
        assert!(err.starts_with("mqtt.tls.server_name:"), "{err}");
        tls.server_name = None;
        let err = client_config(&tls, "bad host!").unwrap_err();
        assert!(err.starts_with("mqtt.host:"), "{err}");
    }

    #[test]
    fn hints_point_at_the_fix() {
        let h = hint("I/O: received fatal alert: CertificateRequired", false).unwrap();
        assert!(h.contains("client_cert_file"), "{h}");
        let h = hint("invalid peer certificate: UnknownIssuer", false).unwrap();
        assert!(h.contains("ca_file"), "{h}");
        assert_eq!(hint("I/O: connection refused", false), None);
    }
}
