//! Dashboard sessions: `POST /login` with the admin token gives the browser a random session id
//! in an HttpOnly, SameSite=Strict cookie; the token itself never goes into a cookie. Sessions
//! live in memory, so a restart logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::HttpRequest;
use rand::Rng;

/// The session cookie's name.
pub const COOKIE: &str = "smartlink_session";

/// A session lasts this long after login.
pub const LIFETIME_MS: i64 = 12 * 3_600_000;

/// At most this many sessions at once; a new login past it ends the oldest.
const MAX_SESSIONS: usize = 1024;

#[derive(Debug, Default)]
pub struct Sessions {
    /// Session id → expiry (ms since the epoch).
    live: Mutex<HashMap<String, i64>>,
}

impl Sessions {
    /// Starts a session; returns its id (64 hex digits: 256 random bits from a CSPRNG).
    pub fn create(&self, now_ms: i64) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, expires| *expires > now_ms);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), now_ms + LIFETIME_MS);
        id
    }

    /// Whether `id` names a session that has not expired.
    pub fn is_valid(&self, id: &str, now_ms: i64) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(id).is_some_and(|expires| *expires > now_ms)
    }

    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The session id the request's `Cookie` header carries, if any.
pub fn cookie(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// `Set-Cookie` for a new session (`Secure` when the request came over HTTPS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_until_it_expires_or_ends() {
        let sessions = Sessions::default();
        let id = sessions.create(1_000);
        assert_eq!(id.len(), 64);
        assert!(sessions.is_valid(&id, 1_000 + LIFETIME_MS - 1));
        assert!(!sessions.is_valid(&id, 1_000 + LIFETIME_MS));
        assert!(!sessions.is_valid("nope", 1_000));
        sessions.end(&id);
        assert!(!sessions.is_valid(&id, 1_001));
        assert_ne!(sessions.create(1_000), sessions.create(1_000));
    }
}
