//! Password formats of `pool_passwd` and `pcp.conf`.
//!
//! `pool_passwd` entries are written as `user:AES<base64>`: AES-256-CBC with PKCS#7 padding,
//! key and IV derived from the pool key by OpenSSL's `EVP_BytesToKey` with SHA-1, no salt and
//! one iteration. That is what pgpool's `src/utils/ssl_utils.c` (`aes_get_key`) does, and the
//! unit tests below hold vectors produced by Debian's `pg_enc` 4.3.5
//! (`pg_enc -m -f pgpool.conf -k keyfile -u USER PASSWORD`), so our bytes are pgpool's bytes.
//! AES entries work for md5 and scram-sha-256 on both sides; `md5` entries would not let
//! pgpool answer a backend that asks for scram.

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use md5::{Digest as _, Md5};
use sha1::Sha1;

const KEY_LEN: usize = 32;
const IV_LEN: usize = 16;

/// `EVP_BytesToKey(EVP_aes_256_cbc(), EVP_sha1(), NULL, key, strlen(key), 1, ...)`:
/// D1 = SHA1(key), Di = SHA1(Di-1 || key), concatenated until key and IV are filled.
fn derive_key_iv(pool_key: &[u8]) -> ([u8; KEY_LEN], [u8; IV_LEN]) {
    let mut material = Vec::with_capacity(60);
    let mut previous: Vec<u8> = Vec::new();
    while material.len() < KEY_LEN + IV_LEN {
        let mut hasher = Sha1::new();
        hasher.update(&previous);
        hasher.update(pool_key);
        previous = hasher.finalize().to_vec();
        material.extend_from_slice(&previous);
    }
    let mut key = [0u8; KEY_LEN];
    let mut iv = [0u8; IV_LEN];
    key.copy_from_slice(&material[..KEY_LEN]);
    iv.copy_from_slice(&material[KEY_LEN..KEY_LEN + IV_LEN]);
    (key, iv)
}

/// The secret part of a `pool_passwd` line for `password` under `pool_key`: `AES<base64>`.
pub fn aes_secret(pool_key: &str, password: &str) -> String {
    let (key, iv) = derive_key_iv(pool_key.as_bytes());
    let cipher = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into());
    let encrypted = cipher.encrypt_padded_vec_mut::<Pkcs7>(password.as_bytes());
    format!("AES{}", BASE64.encode(encrypted))
}

/// Reverses [`aes_secret`]; `None` when the text is not a valid AES entry for this key.
/// Used by tests and by callers that want to check an existing `pool_passwd`.
pub fn decrypt_aes_secret(pool_key: &str, secret: &str) -> Option<String> {
    let encoded = secret.strip_prefix("AES")?;
    let encrypted = BASE64.decode(encoded).ok()?;
    let (key, iv) = derive_key_iv(pool_key.as_bytes());
    let cipher = cbc::Decryptor::<Aes256>::new(&key.into(), &iv.into());
    let plain = cipher.decrypt_padded_vec_mut::<Pkcs7>(&encrypted).ok()?;
    String::from_utf8(plain).ok()
}

/// The hash `pcp.conf` stores: lower-case hex MD5 of the password alone (as `pg_md5 PASSWORD`
/// prints it).
pub fn pcp_md5(password: &str) -> String {
    hex::encode(Md5::digest(password.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key file content used with `pg_enc` for the vectors below (trailing newline or not
    /// gives the same result: pgpool strips it).
    const PG_ENC_KEY: &str = "k3y-fixed-For-tests";

    #[test]
    fn matches_pg_enc_vectors() {
        // Each vector: password, the secret `pg_enc -m -k <key file> -u <user> <password>`
        // wrote into pool_passwd (Debian pgpool2 4.3.5).
        let vectors = [
            ("S3cret pw!", "AESX7HXAt6s8JHijYKD1nqTXQ=="),
            ("p@ss:wörd", "AESXp4xi02zpwaRGTJUD3dMBA=="),
            (
                "a-much-longer-password-of-40-characters!",
                "AESDwaQAGp4pkjtS0onztTh/Mf+j5gsRMUiPGfi264laEhggCIWrzpAuATai5clJbU3",
            ),
            // exactly one block: PKCS#7 adds a whole block of padding
            (
                "0123456789abcdef",
                "AES+jJgS4sDgaVYnX1tjpqj86BP4OZWswGqfUfYTOILw9A=",
            ),
        ];
        for (password, expected) in vectors {
            assert_eq!(aes_secret(PG_ENC_KEY, password), expected, "{password:?}");
            assert_eq!(
                decrypt_aes_secret(PG_ENC_KEY, expected).as_deref(),
                Some(password)
            );
        }
    }

    #[test]
    fn another_key_gives_another_secret_and_does_not_decrypt() {
        let secret = aes_secret("key-one", "password");
        assert_ne!(secret, aes_secret("key-two", "password"));
        assert_ne!(
            decrypt_aes_secret("key-two", &secret).as_deref(),
            Some("password")
        );
        assert_eq!(decrypt_aes_secret("key-one", "md5abc"), None);
    }

    #[test]
    fn pcp_hash_matches_pg_md5() {
        // `pg_md5 pcp-pass` (Debian pgpool2 4.3.5) prints this.
        assert_eq!(pcp_md5("pcp-pass"), "018b69fb1cfbd59643a8f2bdebf1b037");
    }
}
