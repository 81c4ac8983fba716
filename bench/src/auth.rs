//! Registry authentication: basic credentials and the Docker token flow.
//!
//! A registry that wants a token answers 401 with
//! `WWW-Authenticate: Bearer realm="..",service="..",scope=".."`. The
//! client asks the realm for a token (with basic credentials when it has
//! them), caches it per scope and retries. A registry that wants basic
//! credentials says `Basic realm=".."`; the client then sends them on every
//! request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=".."`.
    Basic,
    /// `Bearer realm="..",service="..",scope=".."`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// Service name to pass to the token endpoint.
        service: Option<String>,
        /// Scope the request needs, when the registry names one.
        scope: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` header value.
///
/// Returns `None` for a scheme other than Basic or Bearer or a Bearer
/// challenge without a realm.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = match value.find(' ') {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, ""),
    };

    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }

    let params = parse_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// Splits `k="v",k2=v2` into a map; quoted values may hold commas.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = input.chars().peekable();

    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }

        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }

        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    _ => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }

        params.insert(key.trim().to_ascii_lowercase(), value);
    }

    params
}

/// Credentials and cached tokens of one target.
#[derive(Default)]
pub struct Auth {
    /// User name for basic auth or the token endpoint.
    pub user: Option<String>,
    /// Password for basic auth or the token endpoint.
    pub password: Option<String>,
    /// A fixed bearer token, sent on every request.
    pub static_token: Option<String>,
    state: Mutex<AuthState>,
}

#[derive(Default)]
struct AuthState {
    uses_basic: bool,
    /// Token per request class (repository and whether it writes).
    by_class: HashMap<(String, bool), Token>,
    /// Token per scope string, so requests of other classes that need the
    /// same scope do not fetch again.
    by_scope: HashMap<String, Token>,
}

#[derive(Clone)]
struct Token {
    value: String,
    expires: Option<Instant>,
}

impl Token {
    fn is_fresh(&self) -> bool {
        self.expires.is_none_or(|at| Instant::now() < at)
    }
}

/// What to put in an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Basic` with these credentials.
    Basic(String, String),
    /// `Bearer` with this token.
    Bearer(String),
}

impl Auth {
    /// Credentials for a target; any may be absent.
    pub fn new(
        user: Option<String>,
        password: Option<String>,
        static_token: Option<String>,
    ) -> Auth {
        Auth {
            user,
            password,
            static_token,
            state: Mutex::default(),
        }
    }

    /// The credential to send for a request on `repository` (empty for
    /// registry-wide calls), before any challenge.
    pub fn credential(&self, repository: &str, write: bool) -> Option<Credential> {
        if let Some(token) = &self.static_token {
            return Some(Credential::Bearer(token.clone()));
        }

        let state = self.state.lock().ok()?;
        if state.uses_basic {
            return self.basic();
        }
        let key = (repository.to_string(), write);
        let token = state.by_class.get(&key)?;
        token
            .is_fresh()
            .then(|| Credential::Bearer(token.value.clone()))
    }

    /// Basic credentials, when a user is configured.
    pub fn basic(&self) -> Option<Credential> {
        let user = self.user.clone()?;
        let password = self.password.clone().unwrap_or_default();
        Some(Credential::Basic(user, password))
    }

    /// Remembers that the registry wants basic credentials.
    pub fn use_basic(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.uses_basic = true;
        }
    }

    /// A cached, fresh token for `scope`.
    pub fn token_for_scope(&self, scope: &str) -> Option<String> {
        let state = self.state.lock().ok()?;
        let token = state.by_scope.get(scope)?;
        token.is_fresh().then(|| token.value.clone())
    }

    /// Caches a token for a scope and a request class.
    pub fn store_token(
        &self,
        scope: &str,
        repository: &str,
        write: bool,
        value: String,
        expires_in: Option<Duration>,
    ) {
        // NOTE: expire a little early so a token is not sent as it lapses.
        let expires =
            expires_in.map(|d| Instant::now() + d.saturating_sub(Duration::from_secs(10)));
        let token = Token { value, expires };
        if let Ok(mut state) = self.state.lock() {
            state.by_scope.insert(scope.to_string(), token.clone());
            state
                .by_class
                .insert((repository.to_string(), write), token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let cases: &[(&str, Option<Challenge>)] = &[
            ("Basic realm=\"Registry\"", Some(Challenge::Basic)),
            (
                "Bearer realm=\"https://auth.example/token\",\
                 service=\"registry.example\",\
                 scope=\"repository:a/b:pull,push\"",
                Some(Challenge::Bearer {
                    realm: "https://auth.example/token".into(),
                    service: Some("registry.example".into()),
                    scope: Some("repository:a/b:pull,push".into()),
                }),
            ),
            (
                "bearer realm=http://t/x, scope=\"registry:catalog:*\"",
                Some(Challenge::Bearer {
                    realm: "http://t/x".into(),
                    service: None,
                    scope: Some("registry:catalog:*".into()),
                }),
            ),
            ("Bearer service=\"x\"", None),
            ("Negotiate abc", None),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_challenge(input), want, "{input}");
        }
    }

    #[test]
    fn tokens_are_cached_per_class_and_scope() {
        let auth = Auth::default();
        assert_eq!(auth.credential("a", true), None);
        auth.store_token("s", "a", true, "t1".into(), None);
        assert_eq!(
            auth.credential("a", true),
            Some(Credential::Bearer("t1".into()))
        );
        assert_eq!(auth.credential("a", false), None);
        assert_eq!(auth.token_for_scope("s").as_deref(), Some("t1"));
    }

    #[test]
    fn expired_tokens_are_not_sent() {
        let auth = Auth::default();
        auth.store_token("s", "a", false, "t".into(), Some(Duration::ZERO));
        assert_eq!(auth.credential("a", false), None);
    }
}
