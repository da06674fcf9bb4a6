//! Seat numbers.

/// A seat number: 1-based. Whether it exists depends on the schedule's seat count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatNo(i32);

impl SeatNo {
    pub fn parse(value: i64) -> Result<Self, String> {
        i32::try_from(value)
            .ok()
            .filter(|n| *n >= 1)
            .map(Self)
            .ok_or_else(|| format!("seat_no must be between 1 and {}, got {value}", i32::MAX))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_numbers_start_at_one() {
        assert_eq!(SeatNo::parse(1).map(SeatNo::get), Ok(1));
        assert!(SeatNo::parse(0).is_err());
        assert!(SeatNo::parse(-1).is_err());
        assert!(SeatNo::parse(i64::from(i32::MAX) + 1).is_err());
    }
}
