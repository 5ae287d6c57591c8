//! Who may connect and what each client may read and write: the password file and
//! the ACL file (both in Mosquitto's formats), loaded at start and again on SIGHUP.
//! Connections pick up new rights at their next delivery (no one is disconnected).

pub mod acl;
pub mod jwt;
pub mod passwords;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use switchboard_config::Config;
use tokio::sync::Semaphore;

pub use acl::{Acl, Rights, SubscribeRight};
pub use jwt::{Claims, TokenError, TokenKeys};
pub use passwords::Passwords;

/// Password checks running at once (argon2 and PBKDF2 are slow on purpose).
const PARALLEL_CHECKS: usize = 4;

#[derive(Debug)]
pub struct Auth {
    passwords: Option<Passwords>,
    acl: Option<Acl>,
    /// `[auth] allow_anonymous` as written (`None`: absent).
    allow_anonymous: Option<bool>,
    client_id_pattern: Option<String>,
    tokens: Option<TokenKeys>,
    /// `[auth] mqtt_jwt`: a token in the password field logs in.
    mqtt_jwt: bool,
    /// `[auth] browser = "jwt"`.
    browser_tokens: bool,
}

/// Why a login is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown user or wrong password (3.1.1: 4, v5: 0x86).
    BadCredentials,
    /// No username where one is required (3.1.1: 5, v5: 0x87).
    AnonymousNotAllowed,
}

impl Auth {
    pub fn load(config: &Config) -> Result<Auth, String> {
        let auth = &config.auth;
        let passwords = auth
            .password_file
            .as_deref()
            .map(Passwords::load)
            .transpose()?;
        let acl = auth.acl_file.as_deref().map(Acl::load).transpose()?;
        Ok(Auth {
            allow_anonymous: auth.allow_anonymous,
            client_id_pattern: auth.client_id_pattern.clone(),
            tokens: TokenKeys::load(auth)?,
            mqtt_jwt: auth.mqtt_jwt,
            browser_tokens: auth.browser == switchboard_config::BrowserAuth::Jwt,
            passwords,
            acl,
        })
    }

    /// Whether clients without a username may connect on a listener: as set, else
    /// only on loopback and only without a password file (Mosquitto 2's rule).
    pub fn anonymous_on(&self, loopback: bool) -> bool {
        self.allow_anonymous
            .unwrap_or(loopback && self.passwords.is_none())
    }

    /// Anonymous clients are allowed on a listener beyond loopback (worth a warning).
    pub fn anonymous_exposed(&self, loopback: bool) -> bool {
        !loopback && self.anonymous_on(false)
    }

    /// Who may connect on a listener, for its start-up line.
    pub fn describe_listener(&self, loopback: bool) -> String {
        self.describe_with(self.anonymous_on(loopback))
    }

    /// Who may connect on a loopback listener (the reload line).
    pub fn describe(&self) -> String {
        self.describe_with(self.anonymous_on(true))
    }

    fn describe_with(&self, anonymous: bool) -> String {
        let mut who = match (&self.passwords, anonymous) {
            (None, true) => "anonymous clients".to_string(),
            (None, false) => "nobody (allow_anonymous = false and no password_file)".to_string(),
            (Some(p), true) => format!("{} users by password, and anonymous clients", p.len()),
            (Some(p), false) => format!("{} users by password", p.len()),
        };
        if self.mqtt_jwt {
            who.push_str(", JWT holders (as their sub, with their claims as ACL)");
        }
        match &self.acl {
            Some(_) => format!("{who}; topics as the ACL file grants"),
            None => format!("{who}; every topic"),
        }
    }

    /// Verifies a token (browsers, and MQTT with `mqtt_jwt`).
    pub fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        match &self.tokens {
            Some(keys) => keys.verify(token),
            None => Err(TokenError::Invalid("tokens are not enabled".into())),
        }
    }

    /// Whether browsers must present a token.
    pub fn browsers_need_tokens(&self) -> bool {
        self.browser_tokens
    }

    /// `Ok(Some(claims))` for a login by token (`mqtt_jwt`).
    fn check(
        &self,
        username: Option<&str>,
        password: &[u8],
        loopback: bool,
    ) -> Result<Option<Claims>, LoginRefused> {
        if let (Some(user), true) = (username, self.mqtt_jwt && jwt::looks_like_token(password)) {
            let token = std::str::from_utf8(password).unwrap_or_default();
            return match self.verify_token(token) {
                Ok(claims) if claims.sub.as_deref() == Some(user) => Ok(Some(claims)),
                _ => Err(LoginRefused::BadCredentials),
            };
        }
        let anonymous = self.anonymous_on(loopback);
        match (username, &self.passwords) {
            (None, _) if anonymous => Ok(None),
            (None, _) => Err(LoginRefused::AnonymousNotAllowed),
            // Without a password file a username is only a name (Mosquitto too).
            (Some(_), None) if anonymous => Ok(None),
            (Some(_), None) => Err(LoginRefused::BadCredentials),
            (Some(user), Some(passwords)) => match passwords.verify(user, password) {
                true => Ok(None),
                false => Err(LoginRefused::BadCredentials),
            },
        }
    }

    /// Whether a client with `username` may take `client_id` (`[auth]
    /// client_id_pattern`; clients without a username are not bound).
    pub fn may_take_client_id(&self, username: Option<&str>, client_id: &str) -> bool {
        match (&self.client_id_pattern, username) {
            (Some(pattern), Some(user)) => glob(&pattern.replace("%u", user), client_id),
            _ => true,
        }
    }

    pub fn rights(&self, username: Option<&str>, client_id: &str) -> Rights {
        match &self.acl {
            Some(acl) => acl.rights(username, client_id),
            None => Rights::all(),
        }
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The current `Auth`, swapped whole on reload; `generation` tells connections to
/// look up their rights again.
pub struct AuthState {
    current: RwLock<Arc<Auth>>,
    generation: AtomicU64,
    /// An ACL file is in force (without one, browsers' deliveries skip every check).
    acl_set: AtomicBool,
    checks: Semaphore,
}

impl AuthState {
    pub fn new(auth: Auth) -> AuthState {
        AuthState {
            acl_set: AtomicBool::new(auth.acl.is_some()),
            current: RwLock::new(Arc::new(auth)),
            generation: AtomicU64::new(0),
            checks: Semaphore::new(PARALLEL_CHECKS),
        }
    }

    pub fn current(&self) -> Arc<Auth> {
        self.current.read().clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the files again; on an error the old ones stay in force.
    pub fn reload(&self, config: &Config) -> Result<String, String> {
        let auth = Auth::load(config)?;
        let described = auth.describe();
        self.acl_set.store(auth.acl.is_some(), Ordering::Release);
        *self.current.write() = Arc::new(auth);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(described)
    }

    /// Checks a CONNECT's login off the async runtime, a few at a time; `loopback`:
    /// whether the listener it came in on is bound to loopback. `Some(claims)`: the
    /// client logged in with a token.
    pub async fn login(
        &self,
        username: Option<String>,
        password: Vec<u8>,
        loopback: bool,
    ) -> Result<Option<Claims>, LoginRefused> {
        let auth = self.current();
        if (auth.passwords.is_none() && !auth.mqtt_jwt) || username.is_none() {
            return auth.check(username.as_deref(), &password, loopback);
        }
        let Ok(_permit) = self.checks.acquire().await else {
            return Err(LoginRefused::BadCredentials);
        };
        tokio::task::spawn_blocking(move || auth.check(username.as_deref(), &password, loopback))
            .await
            .unwrap_or(Err(LoginRefused::BadCredentials))
    }
}

/// One connection's rights, looked up again when the files were reloaded (unless
/// they came with its token).
pub struct ClientAccess {
    username: Option<String>,
    client_id: Arc<str>,
    rights: Rights,
    generation: u64,
    from_token: bool,
    /// The token's `exp` (seconds since 1970), for a login by token.
    token_exp: Option<u64>,
}

impl ClientAccess {
    pub fn new(
        state: &AuthState,
        username: Option<String>,
        client_id: Arc<str>,
        claims: Option<&Claims>,
    ) -> ClientAccess {
        let generation = state.generation();
        let rights = match claims {
            Some(claims) => Rights::granting(&claims.subscribe, &claims.publish),
            None => state.current().rights(username.as_deref(), &client_id),
        };
        ClientAccess {
            username,
            client_id,
            rights,
            generation,
            from_token: claims.is_some(),
            token_exp: claims.map(|c| c.exp),
        }
    }

    /// How long until the login's token expires (`None`: not a token login).
    pub fn token_left(&self) -> Option<std::time::Duration> {
        let now = crate::events::now_ms() / 1000;
        self.token_exp
            .map(|exp| std::time::Duration::from_secs(exp.saturating_sub(now)))
    }

    pub fn rights(&mut self, state: &AuthState) -> &Rights {
        let generation = state.generation();
        if generation != self.generation && !self.from_token {
            self.rights = state
                .current()
                .rights(self.username.as_deref(), &self.client_id);
            self.generation = generation;
        }
        &self.rights
    }
}

/// One browser's rights, read by every thread that delivers to it; looked up again
/// after a reload. Its name (user, client id) is kept by the caller: tens of
/// thousands of these are held at once.
pub struct SharedAccess {
    state: Arc<AuthState>,
    cached: parking_lot::Mutex<(u64, Rights)>,
}

/// Who a browser is for the ACL: its token's `sub` (if any) and its session id.
pub type Identity<'a> = (Option<&'a str>, &'a str);

impl SharedAccess {
    pub fn new(state: Arc<AuthState>, (username, client_id): Identity<'_>) -> Self {
        let rights = state.current().rights(username, client_id);
        let generation = state.generation();
        SharedAccess {
            state,
            cached: parking_lot::Mutex::new((generation, rights)),
        }
    }

    fn check(
        &self,
        (username, client_id): Identity<'_>,
        allowed: impl Fn(&Rights) -> bool,
    ) -> bool {
        if !self.state.acl_set.load(Ordering::Acquire) {
            return true;
        }
        let generation = self.state.generation();
        let mut cached = self.cached.lock();
        if cached.0 != generation {
            *cached = (generation, self.state.current().rights(username, client_id));
        }
        allowed(&cached.1)
    }

    pub fn may_read(&self, who: Identity<'_>, topic: &str) -> bool {
        self.check(who, |rights| rights.may_read(topic))
    }

    pub fn may_write(&self, who: Identity<'_>, topic: &str) -> bool {
        self.check(who, |rights| rights.may_write(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(passwords: bool, allow_anonymous: Option<bool>) -> Auth {
        Auth {
            passwords: passwords.then(Passwords::default),
            acl: None,
            allow_anonymous,
            client_id_pattern: Some("%u-*".into()),
            tokens: None,
            mqtt_jwt: false,
            browser_tokens: false,
        }
    }

    #[test]
    fn anonymous_clients_follow_mosquitto_2s_rule() {
        // No [auth] at all: loopback yes, beyond loopback no.
        assert!(auth(false, None).anonymous_on(true));
        assert!(!auth(false, None).anonymous_on(false));
        // A password file: nowhere, unless allowed explicitly.
        assert!(!auth(true, None).anonymous_on(true));
        assert!(auth(true, Some(true)).anonymous_on(false));
        assert!(auth(false, Some(true)).anonymous_exposed(false));
        assert!(!auth(false, None).anonymous_exposed(false));
        assert!(!auth(false, Some(false)).anonymous_on(true));
        assert_eq!(
            auth(false, None).check(None, b"", false),
            Err(LoginRefused::AnonymousNotAllowed)
        );
        assert_eq!(auth(false, None).check(None, b"", true), Ok(None));
    }

    #[test]
    fn a_user_takes_only_the_client_ids_of_its_pattern() {
        let auth = auth(true, None);
        assert!(auth.may_take_client_id(Some("alice"), "alice-phone"));
        assert!(auth.may_take_client_id(Some("alice"), "alice-"));
        assert!(!auth.may_take_client_id(Some("alice"), "bob-phone"));
        assert!(!auth.may_take_client_id(Some("alice"), "alice"));
        assert!(
            auth.may_take_client_id(None, "anything"),
            "anonymous: unbound"
        );
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("*", ""));
        assert!(glob("x", "x") && !glob("x", "xy"));
    }
}
