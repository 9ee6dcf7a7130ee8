//! The TLS part of the rendering input: what clients must do, the files pgpool reads, and
//! whether pgpool asks the backends for TLS.

use std::path::PathBuf;

use crate::contract::KEY_DIR;

/// File name of the server certificate (also the Secret key, as cert-manager writes it).
pub const TLS_CERT_FILE: &str = "tls.crt";
/// File name of the server private key.
pub const TLS_KEY_FILE: &str = "tls.key";
/// File name of the CA bundle (clients' CA and the backend's CA).
pub const TLS_CA_FILE: &str = "ca.crt";

/// What clients must do about TLS, from the Pgpool's `sslMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientTls {
    /// `disable`: plain text only (pgpool offers no TLS).
    #[default]
    Disabled,
    /// `allow`, `prefer`: TLS offered, plain text accepted.
    Optional,
    /// `require`, `verify-ca`, `verify-full`: TCP clients must use TLS (`hostssl` only).
    Required,
}

/// The files pgpool reads for TLS (in the pod: copied by the init container, mode 0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Server certificate (chain) pgpool presents to clients.
    pub cert: PathBuf,
    /// Its private key (pgpool does not check its mode; the pod keeps it 0600).
    pub key: PathBuf,
    /// CA bundle that verifies client certificates and the backends' certificates.
    pub ca: Option<PathBuf>,
}

impl Default for TlsFiles {
    /// The pod contract: the files in [`KEY_DIR`].
    fn default() -> Self {
        let dir = PathBuf::from(KEY_DIR);
        Self {
            cert: dir.join(TLS_CERT_FILE),
            key: dir.join(TLS_KEY_FILE),
            ca: Some(dir.join(TLS_CA_FILE)),
        }
    }
}

/// The TLS part of a [`RenderInput`](crate::RenderInput).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsInput {
    /// Client TLS policy; anything but [`ClientTls::Disabled`] needs `files`.
    pub clients: ClientTls,
    /// Server certificate, key and CA; `None` when pgpool has no certificate.
    pub files: Option<TlsFiles>,
    /// Ask the backends for TLS (the AppBinding's `sslmode` is not `disable`).
    pub backend: bool,
}

impl TlsInput {
    /// Whether pgpool's `ssl` switch is on.
    pub fn ssl_on(&self) -> bool {
        self.files.is_some() || self.backend
    }
}
