//! What a browser's token lets it do (rooms, publishing, presence), where its token
//! comes from in a request (`Authorization: Bearer`, the cookie, the query when
//! allowed), and when it expires.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::topic::matches;
use axum::http::{header, HeaderMap, Uri};
use switchboard_broker::auth::acl::covers;
use switchboard_broker::auth::{Auth, Claims, TokenError};
use switchboard_config::AuthConfig;

use crate::rooms::{RoomKind, RoomSpec};
use crate::token_stage::Admission;

const FOREVER_SECS: u64 = 10 * 365 * 24 * 3600;

/// A verified token's rights.
#[derive(Debug, Clone)]
pub struct Grant {
    pub claims: Arc<Claims>,
    /// When `exp` is reached, on this process's clock.
    pub expires: Instant,
}

impl Grant {
    pub fn new(claims: Claims) -> Grant {
        let now_secs = switchboard_broker::events::now_ms() / 1000;
        // A far `exp` (u64::MAX) must not overflow the clock: ten years is forever here.
        let left = Duration::from_secs(claims.exp.saturating_sub(now_secs).min(FOREVER_SECS));
        Grant {
            claims: Arc::new(claims),
            expires: Instant::now() + left,
        }
    }

    /// Named in `rooms`, or (topic rooms) every filter inside one of its entries,
    /// or (`$devices` rooms) the `presence` claim.
    pub fn may_join(&self, spec: &RoomSpec) -> bool {
        let rooms = &self.claims.rooms;
        if rooms.iter().any(|r| **r == *spec.name) {
            return true;
        }
        match spec.kind {
            RoomKind::Devices => {
                self.claims.presence || rooms.iter().any(|r| covers(r, &spec.name))
            }
            RoomKind::Configured | RoomKind::TopicFilter => {
                !spec.filters.is_empty()
                    && spec
                        .filters
                        .iter()
                        .all(|f| rooms.iter().any(|r| covers(r, f)))
            }
        }
    }

    /// Member lists: the `presence` claim, or the room named in `rooms`.
    pub fn may_list_members(&self, room: &str) -> bool {
        self.claims.presence || self.claims.rooms.iter().any(|r| r == room)
    }

    pub fn may_publish(&self, topic: &str) -> bool {
        self.claims.publish.iter().any(|f| matches(f, topic))
    }
}

/// How a `/ws` request is let in: auth off, its token checked, or wait for a frame.
pub fn admission(auth: &Auth, config: &AuthConfig, headers: &HeaderMap, uri: &Uri) -> Admission {
    if !auth.browsers_need_tokens() {
        return Admission::Open;
    }
    match token_in(headers, uri, config) {
        Ok(Some(token)) => Admission::Token(Box::new(auth.verify_token(&token))),
        Ok(None) => Admission::AwaitFrame,
        Err(why) => Admission::Token(Box::new(Err(TokenError::Invalid(why.into())))),
    }
}

/// A token refused, as a close code and reason (4001 bad, 4002 expired).
pub fn refusal(error: &TokenError) -> (u16, String) {
    use crate::outbound::close_code;
    match error {
        TokenError::Expired => (close_code::TOKEN_EXPIRED, "token expired".into()),
        TokenError::Invalid(why) => {
            // Close reasons must fit in a control frame (123 bytes).
            let mut reason = format!("bad token: {why}");
            let mut cut = reason.len().min(120);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            (close_code::UNAUTHORIZED, reason)
        }
    }
}

/// The request's token: `Authorization: Bearer`, else the cookie, else (only with
/// `allow_query_token`) `?token=`. `Err` for a token in the query that is not allowed.
pub fn token_in(
    headers: &HeaderMap,
    uri: &Uri,
    auth: &AuthConfig,
) -> Result<Option<String>, &'static str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(token) = bearer {
        return Ok(Some(token.to_string()));
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == auth.jwt_cookie)
        .map(|(_, value)| value.trim_matches('"'));
    if let Some(token) = cookie {
        return Ok(Some(token.to_string()));
    }
    let query = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="));
    match query {
        Some(token) if auth.allow_query_token => Ok(Some(token.to_string())),
        Some(_) => Err("a token in the URL is refused ([auth] allow_query_token = false)"),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn grant(rooms: &[&str], presence: bool) -> Grant {
        Grant::new(Claims {
            sub: Some("alice".into()),
            exp: u64::MAX,
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            publish: vec!["devices/+/cmd".into()],
            presence,
            ..Claims::default()
        })
    }

    fn room(name: &str, kind: RoomKind, filters: &[&str]) -> RoomSpec {
        RoomSpec {
            name: Arc::from(name),
            kind,
            filters: filters.iter().map(|f| f.to_string()).collect(),
            publish: Vec::new(),
            presence: false,
            history_limit: 0,
        }
    }

    #[test]
    fn a_filter_grants_every_room_inside_it() {
        let g = grant(&["sensors/#", "plant-7"], false);
        let topic = |f: &str| room(f, RoomKind::TopicFilter, &[f]);
        assert!(g.may_join(&topic("sensors/#")));
        assert!(g.may_join(&topic("sensors/+/temp")));
        assert!(g.may_join(&topic("sensors")));
        assert!(!g.may_join(&topic("#")));
        assert!(!g.may_join(&topic("devices/+")));
        let plant = room("plant-7", RoomKind::Configured, &["factory/7/#"]);
        assert!(g.may_join(&plant), "named");
        let inside = room("s", RoomKind::Configured, &["sensors/a", "sensors/b/#"]);
        assert!(g.may_join(&inside), "all filters inside");
        let half = room("h", RoomKind::Configured, &["sensors/a", "alerts/#"]);
        assert!(!g.may_join(&half));
        let devices = room("$devices", RoomKind::Devices, &["#"]);
        assert!(!g.may_join(&devices));
        assert!(grant(&[], true).may_join(&devices));
        assert!(grant(&["$devices"], false).may_join(&devices));
        assert!(g.may_list_members("sensors/#"), "named");
        assert!(
            !g.may_list_members("sensors/+/temp"),
            "only inside a named filter"
        );
        assert!(g.may_list_members("plant-7"));
        assert!(g.may_publish("devices/d1/cmd") && !g.may_publish("devices/d1/state"));
    }

    #[test]
    fn tokens_come_from_the_header_the_cookie_and_only_if_allowed_the_query() {
        let mut auth = AuthConfig::default();
        let uri: Uri = "/ws?token=q".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert!(token_in(&headers, &uri, &auth).is_err());
        auth.allow_query_token = true;
        assert_eq!(token_in(&headers, &uri, &auth), Ok(Some("q".into())));
        headers.insert(header::COOKIE, "a=1; sb_token=c; b=2".parse().unwrap());
        assert_eq!(token_in(&headers, &uri, &auth), Ok(Some("c".into())));
        headers.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(token_in(&headers, &uri, &auth), Ok(Some("h".into())));
        let plain: Uri = "/ws".parse().unwrap();
        assert_eq!(token_in(&HeaderMap::new(), &plain, &auth), Ok(None));
    }
}
