//! The load client over TLS (`sslmode=verify-full`): rustls on its ring backend, trusting
//! only the Pgpool's CA. The TCP connection goes to an address (the Service's ClusterIP) while
//! the certificate is checked against a host name it must carry (the Service's DNS name), as
//! libpq does with `host` and `hostaddr`.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, ensure};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the load client verifies the server: the CA it trusts and the name the server's
/// certificate must carry.
#[derive(Clone)]
pub struct LoadTls {
    /// Checked against the certificate's names (`verify-full`).
    pub server_name: String,
    connector: MakeRustlsConnect,
}

/// A rustls client configuration (ring) that trusts the PEM certificates in `ca_pem` only.
pub fn client_config(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.context("reading a CA certificate")?)
            .context("adding a CA certificate")?;
    }
    ensure!(!roots.is_empty(), "no CA certificate in the PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl std::fmt::Debug for LoadTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl LoadTls {
    /// Trusts the PEM certificates in `ca_pem` (the `tls.crt` of the `<name>-ca` Secret, or a
    /// `ca.crt`) and nothing else; the server's certificate must name `server_name`.
    pub fn verify_full(ca_pem: &[u8], server_name: &str) -> anyhow::Result<LoadTls> {
        let config = client_config(ca_pem)?;
        Ok(LoadTls {
            server_name: server_name.to_string(),
            connector: MakeRustlsConnect::new(config),
        })
    }

    /// tokio-postgres' TLS connector.
    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// `config` to reach `host` (an IP address) over TLS only, verifying [`Self::server_name`].
    pub fn apply(&self, config: &mut tokio_postgres::Config, host: &str) -> anyhow::Result<()> {
        let addr: IpAddr = host
            .parse()
            .with_context(|| format!("{host} is not an IP address: TLS needs hostaddr"))?;
        config
            .host(&self.server_name)
            .hostaddr(addr)
            .ssl_mode(tokio_postgres::config::SslMode::Require);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway self-signed CA certificate, made with the provisioner's generator.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("self-signed").pem()
    }

    #[test]
    fn a_pem_without_a_certificate_is_refused() {
        assert!(LoadTls::verify_full(b"", "pp.demo.svc").is_err());
        assert!(LoadTls::verify_full(b"not a pem", "pp.demo.svc").is_err());
    }

    #[test]
    fn the_name_is_verified_and_the_address_dialled() {
        let tls = LoadTls::verify_full(ca_pem().as_bytes(), "pp.demo.svc").expect("a CA");
        let mut config = tokio_postgres::Config::new();
        tls.apply(&mut config, "10.96.0.30").expect("an IP address");
        assert_eq!(
            config.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("pp.demo.svc".into())]
        );
        assert_eq!(
            config.get_hostaddrs(),
            &["10.96.0.30".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        // the Service's DNS name cannot be dialled from the host: an address is needed
        assert!(
            tls.apply(&mut tokio_postgres::Config::new(), "pp.demo.svc")
                .is_err()
        );
    }

    #[test]
    fn the_debug_output_names_only_the_server() {
        let tls = LoadTls::verify_full(ca_pem().as_bytes(), "pp.demo.svc").expect("a CA");
        let text = format!("{tls:?}");
        assert!(text.contains("pp.demo.svc"), "{text}");
        assert!(!text.contains("BEGIN"), "{text}");
    }
}
