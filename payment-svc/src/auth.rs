//! Bearer-token authentication: HS256 JWTs with `sub` (user id), `role` and `exp` (SPEC §3).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};

use crate::domain::{Role, UserId};
use crate::error::ApiError;

/// The signing secret: at least 32 bytes, as HS256 needs a key as long as its hash, and not a
/// placeholder. Its `Debug` prints no byte of it, so no log or panic message can leak it.
#[derive(Clone, Debug)]
pub struct JwtSecret(SecretSlice<u8>);

impl JwtSecret {
    pub const MIN_LEN: usize = 32;

    /// Prefixes of secrets that were printed somewhere as examples to replace (compose.yaml
    /// shipped `change-me-to-a-secret-of-at-least-32-bytes` as its fallback). Anyone who read
    /// them could mint admin tokens for a deployment that kept one.
    const PLACEHOLDERS: [&'static str; 3] = ["change-me", "changeme", "change_me"];

    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() < Self::MIN_LEN {
            return Err(format!(
                "must be at least {} bytes, got {}",
                Self::MIN_LEN,
                value.len()
            ));
        }
        let lowercase = value.to_ascii_lowercase();
        if Self::PLACEHOLDERS
            .iter()
            .any(|placeholder| lowercase.starts_with(placeholder))
        {
            return Err(
                "is a placeholder published as an example; set a random one (openssl rand -hex 32)"
                    .into(),
            );
        }
        Ok(Self(value.as_bytes().to_vec().into()))
    }
}

/// Longest a token may be valid for, counted from now: `token --ttl` mints no longer, and a
/// token whose `exp` lies further ahead is refused, so a leaked token lapses within it.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: u64,
    /// Typed here, not only checked by jsonwebtoken (which skips an `nbf` it cannot read as a
    /// number), so a malformed one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// Verifies tokens. Built once at startup.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(secret: &JwtSecret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Exact times: no leeway for expiry or `nbf`.
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.0.expose_secret()),
            validation,
        }
    }

    fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                ApiError::Unauthenticated(match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                    ErrorKind::InvalidSignature => "the token's signature is invalid",
                    _ => "the token is malformed",
                })
            })?
            .claims;
        let now = jsonwebtoken::get_current_timestamp();
        // jsonwebtoken refuses only `exp < now`; RFC 7519 §4.1.4 refuses the token from the
        // second `exp` names on.
        if claims.exp <= now {
            return Err(ApiError::Unauthenticated("the token has expired"));
        }
        if claims.exp > now.saturating_add(MAX_TOKEN_TTL.as_secs()) {
            return Err(ApiError::Unauthenticated(
                "the token's exp is more than 30 days ahead",
            ));
        }
        let user = UserId::parse_str(&claims.sub)
            .map_err(|_| ApiError::Unauthenticated("the token's sub is not a positive user id"))?;
        Ok(Caller {
            user,
            role: claims.role,
        })
    }
}

/// Signs a token for `user`, valid for `ttl` (the `payment-svc token` command).
pub fn mint_token(
    secret: &JwtSecret,
    user: UserId,
    role: Role,
    ttl: Duration,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        ttl <= MAX_TOKEN_TTL,
        "a token may be valid for at most 30 days, not {}",
        humantime::format_duration(ttl)
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let claims = Claims {
        sub: user.to_string(),
        role,
        exp: (now + ttl).as_secs(),
        nbf: None,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.0.expose_secret()),
    )?)
}

/// An authenticated caller of any role.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user: UserId,
    pub role: Role,
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated(
                "the Authorization header is missing",
            ))?;
        let token =
            header
                .to_str()
                .ok()
                .and_then(bearer_token)
                .ok_or(ApiError::Unauthenticated(
                    "the Authorization header must be `Bearer <token>`",
                ))?;
        Arc::<TokenVerifier>::from_ref(state).verify(token)
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110 §11.1) and spaces separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An authenticated caller with the admin role.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Caller);

impl<S> FromRequestParts<S> for Admin
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.role {
            Role::Admin => Ok(Admin(caller)),
            Role::User => Err(ApiError::Forbidden),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> JwtSecret {
        JwtSecret::parse(&"s".repeat(32)).unwrap()
    }

    #[test]
    fn secrets_shorter_than_32_bytes_are_refused() {
        assert!(JwtSecret::parse(&"s".repeat(31)).is_err());
        let printed = format!("{:?}", secret());
        assert!(
            !printed.contains("sss"),
            "Debug shows the secret: {printed}"
        );
    }

    #[test]
    fn placeholder_secrets_are_refused() {
        for placeholder in [
            "change-me-to-a-secret-of-at-least-32-bytes",
            "CHANGE-ME-please-to-something-of-32-bytes",
            "changeme-changeme-changeme-changeme",
        ] {
            assert!(JwtSecret::parse(placeholder).is_err(), "{placeholder}");
        }
    }

    #[test]
    fn minted_tokens_verify() {
        let token = mint_token(
            &secret(),
            UserId::parse(7).unwrap(),
            Role::Admin,
            Duration::from_secs(60),
        )
        .unwrap();
        let caller = TokenVerifier::new(&secret()).verify(&token).unwrap();
        assert_eq!((caller.user.get(), caller.role), (7, Role::Admin));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn tokens_live_at_most_30_days() {
        let mint = |ttl| mint_token(&secret(), UserId::parse(7).unwrap(), Role::User, ttl);
        assert!(mint(MAX_TOKEN_TTL).is_ok());
        assert!(mint(MAX_TOKEN_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn another_secret_is_refused() {
        let other = JwtSecret::parse(&"o".repeat(32)).unwrap();
        let token = mint_token(
            &other,
            UserId::parse(7).unwrap(),
            Role::User,
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(TokenVerifier::new(&secret()).verify(&token).is_err());
    }
}
