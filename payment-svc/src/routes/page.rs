//! Cursor pagination for the list endpoints: `?limit=N&after=CURSOR`, and `next_after` in the
//! response, set when the page is full and so may have more behind it.

use crate::error::ApiError;

/// How many items a page of a list holds, by default and at most.
#[derive(Debug, Clone, Copy)]
pub struct PageSize {
    pub default: i64,
    pub max: i64,
}

/// Concerts, reservations: small items, small pages.
pub const LIST: PageSize = PageSize {
    default: 20,
    max: 100,
};

impl PageSize {
    /// The requested `limit`, checked: 1..=max, or the default when absent.
    pub fn limit(self, requested: Option<i64>) -> Result<i64, ApiError> {
        let limit = requested.unwrap_or(self.default);
        if (1..=self.max).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::malformed(format!(
                "limit must be between 1 and {}, got {limit}",
                self.max
            )))
        }
    }
}

/// The cursor of the page after `items`: the last item's, if the page is full.
pub fn next_after<T, C>(items: &[T], limit: i64, cursor: impl Fn(&T) -> C) -> Option<C> {
    (items.len() as i64 == limit)
        .then(|| items.last().map(cursor))
        .flatten()
}
