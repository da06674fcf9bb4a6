//! Point amounts.

/// A charge: 1..=2,000,000 points (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeAmount(i64);

impl ChargeAmount {
    pub const MAX: i64 = 2_000_000;

    pub fn parse(value: i64) -> Result<Self, String> {
        if (1..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!(
                "amount must be between 1 and {}, got {value}",
                Self::MAX
            ))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded() {
        assert!(ChargeAmount::parse(1).is_ok());
        assert!(ChargeAmount::parse(ChargeAmount::MAX).is_ok());
        assert!(ChargeAmount::parse(0).is_err());
        assert!(ChargeAmount::parse(-5).is_err());
        assert!(ChargeAmount::parse(ChargeAmount::MAX + 1).is_err());
    }
}
