//! JSON Web Tokens: the key (`[auth] jwt_secret`, `jwt_public_key` or `jwks_file`),
//! verification, and the claims Switchboard reads (`sub`, `exp`, `rooms`, `publish`,
//! `subscribe`, `presence`). Tokens are checked whole before any claim is used.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use switchboard_config::AuthConfig;
use switchboard_router::topic::check_filter;

/// Longer tokens are refused unread.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Entries in `rooms`, `publish` and `subscribe` together.
const MAX_CLAIM_ENTRIES: usize = 1_024;

/// What a token says about its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user: the username for ACLs, presence and `$devices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, seconds since 1970 (required).
    pub exp: u64,
    /// Rooms a browser may join: configured room names or topic filters (a filter
    /// grants every room inside it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Topic filters the holder may publish to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Topic filters an MQTT client holding it may subscribe to (`mqtt_jwt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
    /// May join `$devices` rooms and list any joined room's members.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presence: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Signed and well-formed, but past `exp`.
    Expired,
    /// Anything else, with why.
    Invalid(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Expired => f.write_str("token expired"),
            TokenError::Invalid(why) => write!(f, "bad token: {why}"),
        }
    }
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// The keys tokens are checked with, and the issuer and audience they must name.
pub struct TokenKeys {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKeys({} keys)", self.keys.len())
    }
}

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

impl TokenKeys {
    /// The configured key; `None` when nothing verifies tokens.
    pub fn load(auth: &AuthConfig) -> Result<Option<TokenKeys>, String> {
        if !auth.uses_tokens() {
            return Ok(None);
        }
        let keys = if let Some(secret) = &auth.jwt_secret {
            vec![Key {
                kid: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
                algorithms: HMAC.to_vec(),
            }]
        } else if let Some(path) = &auth.jwt_public_key {
            vec![public_key(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?]
        } else if let Some(path) = &auth.jwks_file {
            key_set(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            return Err("[auth] needs jwt_secret, jwt_public_key or jwks_file".into());
        };
        Ok(Some(TokenKeys {
            keys,
            issuer: auth.jwt_issuer.clone(),
            audience: auth.jwt_audience.clone(),
        }))
    }

    /// Checks signature, algorithm, `exp` and the claims' shape.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let invalid = |why: &str| TokenError::Invalid(why.to_string());
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("longer than 16KiB"));
        }
        let header = decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid.is_none() || k.kid == header.kid)
            .ok_or_else(|| invalid("no key with the token's kid"))?;
        if !key.algorithms.contains(&header.alg) {
            return Err(invalid("algorithm does not match the key"));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        // Set, they are required too (a token without them is refused).
        let mut required = vec!["exp"];
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })?
            .claims;
        check_claims(&claims)?;
        Ok(claims)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn public_key(pem: &[u8]) -> Result<Key, String> {
    let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        (key, RSA.to_vec())
    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        (key, EC.to_vec())
    } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        (key, vec![Algorithm::EdDSA])
    } else {
        return Err("not an RSA, EC or Ed25519 public key in PEM".into());
    };
    Ok(Key {
        kid: None,
        key,
        algorithms,
    })
}

fn key_set(json: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithms = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA.to_vec(),
            AlgorithmParameters::EllipticCurve(_) => EC.to_vec(),
            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
            AlgorithmParameters::OctetKey(_) => HMAC.to_vec(),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("a key: {e}"))?;
        // Without a kid only one key can be chosen.
        let kid = jwk.common.key_id.clone().or(Some(String::new()));
        keys.push(Key {
            kid,
            key,
            algorithms,
        });
    }
    match keys.as_mut_slice() {
        [] => return Err("no keys".into()),
        [only] if only.kid.as_deref() == Some("") => only.kid = None,
        _ => {}
    }
    Ok(keys)
}

fn check_claims(claims: &Claims) -> Result<(), TokenError> {
    let entries = claims.rooms.len() + claims.publish.len() + claims.subscribe.len();
    if entries > MAX_CLAIM_ENTRIES {
        return Err(TokenError::Invalid(format!(
            "more than {MAX_CLAIM_ENTRIES} rooms, publish and subscribe entries"
        )));
    }
    for (claim, list) in [
        ("publish", &claims.publish),
        ("subscribe", &claims.subscribe),
    ] {
        if let Some(bad) = list.iter().find(|f| check_filter(f).is_err()) {
            return Err(TokenError::Invalid(format!(
                "{claim} entry {bad:?} is not a topic filter"
            )));
        }
    }
    Ok(())
}

/// Three base64url parts: worth verifying as a token.
pub fn looks_like_token(text: &[u8]) -> bool {
    text.len() <= MAX_TOKEN_LEN
        && text.iter().filter(|b| **b == b'.').count() == 2
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!";

    fn keys() -> TokenKeys {
        let auth = AuthConfig {
            browser: switchboard_config::BrowserAuth::Jwt,
            jwt_secret: Some(SECRET.into()),
            ..AuthConfig::default()
        };
        TokenKeys::load(&auth).ok().flatten().unwrap()
    }

    fn token(claims: &Claims, secret: &str) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        crate::events::now_ms() / 1000 + 3600
    }

    #[test]
    fn good_expired_forged_and_malformed_tokens() {
        let claims = Claims {
            sub: Some("alice".into()),
            exp: in_an_hour(),
            rooms: vec!["sensors/#".into()],
            ..Claims::default()
        };
        assert_eq!(keys().verify(&token(&claims, SECRET)), Ok(claims.clone()));
        let expired = Claims {
            exp: 1_000,
            ..claims.clone()
        };
        assert_eq!(
            keys().verify(&token(&expired, SECRET)),
            Err(TokenError::Expired)
        );
        let forged = token(&claims, "another-secret-of-at-least-32-bytes!!");
        assert!(matches!(
            keys().verify(&forged),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            keys().verify("a.b.c"),
            Err(TokenError::Invalid(_))
        ));
        let bad_filter = Claims {
            publish: vec!["a/#/b".into()],
            ..claims
        };
        assert!(matches!(
            keys().verify(&token(&bad_filter, SECRET)),
            Err(TokenError::Invalid(_))
        ));
        assert!(looks_like_token(token(&expired, SECRET).as_bytes()));
        assert!(!looks_like_token(b"hunter2"));
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let auth = AuthConfig {
            browser: switchboard_config::BrowserAuth::Jwt,
            jwt_secret: Some(SECRET.into()),
            jwt_issuer: Some("https://id.example".into()),
            jwt_audience: Some("switchboard".into()),
            ..AuthConfig::default()
        };
        let keys = TokenKeys::load(&auth).ok().flatten().unwrap();
        let sign = |body: serde_json::Value| {
            encode(
                &Header::default(),
                &body,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap()
        };
        let exp = in_an_hour();
        let good = sign(
            serde_json::json!({"exp": exp, "iss": "https://id.example", "aud": ["other", "switchboard"]}),
        );
        assert!(keys.verify(&good).is_ok());
        for bad in [
            serde_json::json!({"exp": exp, "iss": "https://id.example", "aud": "other-app"}),
            serde_json::json!({"exp": exp, "iss": "https://evil.example", "aud": "switchboard"}),
            serde_json::json!({"exp": exp, "aud": "switchboard"}),
        ] {
            assert!(matches!(
                keys.verify(&sign(bad)),
                Err(TokenError::Invalid(_))
            ));
        }
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let header = Header::default();
        let body = serde_json::json!({"sub": "alice", "rooms": ["#"]});
        let token = encode(&header, &body, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        assert!(matches!(keys().verify(&token), Err(TokenError::Invalid(_))));
    }
}
