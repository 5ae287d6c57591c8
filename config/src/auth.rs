//! `[auth]`: MQTT logins and ACLs (Mosquitto's files), and JWTs for browsers (and,
//! optionally, MQTT clients).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Who may connect and what each client may read and write.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Mosquitto's password file format (`user:hash` lines; `mosquitto_passwd`'s
    /// `$7$` and `$6$` hashes and `switchboard passwd`'s argon2 ones). Set: clients
    /// must log in with a user in it, unless `allow_anonymous`.
    pub password_file: Option<PathBuf>,
    /// Mosquitto's acl_file syntax. Set: anything not granted is denied (browsers
    /// too: as the token's `sub`, or as anonymous clients without browser auth).
    pub acl_file: Option<PathBuf>,
    /// Clients without a username may connect. Absent: true on loopback listeners
    /// without a password file, false otherwise (Mosquitto 2's rule).
    pub allow_anonymous: Option<bool>,
    /// The client ids a user may take, `%u` for the username and `*` for anything
    /// (e.g. `"%u-*"`), so one user cannot take over another's device id.
    pub client_id_pattern: Option<String>,
    /// `"jwt"`: browsers (`/ws`, `/sse`) need a token; `"off"`: anyone may connect.
    pub browser: BrowserAuth,
    /// HS256 key for tokens (at least 32 bytes).
    pub jwt_secret: Option<String>,
    /// RS256/ES256/EdDSA public key (PEM file) for tokens.
    pub jwt_public_key: Option<PathBuf>,
    /// A JSON Web Key Set file (keys chosen by the token's `kid`); re-read on SIGHUP.
    pub jwks_file: Option<PathBuf>,
    /// Set: tokens must carry this `iss` (your identity provider's issuer).
    pub jwt_issuer: Option<String>,
    /// Set: tokens must list this in `aud` (so a token minted for another
    /// application of the same identity provider is refused).
    pub jwt_audience: Option<String>,
    /// The cookie a browser's token is read from.
    pub jwt_cookie: String,
    /// Accept `?token=` on `/ws` and `/sse` (URLs end up in logs and histories).
    pub allow_query_token: bool,
    /// A JWT in the MQTT password field logs in as its `sub`, its `publish` and
    /// `subscribe` claims being that client's ACL.
    pub mqtt_jwt: bool,
    /// How long a browser without a token in its request has to send an `auth` frame.
    pub browser_auth_timeout_ms: u64,
    /// After its token expires, how long a browser has to send a fresh one.
    pub token_expiry_grace_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            password_file: None,
            acl_file: None,
            allow_anonymous: None,
            client_id_pattern: None,
            browser: BrowserAuth::Off,
            jwt_secret: None,
            jwt_public_key: None,
            jwks_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_cookie: "sb_token".into(),
            allow_query_token: false,
            mqtt_jwt: false,
            browser_auth_timeout_ms: 5_000,
            token_expiry_grace_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrowserAuth {
    Off,
    Jwt,
}

impl AuthConfig {
    /// Tokens are verified somewhere.
    pub fn uses_tokens(&self) -> bool {
        self.browser == BrowserAuth::Jwt || self.mqtt_jwt
    }

    /// The first problem, as (key, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let keys = [
            self.jwt_secret.is_some(),
            self.jwt_public_key.is_some(),
            self.jwks_file.is_some(),
        ];
        let set = keys.iter().filter(|k| **k).count();
        if self.uses_tokens() && set != 1 {
            let message = "browser = \"jwt\" or mqtt_jwt = true needs exactly one of jwt_secret, jwt_public_key, jwks_file";
            return Some(("auth.jwt_secret", message.into()));
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            let message =
                "must be at least 32 bytes (HS256 keys shorter than the hash are guessable)";
            return Some(("auth.jwt_secret", message.into()));
        }
        let cookie_ok = !self.jwt_cookie.is_empty()
            && self
                .jwt_cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !cookie_ok {
            return Some((
                "auth.jwt_cookie",
                "must be letters, digits, - _ or .".into(),
            ));
        }
        if self.browser_auth_timeout_ms == 0 {
            return Some(("auth.browser_auth_timeout_ms", "must be at least 1".into()));
        }
        None
    }
}
