//! TLS for the HTTP API and the cluster transport, on rustls with the ring
//! provider (the one reqwest already brings; rustls is built here with both
//! ring and, through ractor_cluster's tokio-rustls defaults, aws-lc-rs, so
//! every config names its provider instead of relying on a process default).
//!
//! - HTTPS: `tls_cert` / `tls_key` (PEM) serve the API; clients trust the
//!   issuing CA with `--ca FILE` or `$WARDEN_CA`.
//! - Cluster transport: the same certificate, and `tls_ca` (PEM) is the CA
//!   both sides of a session check: a node presents its certificate when it
//!   dials (mutual TLS), and the cookie handshake runs inside the session.
//! - `generate` makes a throwaway CA and one certificate per node (rcgen), for
//!   `warden up --tls` and tests.

use anyhow::{bail, Context};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Environment variable naming the CA file clients trust (`--ca`).
pub const CA_ENV: &str = "WARDEN_CA";
/// How long certificates made by `generate` stay valid.
pub const GENERATED_VALIDITY: time::Duration = time::Duration::days(30);

/// The node config's TLS files (paths already resolved against the config file).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs the cluster peers' certificates.
    pub ca: Option<PathBuf>,
}

/// What a node serves TLS with, built once at start (so a bad file stops
/// the start, with its name).
#[derive(Clone)]
pub struct NodeTls {
    pub http: TlsAcceptor,
    /// Set when the node has a `tls_ca`: its cluster transport runs TLS.
    pub cluster: Option<ClusterTls>,
}

/// Both ends of the cluster transport's TLS.
#[derive(Clone)]
pub struct ClusterTls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls")
    }
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").field("cluster", &self.cluster.is_some()).finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (a chain: the node's first).
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("no private key readable in {}", path.display()))
}

/// The certificates of a CA file as trust roots.
pub fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).with_context(|| format!("{} holds a certificate that is not a usable CA", path.display()))?;
    }
    Ok(roots)
}

impl TlsFiles {
    /// Reads and checks the files: the HTTPS acceptor, and the cluster's
    /// acceptor and connector when `ca` is set.
    pub fn load(&self) -> anyhow::Result<NodeTls> {
        let certs = load_certs(&self.cert)?;
        let key = load_key(&self.key)?;
        let mut http = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .with_context(|| format!("{} and {} do not make a usable pair", self.cert.display(), self.key.display()))?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cluster = match &self.ca {
            None => None,
            Some(ca) => Some(cluster_tls(certs, key, Arc::new(load_roots(ca)?))?),
        };
        Ok(NodeTls { http: TlsAcceptor::from(Arc::new(http)), cluster })
    }
}

/// Mutual TLS for the cluster transport: each side shows a certificate signed by `roots`.
fn cluster_tls(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
) -> anyhow::Result<ClusterTls> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .context("cannot verify peers with tls_ca")?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    Ok(ClusterTls { acceptor: TlsAcceptor::from(Arc::new(server)), connector: TlsConnector::from(Arc::new(client)) })
}

/// The name a dialled peer's certificate must carry: the address dialled.
pub fn server_name(addr: std::net::SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

/// The certificates of `ca` for a reqwest client.
pub fn reqwest_roots(ca: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(ca).with_context(|| format!("cannot read the CA file {}", ca.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("bad PEM in {}", ca.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", ca.display());
    }
    Ok(certs)
}

/// What `generate` wrote.
#[derive(Clone, Debug)]
pub struct Generated {
    pub ca: PathBuf,
    /// Per node, in the order given: its files.
    pub nodes: Vec<TlsFiles>,
}

/// A throwaway CA and one certificate per node under `dir` (`ca.crt`,
/// `<name>.crt`, `<name>.key`; the CA's key is not kept). Each node
/// certificate names `127.0.0.1`, `::1` and `localhost`, serves and dials
/// (server and client auth), and is valid for `GENERATED_VALIDITY`.
pub fn generate(dir: &Path, names: &[String]) -> anyhow::Result<Generated> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    use rcgen::{KeyUsagePurpose, SanType};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let now = time::OffsetDateTime::now_utc();
    let (not_before, not_after) = (now - time::Duration::hours(1), now + GENERATED_VALIDITY);
    let mut ca = CertificateParams::new(Vec::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "warden local CA (throwaway)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca_cert.pem()).with_context(|| format!("cannot write {}", ca_path.display()))?;
    let mut nodes = Vec::new();
    for name in names {
        let mut p = CertificateParams::new(vec!["localhost".to_owned()])?;
        p.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
        p.subject_alt_names.push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        p.distinguished_name.push(DnType::CommonName, format!("warden node {name}"));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        (p.not_before, p.not_after) = (not_before, not_after);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            ca: Some(ca_path.clone()),
        };
        std::fs::write(&files.cert, cert.pem()).with_context(|| format!("cannot write {}", files.cert.display()))?;
        crate::auth::write_private(&files.key, &key.serialize_pem())?;
        nodes.push(files);
    }
    Ok(Generated { ca: ca_path, nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_load_as_a_node_with_cluster_tls() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(dir.path(), &["a".into(), "b".into()]).unwrap();
        assert_eq!(g.nodes.len(), 2);
        for files in &g.nodes {
            let tls = files.load().unwrap();
            assert!(tls.cluster.is_some(), "tls_ca set: the cluster transport runs TLS");
        }
        assert_eq!(reqwest_roots(&g.ca).unwrap().len(), 1);
        let http_only = TlsFiles { ca: None, ..g.nodes[0].clone() };
        assert!(http_only.load().unwrap().cluster.is_none());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(dir.path(), &["a".into(), "b".into()]).unwrap();
        let mixed = TlsFiles { key: g.nodes[1].key.clone(), ..g.nodes[0].clone() };
        let err = format!("{:#}", mixed.load().unwrap_err());
        assert!(err.contains("usable pair"), "{err}");
        let err = format!("{:#}", TlsFiles { cert: g.ca.join("missing"), ..g.nodes[0].clone() }.load().unwrap_err());
        assert!(err.contains("cannot read"), "{err}");
    }
}
