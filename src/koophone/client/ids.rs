//! The vendor's rules for a call's instance ids, checked before anything is sent: at most 100 ids a
//! call, each of 1 to 32 characters.

use crate::koophone::error::{Error, excerpt};

/// The vendor's limit on ids in one call.
pub const MAX_IDS_PER_CALL: usize = 100;

/// The vendor's limit on the characters of one instance id.
pub const MAX_ID_CHARS: usize = 32;

/// The vendor's rule for an instance id, from its documentation: 1 to [`MAX_ID_CHARS`] characters.
/// (The CloudPhone schema's rule is stricter; a test checks that every id it admits passes this one.)
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id.len() > MAX_ID_CHARS && id.chars().count() > MAX_ID_CHARS {
        return Err("is longer than 32 characters");
    }
    Ok(())
}

fn validate_ids(ids: &[String]) -> Result<(), Error> {
    for id in ids {
        check_id(id).map_err(|reason| Error::InvalidInstanceId {
            id: excerpt(id),
            reason,
        })?;
    }
    Ok(())
}

/// The vendor's rule for a user id (`user_id` of a prepare call): 1 to 32 characters.
pub(super) fn validate_user(user_id: &str) -> Result<(), Error> {
    check_id(user_id).map_err(|reason| Error::InvalidUserId {
        id: excerpt(user_id),
        reason,
    })
}

pub(super) fn validate_chunk(ids: &[String]) -> Result<(), Error> {
    if ids.len() > MAX_IDS_PER_CALL {
        return Err(Error::TooManyIds { count: ids.len() });
    }
    validate_ids(ids)
}
