//! TLS with rustls: certificates loaded from PEM files, ALPN `http/1.1`,
//! and a per-executor handle that swaps in new certificates without a
//! restart.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("{path} holds no PEM private key")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate and key (mismatch, bad key, ...).
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds a server configuration from a PEM certificate chain and a PEM
/// private key, offering ALPN `http/1.1`.
///
/// The result is `Send`: build it once and hand it to every executor.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(cert_path)?;
    let key = read_key(key_path)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS acceptor of one executor; clones share it.
///
/// A reload replaces the configuration for connections accepted from
/// then on; connections already open keep theirs.
#[derive(Clone)]
pub struct TlsAcceptorHandle {
    current: Rc<RefCell<TlsAcceptor>>,
    files: Option<Rc<(PathBuf, PathBuf)>>,
}

impl TlsAcceptorHandle {
    /// Loads the certificate chain and key; [`Self::reload`] reads the
    /// same files again.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let config = server_config(cert_path, key_path)?;
        let mut handle = TlsAcceptorHandle::from_config(config);
        handle.files = Some(Rc::new((cert_path.to_path_buf(), key_path.to_path_buf())));
        Ok(handle)
    }

    /// A handle over a configuration built elsewhere.
    pub fn from_config(config: Arc<ServerConfig>) -> Self {
        TlsAcceptorHandle {
            current: Rc::new(RefCell::new(TlsAcceptor::from(config))),
            files: None,
        }
    }

    /// Reads the certificate and key files again and uses them for new
    /// connections. On error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let config = server_config(&files.0, &files.1)?;
        self.replace(config);
        Ok(())
    }

    /// Uses `config` for connections accepted from now on.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self.current.borrow_mut() = TlsAcceptor::from(config);
    }

    /// Runs the server side of the TLS handshake over `stream`.
    pub async fn accept<S>(&self, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = self.current.borrow().clone();
        acceptor.accept(stream).await
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = File::open(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file = File::open(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_path_buf(),
        })
}
