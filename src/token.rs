//! `switchboard token`: mints a JWT with Switchboard's claims, for development and
//! tests (production tokens come from your identity provider).

use std::path::{Path, PathBuf};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use switchboard_broker::auth::Claims;
use switchboard_config::Config;

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The user (`sub`).
    #[arg(long)]
    sub: Option<String>,
    /// A room name or topic filter the token may join (repeat for more).
    #[arg(long = "room", value_name = "ROOM")]
    rooms: Vec<String>,
    /// A topic filter the token may publish to (repeat for more).
    #[arg(long = "publish", value_name = "FILTER")]
    publish: Vec<String>,
    /// A topic filter an MQTT client with this token may subscribe to.
    #[arg(long = "subscribe", value_name = "FILTER")]
    subscribe: Vec<String>,
    /// May join `$devices` and list room members.
    #[arg(long)]
    presence: bool,
    /// Seconds until it expires (negative: already expired, for tests).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    ttl: i64,
    /// Sign with this private key (PEM: RSA → RS256, EC P-256 → ES256, Ed25519 →
    /// EdDSA) instead of [auth] jwt_secret.
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// The `kid` header (to pick a key from a JWK set).
    #[arg(long)]
    kid: Option<String>,
    /// The `iss` claim (`[auth] jwt_issuer`).
    #[arg(long)]
    iss: Option<String>,
    /// The `aud` claim (`[auth] jwt_audience`).
    #[arg(long)]
    aud: Option<String>,
}

pub fn mint(config: Option<&Path>, args: &TokenArgs) -> Result<String, String> {
    let now = i64::try_from(switchboard_broker::events::now_ms() / 1000).unwrap_or(i64::MAX);
    let claims = Claims {
        sub: args.sub.clone(),
        exp: u64::try_from(now.saturating_add(args.ttl)).unwrap_or(0),
        rooms: args.rooms.clone(),
        publish: args.publish.clone(),
        subscribe: args.subscribe.clone(),
        presence: args.presence,
    };
    let (algorithm, key) = match &args.key {
        Some(path) => private_key(path)?,
        None => {
            let config = Config::load(config).map_err(|e| e.to_string())?;
            let secret = config
                .auth
                .jwt_secret
                .ok_or("no [auth] jwt_secret in the config (give --config FILE, or --key PEM)")?;
            (
                Algorithm::HS256,
                EncodingKey::from_secret(secret.as_bytes()),
            )
        }
    };
    let mut body = serde_json::to_value(&claims).map_err(|e| e.to_string())?;
    for (name, value) in [("iss", &args.iss), ("aud", &args.aud)] {
        if let (Some(value), Some(object)) = (value, body.as_object_mut()) {
            object.insert(name.into(), serde_json::Value::String(value.clone()));
        }
    }
    let mut header = Header::new(algorithm);
    header.kid = args.kid.clone();
    encode(&header, &body, &key).map_err(|e| format!("cannot sign: {e}"))
}

fn private_key(path: &Path) -> Result<(Algorithm, EncodingKey), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
        return Ok((Algorithm::ES256, key));
    }
    if let Ok(key) = EncodingKey::from_ed_pem(&pem) {
        return Ok((Algorithm::EdDSA, key));
    }
    Err(format!(
        "{}: not an RSA, EC P-256 or Ed25519 private key in PEM",
        path.display()
    ))
}
