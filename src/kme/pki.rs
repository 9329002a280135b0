//! A throw-away PKI (rcgen): one CA and leaf certificates whose subject CN is the KME or SAE
//! ID, valid for TLS server and client use on localhost, 127.0.0.1 and ::1. For tests and
//! first steps only: a deployment uses its own PKI.

use crate::error::{ConfigError, Error, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

fn pki_err(e: rcgen::Error) -> Error {
    ConfigError::Mismatch(format!("certificate generation: {e}")).into()
}

fn write(path: &Path, text: &str, secret: bool, force: bool) -> Result<()> {
    let mut f = crate::io::AtomicFile::create(path, force, secret)?;
    f.write_all(text.as_bytes())?;
    f.commit()?;
    Ok(())
}

/// What `create` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The leaf certificates (NAME.crt) with their keys (NAME.key, mode 0600).
    pub leaves: Vec<(String, PathBuf, PathBuf)>,
}

/// Create `dir/ca.crt` (and `ca.key`) and, for each name, `dir/NAME.crt` and `dir/NAME.key`.
pub fn create(dir: &Path, names: &[String], ca_name: &str, force: bool) -> Result<Pki> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for n in names {
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::invalid(
                "name",
                format!(
                    "`{n}`: use letters, digits, - _ . (it becomes a file name and the subject CN)"
                ),
            )
            .into());
        }
    }
    let ca_key = KeyPair::generate().map_err(pki_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(pki_err)?;
    let ca_path = dir.join("ca.crt");
    write(&ca_path, &ca_cert.pem(), false, force)?;
    write(&dir.join("ca.key"), &ca_key.serialize_pem(), true, force)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaves = Vec::new();
    for n in names {
        let key = KeyPair::generate().map_err(pki_err)?;
        let mut p =
            CertificateParams::new(vec![n.clone(), "localhost".to_string()]).map_err(pki_err)?;
        p.distinguished_name.push(DnType::CommonName, n.as_str());
        for ip in ["127.0.0.1", "::1"] {
            p.subject_alt_names
                .push(SanType::IpAddress(ip.parse().expect("an IP address")));
        }
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = p.signed_by(&key, &issuer).map_err(pki_err)?;
        let (c, k) = (dir.join(format!("{n}.crt")), dir.join(format!("{n}.key")));
        write(&c, &cert.pem(), false, force)?;
        write(&k, &key.serialize_pem(), true, force)?;
        leaves.push((n.clone(), c, k));
    }
    Ok(Pki {
        ca: ca_path,
        leaves,
    })
}
