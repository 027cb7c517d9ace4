//! Signed Apple profiles: a `.mobileconfig` wrapped in CMS SignedData (RFC 5652) with the
//! organisation's certificate, which iOS and macOS show as "Verified" when that certificate
//! chains to a root the device trusts.
//!
//! The result is what `openssl smime -sign -nodetach -outform der` writes: the profile attached
//! as id-data, one signer named by issuer and serial number, SHA-256, a signing-time attribute,
//! and the signer's certificate with its intermediates, so the device builds the chain without
//! fetching anything. Keys are ECDSA P-256 or RSA of 2048 bits and more.
//!
//! RSA arithmetic in the `rsa` crate is not constant-time (the Marvin attack, RUSTSEC-2023-0071).
//! heimweg signs RSA with blinding, and only offline, when an administrator exports profiles,
//! so nobody gets to time many signatures. P-256 keys have no such concern, and are preferred.

use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::asn1::{GeneralizedTime, SetOfVec, UtcTime};
use der::oid::db::{rfc5280, rfc5911, rfc5912, DB};
use der::oid::ObjectIdentifier;
use der::{Any, AnyRef, DateTime, Decode, Encode, Tag};
use p256::ecdsa::signature::{Keypair, RandomizedSigner, Signer};
use rand_core::OsRng;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use sha2::Sha256;
use spki::{
    AlgorithmIdentifierOwned, AlgorithmIdentifierRef, DecodePublicKey,
    DynSignatureAlgorithmIdentifier, SignatureAlgorithmIdentifier, SignatureBitStringEncoding,
};
use std::fmt;
use std::time::Duration;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::KeyUsage;
use x509_cert::time::Time;
use x509_cert::Certificate;

/// The smallest RSA modulus heimweg signs with: shorter keys are within reach of breaking, and
/// no public CA has issued them for years.
const MIN_RSA_BITS: usize = 2048;

/// Why a signing identity cannot be used or a profile cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("no certificate: give the organisation's certificate as a PEM CERTIFICATE block, followed by any intermediate certificates")]
    NoCertificate,
    #[error("certificate {position} of the chain cannot be read: {reason}")]
    BadCertificate { position: usize, reason: String },
    #[error("no private key: give a PEM \"PRIVATE KEY\" (PKCS#8) or \"EC PRIVATE KEY\" block")]
    NoKey,
    #[error(
        "there is more than one private key; give only the one that belongs to the certificate"
    )]
    SeveralKeys,
    #[error("the private key is encrypted; store it decrypted, e.g. with `openssl pkey -in KEY -out PLAIN-KEY`")]
    EncryptedKey,
    #[error("the private key cannot be read: {0}")]
    BadKey(String),
    #[error("unsupported key ({0}); heimweg signs with ECDSA P-256 keys or RSA keys of {MIN_RSA_BITS} bits or more")]
    UnsupportedKey(String),
    #[error("the private key does not belong to the certificate {subject}")]
    KeyMismatch { subject: String },
    #[error("the certificate {subject} expired at {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("the certificate {subject} is valid only from {not_before}; check the clock")]
    NotYetValid { subject: String, not_before: String },
    #[error("the certificate {subject} does not allow digital signatures (its key usage lacks digitalSignature)")]
    NoDigitalSignature { subject: String },
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("the time {0} (Unix seconds) is outside the years 1970 to 9999 a signature can carry")]
    BadTime(i64),
    #[error("the signed profile cannot be built: {0}")]
    Build(String),
}

/// An organisation's signing identity: its certificate chain (leaf first) and private key.
pub struct ProfileSigner {
    leaf: Certificate,
    intermediates: Vec<Certificate>,
    key: SigningKey,
}

impl fmt::Debug for ProfileSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileSigner")
            .field("subject", &self.subject())
            .field("intermediates", &self.intermediates.len())
            .field("key", &format_args!("{} [redacted]", self.key.kind()))
            .finish()
    }
}

impl ProfileSigner {
    /// From PEM text: one or more CERTIFICATE blocks (leaf first, then intermediates) and a
    /// PKCS#8 "PRIVATE KEY" (or SEC1 "EC PRIVATE KEY", or PKCS#1 "RSA PRIVATE KEY") block.
    /// Blocks of other kinds are skipped, so one file holding both may be given for both.
    /// Refuses a key that does not belong to the leaf, and a leaf that is not valid at
    /// `now_unix` or may not sign: a profile signed with it would install as "Not Verified".
    pub fn from_pem(
        chain_pem: &str,
        key_pem: &str,
        now_unix: i64,
    ) -> Result<ProfileSigner, SigningError> {
        let mut chain = parse_certificates(chain_pem)?.into_iter();
        let leaf = chain.next().ok_or(SigningError::NoCertificate)?;
        let key = parse_key(key_pem)?;
        if !key.belongs_to(&leaf) {
            return Err(SigningError::KeyMismatch {
                subject: subject_of(&leaf),
            });
        }
        check_valid_at(&leaf, now_unix)?;
        check_may_sign(&leaf)?;
        Ok(ProfileSigner {
            leaf,
            intermediates: chain.collect(),
            key,
        })
    }

    /// The leaf certificate's subject, for messages ("signed as CN=…").
    pub fn subject(&self) -> String {
        subject_of(&self.leaf)
    }

    /// The profile wrapped in CMS SignedData (DER), content attached. The leaf must still be
    /// valid at `now_unix`, which also becomes the signing time.
    pub fn sign(&self, profile: &[u8], now_unix: i64) -> Result<Vec<u8>, SigningError> {
        check_valid_at(&self.leaf, now_unix)?;
        let signing_time = signing_time_attribute(now_unix)?;
        // The eContent is the OCTET STRING holding the profile itself, nothing wrapped twice:
        // the message digest covers its value, and the device reads the plist from it.
        let content = EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: Some(Any::new(Tag::OctetString, profile).map_err(build_error)?),
        };
        let digest = AlgorithmIdentifierOwned {
            oid: rfc5912::ID_SHA_256,
            parameters: None,
        };
        let mut data = SignedDataBuilder::new(&content);
        data.add_digest_algorithm(digest.clone())
            .map_err(build_error)?;
        for cert in std::iter::once(&self.leaf).chain(&self.intermediates) {
            data.add_certificate(CertificateChoices::Certificate(cert.clone()))
                .map_err(build_error)?;
        }
        let signer = SignerParts {
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: self.leaf.tbs_certificate.issuer.clone(),
                serial_number: self.leaf.tbs_certificate.serial_number.clone(),
            }),
            digest,
            content: &content,
            signing_time,
        };
        match &self.key {
            SigningKey::P256(key) => signer.add_to::<_, p256::ecdsa::DerSignature>(&mut data, key),
            SigningKey::Rsa(key) => {
                signer.add_to::<_, rsa::pkcs1v15::Signature>(&mut data, key.as_ref())
            }
        }?;
        data.build()
            .map_err(build_error)?
            .to_der()
            .map_err(build_error)
    }
}

/// What the one SignerInfo is made of, apart from the key.
struct SignerParts<'a> {
    sid: SignerIdentifier,
    digest: AlgorithmIdentifierOwned,
    content: &'a EncapsulatedContentInfo,
    signing_time: Attribute,
}

impl<'a> SignerParts<'a> {
    /// Signs with `key` and adds the SignerInfo; the builder adds the content-type and
    /// message-digest attributes itself.
    fn add_to<S, Sig>(self, data: &mut SignedDataBuilder<'_>, key: &S) -> Result<(), SigningError>
    where
        S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
        Sig: SignatureBitStringEncoding,
    {
        let mut info = SignerInfoBuilder::new(key, self.sid, self.digest, self.content, None)
            .map_err(build_error)?;
        info.add_signed_attribute(self.signing_time)
            .map_err(build_error)?;
        data.add_signer_info::<S, Sig>(info).map_err(build_error)?;
        Ok(())
    }
}

fn build_error(e: impl fmt::Display) -> SigningError {
    SigningError::Build(e.to_string())
}

/// The signing-time attribute (RFC 5652 § 11.3): UTCTime up to 2049, GeneralizedTime after.
/// The builder adds none; OpenSSL adds one, and so does heimweg, from the caller's clock.
fn signing_time_attribute(now_unix: i64) -> Result<Attribute, SigningError> {
    let at = u64::try_from(now_unix)
        .ok()
        .and_then(|secs| DateTime::from_unix_duration(Duration::from_secs(secs)).ok())
        .ok_or(SigningError::BadTime(now_unix))?;
    let time = if at.year() < 2050 {
        Time::UtcTime(UtcTime::from_date_time(at).map_err(build_error)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_date_time(at))
    };
    let mut values = SetOfVec::new();
    values
        .insert(Any::encode_from(&time).map_err(build_error)?)
        .map_err(build_error)?;
    Ok(Attribute {
        oid: rfc5911::ID_SIGNING_TIME,
        values,
    })
}

fn subject_of(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

fn unix_seconds(time: Time) -> i64 {
    i64::try_from(time.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// Refuses a certificate outside its validity at `now_unix` (both ends inclusive, RFC 5280).
fn check_valid_at(cert: &Certificate, now_unix: i64) -> Result<(), SigningError> {
    let validity = &cert.tbs_certificate.validity;
    if now_unix > unix_seconds(validity.not_after) {
        return Err(SigningError::Expired {
            subject: subject_of(cert),
            not_after: validity.not_after.to_string(),
        });
    }
    if now_unix < unix_seconds(validity.not_before) {
        return Err(SigningError::NotYetValid {
            subject: subject_of(cert),
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// Refuses a certificate whose key usage leaves out digitalSignature: devices reject its
/// signatures. A certificate without the extension may sign anything.
fn check_may_sign(cert: &Certificate) -> Result<(), SigningError> {
    let extensions = cert.tbs_certificate.extensions.iter().flatten();
    for ext in extensions.filter(|e| e.extn_id == rfc5280::ID_CE_KEY_USAGE) {
        let usage = KeyUsage::from_der(ext.extn_value.as_bytes()).map_err(|e| {
            SigningError::BadCertificate {
                position: 1,
                reason: format!("its key usage: {e}"),
            }
        })?;
        if !usage.digital_signature() {
            return Err(SigningError::NoDigitalSignature {
                subject: subject_of(cert),
            });
        }
    }
    Ok(())
}

/// The CERTIFICATE blocks of `pem` in order, a certificate given twice kept once (CMS holds a
/// set of them, and a repeated one would make it invalid).
fn parse_certificates(pem: &str) -> Result<Vec<Certificate>, SigningError> {
    let mut certs: Vec<Certificate> = Vec::new();
    let blocks = pem_blocks(pem)?.into_iter();
    for (position, (_, der)) in blocks
        .filter(|(label, _)| label == "CERTIFICATE")
        .enumerate()
    {
        let cert = Certificate::from_der(&der).map_err(|e| SigningError::BadCertificate {
            position: position + 1,
            reason: e.to_string(),
        })?;
        if !certs.contains(&cert) {
            certs.push(cert);
        }
    }
    Ok(certs)
}

/// The PEM blocks of `text` as (label, DER), whatever lies between them skipped (OpenSSL's
/// "Bag Attributes", the text dump of `openssl x509 -text`).
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, SigningError> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = rest.get(start..).unwrap_or_default();
        let after = block.get(BEGIN.len()..).unwrap_or_default();
        let label = after
            .find("-----")
            .and_then(|end| after.get(..end))
            .filter(|label| !label.contains('\n'))
            .ok_or_else(|| SigningError::Pem("a BEGIN line without its closing dashes".into()))?;
        let end_line = format!("-----END {label}-----");
        let end = block
            .find(&end_line)
            .map(|at| at + end_line.len())
            .ok_or_else(|| SigningError::Pem(format!("the {label} block has no END line")))?;
        let body = block.get(..end).unwrap_or_default();
        // The legacy OpenSSL encryption of "RSA/EC PRIVATE KEY" blocks, in PEM headers.
        if body.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(SigningError::EncryptedKey);
        }
        let (_, der) = der::pem::decode_vec(body.as_bytes())
            .map_err(|e| SigningError::Pem(format!("the {label} block: {e}")))?;
        blocks.push((label.to_owned(), der));
        rest = block.get(end..).unwrap_or_default();
    }
    Ok(blocks)
}

/// A key heimweg can sign with.
enum SigningKey {
    P256(p256::ecdsa::SigningKey),
    Rsa(Box<BlindedRsa>),
}

impl SigningKey {
    fn kind(&self) -> String {
        match self {
            SigningKey::P256(_) => "ECDSA P-256".to_owned(),
            SigningKey::Rsa(key) => format!("RSA {} bits", key.public.n().bits()),
        }
    }

    /// Whether the certificate carries this key's public half.
    fn belongs_to(&self, cert: &Certificate) -> bool {
        let Ok(spki) = cert.tbs_certificate.subject_public_key_info.to_der() else {
            return false;
        };
        match self {
            SigningKey::P256(key) => p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
                .is_ok_and(|public| &public == key.verifying_key()),
            SigningKey::Rsa(key) => rsa::RsaPublicKey::from_public_key_der(&spki)
                .is_ok_and(|public| public == key.public),
        }
    }
}

/// The one private key among the PEM blocks of `pem`.
fn parse_key(pem: &str) -> Result<SigningKey, SigningError> {
    let mut keys = pem_blocks(pem)?
        .into_iter()
        .filter(|(label, _)| label.ends_with("PRIVATE KEY"));
    let (label, der) = keys.next().ok_or(SigningError::NoKey)?;
    if keys.next().is_some() {
        return Err(SigningError::SeveralKeys);
    }
    match label.as_str() {
        "PRIVATE KEY" => key_from_pkcs8(&der),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
            .map(|secret| SigningKey::P256(secret.into()))
            .map_err(|_| {
                SigningError::UnsupportedKey(
                    "an EC key not on the curve P-256, or a damaged one".into(),
                )
            }),
        "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&der)
            .map_err(|e| SigningError::BadKey(e.to_string()))
            .and_then(rsa_key),
        "ENCRYPTED PRIVATE KEY" => Err(SigningError::EncryptedKey),
        other => Err(SigningError::UnsupportedKey(format!("a {other:?} block"))),
    }
}

fn key_from_pkcs8(der: &[u8]) -> Result<SigningKey, SigningError> {
    let info = p256::pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| SigningError::BadKey(e.to_string()))?;
    let algorithm = info.algorithm.oid;
    if algorithm == rfc5912::ID_EC_PUBLIC_KEY {
        let curve = info.algorithm.parameters_oid().ok();
        if curve != Some(rfc5912::SECP_256_R_1) {
            let curve = curve.map_or_else(|| "an unnamed curve".to_owned(), oid_name);
            return Err(SigningError::UnsupportedKey(format!(
                "an EC key on {curve}"
            )));
        }
        p256::ecdsa::SigningKey::try_from(info)
            .map(SigningKey::P256)
            .map_err(|e| SigningError::BadKey(e.to_string()))
    } else if algorithm == rfc5912::RSA_ENCRYPTION {
        rsa::RsaPrivateKey::try_from(info)
            .map_err(|e| SigningError::BadKey(e.to_string()))
            .and_then(rsa_key)
    } else {
        Err(SigningError::UnsupportedKey(format!(
            "a {} key",
            oid_name(algorithm)
        )))
    }
}

fn oid_name(oid: ObjectIdentifier) -> String {
    match DB.by_oid(&oid) {
        Some(name) => format!("{name} ({oid})"),
        None => oid.to_string(),
    }
}

fn rsa_key(key: rsa::RsaPrivateKey) -> Result<SigningKey, SigningError> {
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(SigningError::UnsupportedKey(format!(
            "an RSA key of {bits} bits"
        )));
    }
    let public = key.to_public_key();
    Ok(SigningKey::Rsa(Box::new(BlindedRsa {
        key: rsa::pkcs1v15::SigningKey::new(key),
        public,
    })))
}

/// An RSA key (PKCS#1 v1.5, SHA-256) that blinds every signature with fresh randomness: the
/// `rsa` crate's plain `Signer` does not, and its arithmetic is not constant-time.
struct BlindedRsa {
    key: rsa::pkcs1v15::SigningKey<Sha256>,
    public: rsa::RsaPublicKey,
}

impl Keypair for BlindedRsa {
    type VerifyingKey = rsa::pkcs1v15::VerifyingKey<Sha256>;

    fn verifying_key(&self) -> Self::VerifyingKey {
        self.key.verifying_key()
    }
}

impl SignatureAlgorithmIdentifier for BlindedRsa {
    type Params = AnyRef<'static>;

    const SIGNATURE_ALGORITHM_IDENTIFIER: AlgorithmIdentifierRef<'static> =
        rsa::pkcs1v15::SigningKey::<Sha256>::SIGNATURE_ALGORITHM_IDENTIFIER;
}

impl Signer<rsa::pkcs1v15::Signature> for BlindedRsa {
    fn try_sign(&self, msg: &[u8]) -> Result<rsa::pkcs1v15::Signature, p256::ecdsa::Error> {
        self.key.try_sign_with_rng(&mut OsRng, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cms::content_info::ContentInfo;
    use cms::signed_data::SignedData;
    use der::Tagged;
    use p256::pkcs8::DecodePrivateKey;
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    const PLIST: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict><key>PayloadType</key><string>Configuration</string></dict></plist>\n";

    const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[encipher_only]
basicConstraints = CA:FALSE
keyUsage = critical,keyEncipherment
extendedKeyUsage = emailProtection
";

    fn now() -> i64 {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        i64::try_from(secs.as_secs()).unwrap()
    }

    /// A directory of its own under the system's temp directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("heimweg-signing-{}-{test}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG).unwrap();
            Scratch(dir)
        }

        fn read(&self, file: &str) -> String {
            std::fs::read_to_string(self.0.join(file)).unwrap()
        }

        /// Runs openssl in the directory; Err carries its stderr.
        fn try_openssl(&self, args: &[&str]) -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&self.0)
                .env("OPENSSL_CONF", self.0.join("openssl.cnf"))
                .output()
                .unwrap();
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        }

        fn openssl(&self, args: &[&str]) {
            if let Err(e) = self.try_openssl(args) {
                panic!("openssl {args:?} failed: {e}");
            }
        }

        /// Runs `openssl` with the words of `line` as its arguments.
        fn run(&self, line: &str) {
            self.openssl(&line.split_whitespace().collect::<Vec<_>>());
        }

        /// `NAME.key` of a kind: "ec" (P-256, PKCS#8), "sec1" (P-256, "EC PRIVATE KEY"),
        /// "p384", "sec1-p384", "rsa" (2048 bits), "ed25519".
        fn key(&self, name: &str, kind: &str) {
            let how = match kind {
                "ec" => "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256",
                "sec1" => "ecparam -name prime256v1 -genkey -noout",
                "p384" => "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384",
                "sec1-p384" => "ecparam -name secp384r1 -genkey -noout",
                "rsa" => "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048",
                "ed25519" => "genpkey -algorithm ed25519",
                _ => panic!("unknown key kind {kind}"),
            };
            self.run(&format!("{how} -out {name}.key"));
        }

        /// A self-signed root `NAME.pem` with a P-256 key `NAME.key`, valid for two days.
        fn root(&self, name: &str) {
            self.key(name, "ec");
            self.run(&format!(
                "req -x509 -new -key {name}.key -subj /CN=heimweg-test-{name} -days 2 \
                 -extensions ca -out {name}.pem"
            ));
        }

        /// `NAME.pem` for the existing key `NAME.key`, issued by `issuer` with the extensions
        /// of config section `section`, valid for `days`.
        fn issue(&self, name: &str, issuer: &str, section: &str, days: u32) {
            static SERIAL: AtomicU32 = AtomicU32::new(1000);
            let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
            let subj = format!("/O=Example/CN=heimweg-test-{name}");
            self.run(&format!(
                "req -new -key {name}.key -subj {subj} -out {name}.csr"
            ));
            self.run(&format!(
                "x509 -req -in {name}.csr -CA {issuer}.pem -CAkey {issuer}.key \
                 -set_serial {serial} -days {days} -extfile openssl.cnf -extensions {section} \
                 -out {name}.pem"
            ));
        }

        /// Verifies `signed` against the root `ca` with `openssl TOOL -verify` (cms or smime),
        /// returning the content it extracted.
        fn verify(&self, tool: &str, signed: &[u8], ca: &str) -> Result<Vec<u8>, String> {
            std::fs::write(self.0.join("signed.der"), signed).unwrap();
            let _ = std::fs::remove_file(self.0.join("content.out"));
            let line = format!(
                "{tool} -verify -inform DER -in signed.der -CAfile {ca}.pem -purpose any \
                 -out content.out"
            );
            self.try_openssl(&line.split_whitespace().collect::<Vec<_>>())?;
            Ok(std::fs::read(self.0.join("content.out")).unwrap())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A root "ca" and a leaf "leaf" of key kind `kind` issued by it.
    fn root_and_leaf(test: &str, kind: &str) -> Scratch {
        let s = Scratch::new(test);
        s.root("ca");
        s.key("leaf", kind);
        s.issue("leaf", "ca", "leaf", 2);
        s
    }

    fn assert_verifies(s: &Scratch, signed: &[u8], ca: &str) {
        for tool in ["cms", "smime"] {
            match s.verify(tool, signed, ca) {
                Ok(content) => assert_eq!(content, PLIST.as_bytes(), "content from {tool}"),
                Err(e) => panic!("openssl {tool} -verify refused the signature: {e}"),
            }
        }
    }

    fn signed_data(signed: &[u8]) -> SignedData {
        let info = ContentInfo::from_der(signed).unwrap();
        assert_eq!(info.content_type, rfc5911::ID_SIGNED_DATA);
        SignedData::from_der(&info.content.to_der().unwrap()).unwrap()
    }

    #[test]
    fn p256_signature_verifies_with_openssl() {
        let s = root_and_leaf("p256", "ec");
        let signer =
            ProfileSigner::from_pem(&s.read("leaf.pem"), &s.read("leaf.key"), now()).unwrap();
        assert_eq!(signer.subject(), "CN=heimweg-test-leaf,O=Example");
        let signed = signer.sign(PLIST.as_bytes(), now()).unwrap();
        assert_verifies(&s, &signed, "ca");
    }

    #[test]
    fn rsa_signature_verifies_with_openssl() {
        let s = root_and_leaf("rsa", "rsa");
        let signer =
            ProfileSigner::from_pem(&s.read("leaf.pem"), &s.read("leaf.key"), now()).unwrap();
        assert!(format!("{signer:?}").contains("RSA 2048 bits"));
        let signed = signer.sign(PLIST.as_bytes(), now()).unwrap();
        assert_verifies(&s, &signed, "ca");
        // The PKCS#1 form of the same key is read as well.
        s.run("pkey -in leaf.key -traditional -out leaf-pkcs1.key");
        assert!(s.read("leaf-pkcs1.key").contains("BEGIN RSA PRIVATE KEY"));
        ProfileSigner::from_pem(&s.read("leaf.pem"), &s.read("leaf-pkcs1.key"), now()).unwrap();
    }

    #[test]
    fn intermediates_travel_with_the_signature() {
        let s = Scratch::new("intermediate");
        s.root("ca");
        s.key("intermediate", "ec");
        s.issue("intermediate", "ca", "ca", 2);
        s.key("leaf", "sec1");
        s.issue("leaf", "intermediate", "leaf", 2);
        let chain = s.read("leaf.pem") + &s.read("intermediate.pem");
        let key = s.read("leaf.key");
        assert!(key.contains("BEGIN EC PRIVATE KEY"));
        let signer = ProfileSigner::from_pem(&chain, &key, now()).unwrap();
        let at = now();
        let signed = signer.sign(PLIST.as_bytes(), at).unwrap();
        // Only the root is trusted: the intermediate must come from the SignedData.
        assert_verifies(&s, &signed, "ca");

        let data = signed_data(&signed);
        assert_eq!(data.encap_content_info.econtent_type, rfc5911::ID_DATA);
        let econtent = data.encap_content_info.econtent.unwrap();
        assert_eq!(econtent.tag(), Tag::OctetString);
        assert_eq!(econtent.value(), PLIST.as_bytes());
        assert_eq!(data.certificates.unwrap().0.len(), 2);
        let signer_info = data.signer_infos.0.get(0).unwrap();
        let attrs = signer_info.signed_attrs.as_ref().unwrap();
        let time = attrs
            .iter()
            .find(|a| a.oid == rfc5911::ID_SIGNING_TIME)
            .unwrap();
        let time = Time::from_der(&time.values.get(0).unwrap().to_der().unwrap()).unwrap();
        assert!(matches!(time, Time::UtcTime(_)));
        assert_eq!(unix_seconds(time), at);
    }

    #[test]
    fn another_root_does_not_verify() {
        let s = root_and_leaf("other-root", "ec");
        s.root("other");
        let signer =
            ProfileSigner::from_pem(&s.read("leaf.pem"), &s.read("leaf.key"), now()).unwrap();
        let signed = signer.sign(PLIST.as_bytes(), now()).unwrap();
        for tool in ["cms", "smime"] {
            assert!(
                s.verify(tool, &signed, "other").is_err(),
                "{tool} verified against another root"
            );
        }
        // A changed byte in the profile breaks the signature.
        let mut tampered = signed.clone();
        let at = tampered
            .windows(10)
            .position(|w| w == b"PayloadTyp")
            .unwrap();
        tampered[at] = b'X';
        assert!(s.verify("cms", &tampered, "ca").is_err());
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let s = root_and_leaf("mismatch", "ec");
        s.key("stranger", "ec");
        s.key("rsa-stranger", "rsa");
        for key in ["stranger.key", "rsa-stranger.key", "ca.key"] {
            let err =
                ProfileSigner::from_pem(&s.read("leaf.pem"), &s.read(key), now()).unwrap_err();
            assert!(
                matches!(err, SigningError::KeyMismatch { .. }),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn refuses_a_leaf_outside_its_validity() {
        let s = root_and_leaf("validity", "ec");
        let (chain, key) = (s.read("leaf.pem"), s.read("leaf.key"));
        let later = now() + 3 * 86_400;
        let err = ProfileSigner::from_pem(&chain, &key, later).unwrap_err();
        assert!(matches!(err, SigningError::Expired { .. }), "{err}");
        assert!(err.to_string().contains("CN=heimweg-test-leaf"), "{err}");
        let err = ProfileSigner::from_pem(&chain, &key, now() - 86_400).unwrap_err();
        assert!(matches!(err, SigningError::NotYetValid { .. }), "{err}");
        // A signer kept past the end of its certificate refuses as well.
        let signer = ProfileSigner::from_pem(&chain, &key, now()).unwrap();
        let err = signer.sign(PLIST.as_bytes(), later).unwrap_err();
        assert!(matches!(err, SigningError::Expired { .. }), "{err}");
    }

    #[test]
    fn refuses_missing_and_unsupported_input() {
        let s = root_and_leaf("unsupported", "ec");
        let (chain, key) = (s.read("leaf.pem"), s.read("leaf.key"));
        let refuse =
            |chain: &str, key: &str| ProfileSigner::from_pem(chain, key, now()).unwrap_err();
        assert!(matches!(refuse("", &key), SigningError::NoCertificate));
        assert!(matches!(refuse(&key, &key), SigningError::NoCertificate));
        assert!(matches!(refuse(&chain, ""), SigningError::NoKey));
        assert!(matches!(refuse(&chain, &chain), SigningError::NoKey));
        assert!(matches!(
            refuse(&chain, &(key.clone() + &key)),
            SigningError::SeveralKeys
        ));
        for kind in ["ed25519", "p384", "sec1-p384"] {
            s.key(kind, kind);
            let err = refuse(&chain, &s.read(&format!("{kind}.key")));
            assert!(
                matches!(err, SigningError::UnsupportedKey(_)),
                "{kind}: {err}"
            );
        }
        s.run("pkcs8 -topk8 -in leaf.key -passout pass:secret -out encrypted.key");
        assert!(matches!(
            refuse(&chain, &s.read("encrypted.key")),
            SigningError::EncryptedKey
        ));
        let broken = chain.replace("-----END CERTIFICATE-----", "");
        assert!(matches!(refuse(&broken, &key), SigningError::Pem(_)));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            refuse(garbage, &key),
            SigningError::BadCertificate { position: 1, .. }
        ));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(refuse(&chain, garbage), SigningError::BadKey(_)));
        assert!(matches!(refuse("-----BEGIN ", &key), SigningError::Pem(_)));
        // A certificate whose key usage forbids signing.
        s.key("encipher", "ec");
        s.issue("encipher", "ca", "encipher_only", 2);
        let err = refuse(&s.read("encipher.pem"), &s.read("encipher.key"));
        assert!(
            matches!(err, SigningError::NoDigitalSignature { .. }),
            "{err}"
        );
    }

    #[test]
    fn one_file_with_certificate_and_key_serves_for_both() {
        let s = root_and_leaf("combined", "ec");
        let both = format!(
            "Bag Attributes\n{}{}{}",
            s.read("leaf.key"),
            s.read("leaf.pem"),
            s.read("leaf.pem")
        );
        let signer = ProfileSigner::from_pem(&both, &both, now()).unwrap();
        let signed = signer.sign(PLIST.as_bytes(), now()).unwrap();
        assert_verifies(&s, &signed, "ca");
        // The certificate given twice is carried once.
        assert_eq!(signed_data(&signed).certificates.unwrap().0.len(), 1);
    }

    #[test]
    fn debug_shows_no_key() {
        let s = root_and_leaf("debug", "ec");
        let key = s.read("leaf.key");
        let signer = ProfileSigner::from_pem(&s.read("leaf.pem"), &key, now()).unwrap();
        let shown = format!("{signer:?}");
        assert!(shown.contains("ECDSA P-256 [redacted]"), "{shown}");
        let secret = p256::SecretKey::from_pkcs8_pem(&key).unwrap().to_bytes();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "{shown}");
        }
        assert!(!shown.to_lowercase().contains(&hex[..16]), "{shown}");
    }

    #[test]
    fn signing_time_after_2049_is_generalized_time() {
        let attribute = signing_time_attribute(2_556_144_000).unwrap(); // 2051-01-01
        let time = attribute.values.get(0).unwrap().to_der().unwrap();
        let time = Time::from_der(&time).unwrap();
        assert!(matches!(time, Time::GeneralTime(_)));
        assert_eq!(unix_seconds(time), 2_556_144_000);
        for bad in [-1, 253_402_300_800, i64::MAX] {
            // Before 1970, the year 10000, far beyond.
            assert!(
                matches!(signing_time_attribute(bad), Err(SigningError::BadTime(t)) if t == bad)
            );
        }
    }
}
