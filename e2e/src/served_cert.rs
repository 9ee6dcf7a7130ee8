//! The certificate a pgpool (or PostgreSQL) serves, as a client sees it: PostgreSQL's
//! `SSLRequest` on a TCP connection, then a TLS handshake that verifies the server against a
//! CA and a name (`verify-full`), and the leaf certificate the server presented. Blocking
//! (one short handshake); call it from `spawn_blocking` in async code.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::load::client_config;

/// PostgreSQL's `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The DER of the certificate served at `addr`, verified against `ca_pem` for `server_name`.
pub fn served_certificate(
    addr: SocketAddr,
    ca_pem: &[u8],
    server_name: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let config = Arc::new(client_config(ca_pem)?);
    let name = ServerName::try_from(server_name.to_string())
        .with_context(|| format!("{server_name} is not a server name"))?;
    let mut sock =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting {addr}"))?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    sock.write_all(&SSL_REQUEST).context("sending SSLRequest")?;
    let mut answer = [0u8; 1];
    sock.read_exact(&mut answer)
        .context("reading the SSLRequest answer")?;
    ensure!(
        answer[0] == b'S',
        "{addr} declined TLS (answered {:?})",
        answer[0] as char
    );
    let mut conn = rustls::ClientConnection::new(config, name).context("a TLS client")?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .with_context(|| format!("TLS handshake with {addr} as {server_name}"))?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .context("the server presented no certificate")?;
    Ok(leaf.to_vec())
}

/// The DER of the first certificate in `pem` (a Secret's `tls.crt`).
pub fn first_certificate(pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    let cert = CertificateDer::pem_slice_iter(pem)
        .next()
        .context("no certificate in the PEM")?
        .context("reading the certificate")?;
    Ok(cert.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    struct Issued {
        ca_pem: String,
        leaf_pem: String,
        server: Arc<rustls::ServerConfig>,
    }

    /// A CA and a leaf for `name` it signed, and a server configuration serving the leaf.
    fn issue(name: &str) -> Issued {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("leaf");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
            )
            .expect("server config");
        Issued {
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf.pem(),
            server: Arc::new(server),
        }
    }

    /// Serves one connection as PostgreSQL does: `S` to the SSLRequest, then TLS.
    fn serve_once(server: Arc<rustls::ServerConfig>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().expect("accept");
            let mut request = [0u8; 8];
            sock.read_exact(&mut request).expect("SSLRequest");
            assert_eq!(request, SSL_REQUEST);
            sock.write_all(b"S").expect("answer");
            let mut conn = rustls::ServerConnection::new(server).expect("server");
            while conn.is_handshaking() {
                if conn.complete_io(&mut sock).is_err() {
                    return;
                }
            }
        });
        addr
    }

    #[test]
    fn reads_the_served_leaf_and_verifies_name_and_ca() {
        let t = Duration::from_secs(5);
        let issued = issue("pp.demo.svc");
        let addr = serve_once(issued.server.clone());
        let served = served_certificate(addr, issued.ca_pem.as_bytes(), "pp.demo.svc", t)
            .expect("served certificate");
        assert_eq!(
            served,
            first_certificate(issued.leaf_pem.as_bytes()).expect("leaf")
        );
        // another name, or another CA: refused
        let addr = serve_once(issued.server.clone());
        assert!(served_certificate(addr, issued.ca_pem.as_bytes(), "other.demo.svc", t).is_err());
        let foreign = issue("pp.demo.svc");
        let addr = serve_once(issued.server.clone());
        assert!(served_certificate(addr, foreign.ca_pem.as_bytes(), "pp.demo.svc", t).is_err());
    }

    #[test]
    fn a_server_that_declines_tls_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().expect("accept");
            let mut request = [0u8; 8];
            sock.read_exact(&mut request).expect("SSLRequest");
            sock.write_all(b"N").expect("answer");
        });
        let ca = issue("pp.demo.svc").ca_pem;
        let err = served_certificate(addr, ca.as_bytes(), "pp.demo.svc", Duration::from_secs(5))
            .expect_err("declined");
        assert!(format!("{err:#}").contains("declined TLS"), "{err:#}");
    }
}
