//! Who is calling: the user id and role carried by the auth token.

use serde::{Deserialize, Serialize};

/// A user id: a positive i64, taken from the token's `sub` claim (users are implicit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(i64);

impl UserId {
    pub fn parse(value: i64) -> Result<Self, String> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(format!("user id must be positive, got {value}"))
        }
    }

    /// Parses the decimal string form used in the `sub` claim: canonical only, so that one
    /// user has one `sub` (no sign, no leading zeros, no spaces).
    pub fn parse_str(value: &str) -> Result<Self, String> {
        let number: i64 = value
            .parse()
            .ok()
            .filter(|number: &i64| number.to_string() == value)
            .ok_or_else(|| format!("user id must be a decimal integer, got {value:?}"))?;
        Self::parse(number)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_positive_decimals() {
        assert_eq!(UserId::parse_str("42").map(UserId::get), Ok(42));
        assert!(UserId::parse_str("0").is_err());
        assert!(UserId::parse_str("-3").is_err());
        assert!(UserId::parse_str("4x").is_err());
        assert!(UserId::parse_str("+1").is_err());
        assert!(UserId::parse_str("0001").is_err());
        assert!(UserId::parse_str(" 1").is_err());
        assert!(UserId::parse_str("99999999999999999999").is_err());
    }
}
