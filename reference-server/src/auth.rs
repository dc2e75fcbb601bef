//! Tokens in the reference format of spec chapter 09: `dl1.PAYLOAD.SIGNATURE`, where PAYLOAD is
//! the base64url JSON of [`TokenClaims`] and SIGNATURE the base64url HMAC-SHA256 of `dl1.PAYLOAD`
//! under a secret that lives in the data folder (file mode 0600, created on first start), or in
//! a file every instance of a deployment is given (`--token-secret`).

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use driftless_protocol::ids::SpaceId;
use driftless_protocol::messages::{Scope, TokenClaims};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The secret's file name inside the data folder.
pub const SECRET_FILE: &str = "token-secret";

const PREFIX: &str = "dl1.";

/// Why a Token was refused. Every variant is the Problem `unauthorized`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `dl1.PAYLOAD.SIGNATURE`, or the payload is not valid claims.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not verify.
    #[error("the token signature does not verify")]
    BadSignature,
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
}

/// Why the secret could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or writing the file failed.
    #[error("token secret {path}: {source}")]
    Io {
        /// The secret file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists but does not hold a 32-byte hex secret.
    #[error("token secret {0} is not 64 hex digits")]
    Invalid(String),
}

/// The Server's signing key.
#[derive(Clone)]
pub struct TokenKey {
    secret: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret (`[SEC-4]`).
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from raw bytes (tests).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// Loads the secret from `data_dir`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SecretError> {
        Self::load_or_create_file(&data_dir.join(SECRET_FILE))
    }

    /// Loads the secret from the file `path` (64 hex digits), creating it (mode 0600) if it
    /// does not exist. Several server instances may start on one new file at once: the secret
    /// is written to a temporary file and linked into place, so each reads the one that won.
    pub fn load_or_create_file(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|e| io(std::io::Error::other(e.to_string())))?;
                let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
                let mut name = path.as_os_str().to_owned();
                name.push(format!(".{}.tmp", std::process::id()));
                let tmp = std::path::PathBuf::from(name);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let written = options.open(&tmp).and_then(|mut file| {
                    file.write_all(hex.as_bytes())?;
                    file.sync_all()
                });
                let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(Self { secret }),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path).map_err(io)?;
                        Self::parse(path, &text)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(SecretError::Invalid(path.display().to_string()));
        }
        let mut secret = [0u8; 32];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| SecretError::Invalid(path.display().to_string()))?;
        }
        Ok(Self { secret })
    }

    fn mac(&self, signed: &str) -> hmac::Hmac<Sha256> {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .expect("HMAC takes any key length");
        mac.update(signed.as_bytes());
        mac
    }

    /// Signs claims into a Token.
    pub fn mint(&self, claims: &TokenClaims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{PREFIX}{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{signature}")
    }

    /// Verifies a Token's signature and expiry at `now_s` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now_s: u64) -> Result<TokenClaims, TokenError> {
        let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let (payload, signature) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        // verify_slice compares in constant time (`[SEC-3]`).
        self.mac(&format!("{PREFIX}{payload}"))
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: TokenClaims =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now_s {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The Scope a Token grants on a Space, if any. Takes the raw path text so that a Space ID
/// that is not even valid is treated like any Space without a Grant (`[AUTH-5]`).
pub fn scope_on(claims: &TokenClaims, space: &str) -> Option<Scope> {
    claims
        .grants
        .iter()
        .find(|(s, _): &(&SpaceId, &Scope)| s.as_str() == space)
        .map(|(_, scope)| *scope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn claims(exp: u64) -> TokenClaims {
        TokenClaims {
            sub: "ada".into(),
            grants: BTreeMap::from([("demo".parse().unwrap(), Scope::Write)]),
            iat: 100,
            exp,
        }
    }

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let key = TokenKey::from_bytes([7; 32]);
        let token = key.mint(&claims(200));
        assert_eq!(key.verify(&token, 150).unwrap(), claims(200));
        assert_eq!(key.verify(&token, 200), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_or_foreign_tokens_fail() {
        let key = TokenKey::from_bytes([7; 32]);
        let token = key.mint(&claims(200));
        let other = TokenKey::from_bytes([8; 32]);
        assert_eq!(other.verify(&token, 150), Err(TokenError::BadSignature));
        let forged = claims(10_000);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let sig = token.rsplit('.').next().unwrap();
        assert_eq!(
            key.verify(&format!("dl1.{payload}.{sig}"), 150),
            Err(TokenError::BadSignature)
        );
        assert_eq!(key.verify("nonsense", 150), Err(TokenError::Malformed));
    }

    #[test]
    fn secret_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = TokenKey::load_or_create(dir.path()).unwrap();
        let b = TokenKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.secret, b.secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
