//! A browser connection's token (`[auth] browser = "jwt"`): admitted with it, or
//! waiting for an `auth` frame, then granted until it expires (with a warning, a
//! grace, and a refresh that may take rooms away).

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::counter;
use parking_lot::RwLock;
use switchboard_broker::auth::{Claims, SharedAccess, TokenError};
use tracing::info;

use crate::frames::{
    encode, Bare, ErrorCode, Left, Limits, MemberInfo, RequestId, TokenExpired, Welcome,
};
use crate::grant::{refusal, Grant};
use crate::hub::{Member, SeesMembers};
use crate::outbound::close_code;
use crate::session::Session;

/// How a connection is let in, decided from its upgrade request.
pub enum Admission {
    /// Browser auth is off.
    Open,
    /// The request carried a token (header, cookie or allowed query). Boxed: the
    /// upgrade task holds it, and its size, until the socket is served.
    Token(Box<Result<Claims, TokenError>>),
    /// No token yet: the first frame must be `auth`.
    AwaitFrame,
}

pub(crate) enum Stage {
    Open,
    Waiting {
        until: Instant,
    },
    /// Boxed: an idle connection without a token holds only the tag.
    Authed {
        grant: Box<Grant>,
        warned: bool,
    },
}

impl Session {
    /// Welcomes the connection, or waits for its token, or closes it.
    pub fn open(&mut self, admission: Admission) {
        match admission {
            Admission::Open => self.welcome(),
            Admission::Token(verified) => match *verified {
                Ok(claims) => self.authenticated(claims),
                Err(error) => self.refuse(&error),
            },
            Admission::AwaitFrame => {
                let wait = self.state.hub.config().auth.browser_auth_timeout_ms;
                self.stage = Stage::Waiting {
                    until: Instant::now() + Duration::from_millis(wait),
                };
            }
        }
    }

    fn welcome(&self) {
        let config = self.state.hub.config();
        self.send(encode(&Welcome {
            session: &self.member.info.session,
            user: self.member.info.user.as_deref(),
            heartbeat_ms: config.bridge.heartbeat_ms,
            limits: Limits {
                max_frame: config.bridge.max_frame.as_usize(),
                max_rooms: config.bridge.max_rooms_per_connection,
                max_requests_per_sec: config.bridge.max_requests_per_sec,
                max_payload: config.mqtt.max_payload.as_usize(),
            },
        }));
    }

    fn refuse(&self, error: &TokenError) {
        let (code, reason) = refusal(error);
        counter!("switchboard_bridge_refusals_total", "reason" => "token").increment(1);
        if switchboard_broker::repeats::allow_refusal("token") {
            info!(session = %self.member.info.session, "browser refused: {reason}");
        }
        self.member.queue.close(code, &reason);
    }

    /// The token's user names the member (presence lists, the ACL).
    fn authenticated(&mut self, claims: Claims) {
        let session = self.member.info.session.clone();
        let user = claims.sub.clone();
        let grant = Box::new(Grant::new(claims));
        self.member = Arc::new(Member {
            queue: self.member.queue.clone(),
            info: MemberInfo {
                session: session.clone(),
                user: user.as_deref().map(Arc::from),
            },
            access: SharedAccess::new(self.state.auth.clone(), (user.as_deref(), &session)),
            sees: RwLock::new(SeesMembers::Granted(grant.claims.clone())),
        });
        self.stage = Stage::Authed {
            grant,
            warned: false,
        };
        self.welcome();
    }

    pub(crate) fn grant(&self) -> Option<&Grant> {
        match &self.stage {
            Stage::Authed { grant, .. } => Some(grant),
            Stage::Open | Stage::Waiting { .. } => None,
        }
    }

    /// The next moment [`Session::check_token`] has something to do.
    pub fn token_deadline(&self) -> Option<Instant> {
        let grace = Duration::from_millis(self.state.hub.config().auth.token_expiry_grace_ms);
        match &self.stage {
            Stage::Open => None,
            Stage::Waiting { until } => Some(*until),
            Stage::Authed { grant, warned } => match warned {
                false => Some(grant.expires),
                true => Some(grant.expires + grace),
            },
        }
    }

    /// No token in time: 4001. An expired token: `token_expired`, then after the
    /// grace 4002.
    pub fn check_token(&mut self, now: Instant) {
        let Some(deadline) = self.token_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        let grace_ms = self.state.hub.config().auth.token_expiry_grace_ms;
        let queue = &self.member.queue;
        match &mut self.stage {
            Stage::Open => {}
            Stage::Waiting { .. } => queue.close(close_code::UNAUTHORIZED, "no token in time"),
            Stage::Authed { warned: true, .. } => {
                queue.close(close_code::TOKEN_EXPIRED, "token expired")
            }
            Stage::Authed { warned, .. } => {
                *warned = true;
                queue.push_frame(encode(&TokenExpired { grace_ms }));
            }
        }
    }

    /// An `auth` frame: the first token, or a fresh one for the same user.
    pub(crate) fn auth(&mut self, id: &RequestId, token: Option<&str>) {
        let Some(token) = token else {
            return self.error(id, ErrorCode::BadRequest, "auth needs a token");
        };
        if matches!(self.stage, Stage::Open) {
            let message = "authentication is off on this server ([auth] browser)";
            return self.error(id, ErrorCode::Unsupported, message);
        }
        let verified = self.state.auth.current().verify_token(token);
        let user = self.grant().map(|g| g.claims.sub.clone());
        match (user, verified) {
            (None, Ok(claims)) => self.authenticated(claims),
            (None, Err(error)) => self.refuse(&error),
            (Some(user), Ok(claims)) if user == claims.sub => {
                let grant = Box::new(Grant::new(claims));
                *self.member.sees.write() = SeesMembers::Granted(grant.claims.clone());
                self.stage = Stage::Authed {
                    grant,
                    warned: false,
                };
                self.leave_ungranted();
                self.send(encode(&Bare { kind: "ack", id }));
            }
            (Some(_), Ok(_)) => {
                let message = "a fresh token must be for the same user (sub)";
                self.error(id, ErrorCode::Unauthorized, message)
            }
            (Some(_), Err(error)) => {
                let message = format!("{error}; the current token holds until it expires");
                self.error(id, ErrorCode::Unauthorized, &message)
            }
        }
    }

    /// After a fresh token: rooms it no longer grants are left, with a `left` push.
    fn leave_ungranted(&mut self) {
        let Some(grant) = self.grant() else {
            return;
        };
        let ungranted: Vec<Arc<str>> = self
            .rooms
            .iter()
            .filter(|(_, spec)| !grant.may_join(spec))
            .map(|(name, _)| name.clone())
            .collect();
        for room in ungranted {
            self.rooms.remove(&room);
            self.state.hub.leave(self.conn, &room);
            self.send(encode(&Left {
                id: &None,
                room: &room,
                reason: Some("forbidden"),
            }));
        }
    }
}
