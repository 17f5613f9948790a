//! Throwaway signing keys for unit tests (integration tests sign with openssl instead).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

use crate::keys::{KeySet, PublicKey};

/// DER SubjectPublicKeyInfo prefix of an uncompressed P-256 point.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

/// A P-256 signing key and its trusted public half.
pub(crate) struct TestKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    pub(crate) public: PublicKey,
}

impl TestKey {
    pub(crate) fn generate(name: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut der = hex::decode(P256_SPKI_PREFIX).unwrap();
        der.extend_from_slice(pair.public_key().as_ref());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        );
        let public = PublicKey::from_pem(name, pem.as_bytes()).unwrap();
        Self { pair, rng, public }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&self.rng, message)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    pub(crate) fn set(&self) -> KeySet {
        KeySet::new(vec![self.public.clone()])
    }
}
