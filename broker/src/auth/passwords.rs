//! The password file, in Mosquitto's format: one `user:hash` per line. Hashes made
//! by `mosquitto_passwd` (`$7$` PBKDF2-SHA512, `$6$` salted SHA-512) are checked as
//! they are; `switchboard passwd` writes argon2id (PHC strings).

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Most PBKDF2 rounds a file may ask for (mosquitto_passwd uses 101 by default;
/// a huge count would make every login a denial of service).
const MAX_ROUNDS: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    Pbkdf2Sha512 {
        rounds: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// A PHC string (`$argon2id$…`).
    Phc(String),
}

#[derive(Debug, Default)]
pub struct Passwords {
    users: HashMap<String, Hash>,
}

impl Passwords {
    /// Reads a password file; the error names the line.
    pub fn load(path: &Path) -> Result<Passwords, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
        Passwords::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Passwords, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: not `user:hash`", n + 1))?;
            let hash = parse_hash(hash).map_err(|e| format!("line {} ({user}): {e}", n + 1))?;
            users.insert(user.to_string(), hash);
        }
        Ok(Passwords { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. Slow on purpose (argon2, PBKDF2): call it off
    /// the async runtime.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => verify(hash, password),
            None => false,
        }
    }
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("bad base64: {e}"))
}

fn parse_hash(text: &str) -> Result<Hash, String> {
    let parts: Vec<&str> = text.split('$').collect();
    match parts.as_slice() {
        ["", "7", rounds, salt, hash] => {
            let rounds: u32 = rounds.parse().map_err(|_| "bad PBKDF2 round count")?;
            if rounds == 0 || rounds > MAX_ROUNDS {
                return Err(format!("PBKDF2 rounds must be 1..={MAX_ROUNDS}"));
            }
            Ok(Hash::Pbkdf2Sha512 {
                rounds,
                salt: b64(salt)?,
                hash: b64(hash)?,
            })
        }
        ["", "6", salt, hash] => Ok(Hash::Sha512 {
            salt: b64(salt)?,
            hash: b64(hash)?,
        }),
        ["", kind, ..] if kind.starts_with("argon2") => {
            PasswordHash::new(text).map_err(|e| format!("bad argon2 hash: {e}"))?;
            Ok(Hash::Phc(text.to_string()))
        }
        _ => Err("unknown hash (expected $7$, $6$ or $argon2id$)".into()),
    }
}

fn verify(hash: &Hash, password: &[u8]) -> bool {
    match hash {
        Hash::Pbkdf2Sha512 { rounds, salt, hash } => {
            let mut out = vec![0u8; hash.len()];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *rounds, &mut out);
            bool::from(out.ct_eq(hash))
        }
        Hash::Sha512 { salt, hash } => {
            let mut digest = Sha512::new();
            digest.update(password);
            digest.update(salt);
            bool::from(digest.finalize().as_slice().ct_eq(hash))
        }
        Hash::Phc(text) => PasswordHash::new(text)
            .map(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
            .unwrap_or(false),
    }
}

/// An argon2id hash of `password` in PHC form, for `switchboard passwd`.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash: {e}"))
}

/// `text` (a password file) with `user` set to `hash`, or removed when `hash` is
/// `None`; other lines (comments included) stay as they were.
pub fn edit_file(text: &str, user: &str, hash: Option<&str>) -> (String, bool) {
    let mut out = String::new();
    let mut found = false;
    for line in text.lines() {
        if line.split_once(':').is_some_and(|(u, _)| u == user) {
            found = true;
            if let Some(hash) = hash {
                out.push_str(&format!("{user}:{hash}\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !found {
        if let Some(hash) = hash {
            out.push_str(&format!("{user}:{hash}\n"));
        }
    }
    (out, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_lines_verify_and_wrong_passwords_do_not() {
        let hash = hash_password(b"s3cret").unwrap();
        let (file, _) = edit_file("# users\n", "alice", Some(&hash));
        let passwords = Passwords::parse(&file).unwrap();
        assert!(passwords.verify("alice", b"s3cret"));
        assert!(!passwords.verify("alice", b"s3cre"));
        assert!(!passwords.verify("bob", b"s3cret"));
        let (removed, found) = edit_file(&file, "alice", None);
        assert!(found);
        assert_eq!(removed, "# users\n");
    }

    #[test]
    fn mosquitto_sha512_lines_verify() {
        // $6$: SHA-512 of password then salt, both base64 (mosquitto 1.x).
        let salt = b"0123456789ab";
        let mut digest = Sha512::new();
        digest.update(b"pw");
        digest.update(salt);
        let engine = base64::engine::general_purpose::STANDARD;
        let line = format!(
            "u:$6${}${}",
            engine.encode(salt),
            engine.encode(digest.finalize())
        );
        let passwords = Passwords::parse(&line).unwrap();
        assert!(passwords.verify("u", b"pw"));
        assert!(!passwords.verify("u", b"px"));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = Passwords::parse("ok:$6$AA==$AA==\nbroken\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(Passwords::parse("u:$7$99999999$AA==$AA==").is_err());
        assert!(Passwords::parse("u:plain").is_err());
    }
}
