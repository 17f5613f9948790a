//! Trusted public keys: PEM `PUBLIC KEY` (PKIX SubjectPublicKeyInfo), the `cosign.pub` format.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest as _, Sha256};
use spki::der::Decode;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The signature schemes a trusted key can verify (the ones cosign and model-signing produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA over P-256 with SHA-256, ASN.1 DER signatures (cosign's default).
    EcdsaP256Sha256,
    /// ECDSA over P-384 with SHA-384, ASN.1 DER signatures (model-signing with a P-384 key).
    EcdsaP384Sha384,
    /// Ed25519 over the raw message.
    Ed25519,
    /// RSA PKCS#1 v1.5 with SHA-256, 2048 to 8192 bit moduli.
    RsaPkcs1Sha256,
}

impl KeyAlgorithm {
    fn ring(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Self::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
            Self::EcdsaP384Sha384 => &signature::ECDSA_P384_SHA384_ASN1,
            Self::Ed25519 => &signature::ED25519,
            Self::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }
}

/// Why key material could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM `PUBLIC KEY` block holding a DER SubjectPublicKeyInfo.
    #[error("key {name}: not a PEM PUBLIC KEY (PKIX): {detail}")]
    Malformed {
        /// Where the key came from (e.g. `secret/cosign-pub/cosign.pub`).
        name: String,
        /// What the parser said.
        detail: String,
    },
    /// A well-formed key of an algorithm or curve this verifier does not support.
    #[error("key {name}: unsupported key algorithm {algorithm}")]
    Unsupported {
        /// Where the key came from.
        name: String,
        /// The algorithm (and curve) OID.
        algorithm: String,
    },
}

/// One trusted public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    algorithm: KeyAlgorithm,
    /// The key bytes in the form ring expects (EC point, Ed25519 key, or PKCS#1 RSAPublicKey).
    raw: Vec<u8>,
    fingerprint: [u8; 32],
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` block; `name` says where it came from, for messages.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self, KeyError> {
        let malformed = |detail: String| KeyError::Malformed {
            name: name.to_owned(),
            detail,
        };
        let text = std::str::from_utf8(pem).map_err(|e| malformed(e.to_string()))?;
        let der = pem_body(text).map_err(malformed)?;
        let info = SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| malformed(e.to_string()))?;
        let algorithm = algorithm_of(name, &info)?;
        let raw = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| malformed("public key bit string has unused bits".to_owned()))?
            .to_vec();
        Ok(Self {
            name: name.to_owned(),
            algorithm,
            raw,
            fingerprint: Sha256::digest(&der).into(),
        })
    }

    /// Where the key came from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signature scheme of this key.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// sha256 of the DER SubjectPublicKeyInfo, hex: a stable identity for the key.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// Whether `signature` is this key's signature over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(self.algorithm.ring(), &self.raw)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// The DER inside the `PUBLIC KEY` block of `text`. Lenient about line length and surrounding
/// text (keys pasted into Secrets are not always wrapped at 64 columns).
fn pem_body(text: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let start = text
        .find(BEGIN)
        .ok_or_else(|| "no -----BEGIN PUBLIC KEY----- block".to_owned())?
        + BEGIN.len();
    let len = text[start..]
        .find(END)
        .ok_or_else(|| "no -----END PUBLIC KEY----- line".to_owned())?;
    let body: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).map_err(|e| format!("base64: {e}"))
}

fn algorithm_of(name: &str, info: &SubjectPublicKeyInfoRef<'_>) -> Result<KeyAlgorithm, KeyError> {
    let oid = info.algorithm.oid;
    let curve = info.algorithm.parameters_oid().ok();
    match (oid, curve) {
        (ID_EC_PUBLIC_KEY, Some(SECP256R1)) => Ok(KeyAlgorithm::EcdsaP256Sha256),
        (ID_EC_PUBLIC_KEY, Some(SECP384R1)) => Ok(KeyAlgorithm::EcdsaP384Sha384),
        (ID_ED25519, _) => Ok(KeyAlgorithm::Ed25519),
        (RSA_ENCRYPTION, _) => Ok(KeyAlgorithm::RsaPkcs1Sha256),
        _ => Err(KeyError::Unsupported {
            name: name.to_owned(),
            algorithm: match curve {
                Some(curve) => format!("{oid} ({curve})"),
                None => oid.to_string(),
            },
        }),
    }
}

/// The keys a ModelDeployment trusts; a signature by any one of them is accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// A key set holding `keys`.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    /// Whether the set holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in the order given.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The first key whose signature over `message` is `signature`.
    pub fn signer_of(&self, message: &[u8], signature: &[u8]) -> Option<&PublicKey> {
        self.keys
            .iter()
            .find(|key| key.verifies(message, signature))
    }

    /// A fingerprint of the whole set, independent of key order and names: the cache key part
    /// that makes a result verified under one key set invisible to another.
    pub fn fingerprint(&self) -> String {
        let mut prints: Vec<[u8; 32]> = self.keys.iter().map(|k| k.fingerprint).collect();
        prints.sort_unstable();
        prints.dedup();
        let mut hasher = Sha256::new();
        for print in prints {
            hasher.update(print);
        }
        hex::encode(hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl ecparam -name prime256v1 -genkey | openssl ec -pubout`.
    const P256_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPXqxvvVAoCtjzglgecr5Hyu9nV+B
XsmalV/vvE7eE5hhhAZjYxK90vcJnaaWfeLm+PxyWkee51DM5RRLyhNttg==
-----END PUBLIC KEY-----
";
    /// A DER signature by P256_PUB's private key over `b"hello"` (`openssl dgst -sha256 -sign`).
    const P256_SIG_HELLO: &str = "MEQCICl/y68BCUasdGHuMZANxnvFpDgsVwT3kK7zJZXeGIXwAiAWsG6U39xwj91q+pDrdthiyWJJgs6b8kFg53bXafmL0g==";
    /// `openssl genpkey -algorithm ed25519 | openssl pkey -pubout`.
    const ED25519_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEABVN72Gbsk68f9iWbmXWZ6tkYcpyyYR0+vlb7relUKP4=
-----END PUBLIC KEY-----
";
    /// `openssl ecparam -name secp521r1 -genkey | openssl ec -pubout`.
    const P521_PUB: &str = "-----BEGIN PUBLIC KEY-----
MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQAlMpk5cwzxiw/TDDwoX3PEvShvA7N
hoVrI21+eNbjttJ4AnbERbR8/ybP9DCYrWLDNP042VEBoWsaPrEF6luey7EAFowi
aZ/3lnuL7BMMofypNB6FZeQM4yJ9Slk+aZsE2cXqMjjNcfl/zXp12IXpltKz/a0K
G9Y1PHz7URofnxJJbLA=
-----END PUBLIC KEY-----
";

    fn b64(s: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn p256_key_verifies_its_openssl_signature_and_nothing_else() {
        let key = PublicKey::from_pem("k", P256_PUB.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256Sha256);
        let sig = b64(P256_SIG_HELLO);
        assert!(key.verifies(b"hello", &sig));
        assert!(!key.verifies(b"hellO", &sig));
        let mut flipped = sig.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(!key.verifies(b"hello", &flipped));
    }

    #[test]
    fn unwrapped_pem_with_surrounding_text_is_accepted() {
        let one_line: String = P256_PUB
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let pem = format!(
            "# cosign.pub\n-----BEGIN PUBLIC KEY-----\n{one_line}\n-----END PUBLIC KEY-----"
        );
        let key = PublicKey::from_pem("k", pem.as_bytes()).unwrap();
        let wrapped = PublicKey::from_pem("k", P256_PUB.as_bytes()).unwrap();
        assert_eq!(key.fingerprint(), wrapped.fingerprint());
    }

    #[test]
    fn ed25519_key_is_recognized() {
        let key = PublicKey::from_pem("ed", ED25519_PUB.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
    }

    #[test]
    fn unsupported_curve_names_the_curve() {
        let err = PublicKey::from_pem("p521", P521_PUB.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, KeyError::Unsupported { algorithm, .. } if algorithm.contains("1.3.132.0.35")),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_private_keys_are_malformed() {
        for bad in [
            "not a key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
        ] {
            assert!(matches!(
                PublicKey::from_pem("bad", bad.as_bytes()),
                Err(KeyError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn key_set_fingerprint_ignores_order_names_and_duplicates() {
        let p256 = PublicKey::from_pem("a", P256_PUB.as_bytes()).unwrap();
        let p256_renamed = PublicKey::from_pem("b", P256_PUB.as_bytes()).unwrap();
        let ed = PublicKey::from_pem("c", ED25519_PUB.as_bytes()).unwrap();
        let one = KeySet::new(vec![p256.clone(), ed.clone()]);
        let two = KeySet::new(vec![ed.clone(), p256_renamed, p256.clone()]);
        assert_eq!(one.fingerprint(), two.fingerprint());
        assert_ne!(one.fingerprint(), KeySet::new(vec![p256]).fingerprint());
        assert_ne!(one.fingerprint(), KeySet::default().fingerprint());
    }

    #[test]
    fn signer_of_names_the_key_that_signed() {
        let ed = PublicKey::from_pem("ed", ED25519_PUB.as_bytes()).unwrap();
        let p256 = PublicKey::from_pem("p256", P256_PUB.as_bytes()).unwrap();
        let set = KeySet::new(vec![ed, p256]);
        let sig = b64(P256_SIG_HELLO);
        assert_eq!(
            set.signer_of(b"hello", &sig).map(PublicKey::name),
            Some("p256")
        );
        assert!(set.signer_of(b"bye", &sig).is_none());
    }
}
