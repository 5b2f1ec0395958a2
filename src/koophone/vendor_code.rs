//! The vendor's business error codes: the one table of those this version knows, read whatever the
//! prefix, and the vendor's own account of a failure (its code and message).

use std::fmt;

/// A business error code of the vendor (koophone-api.md, the table of codes).
///
/// The pages spell the same code with several prefixes (`KOOPHONE.API.`, `KooPhone.API.`, `KP.API.`,
/// `KPAPI.`), so a code is recognised by its number after any of them, case-insensitively; anything
/// else is kept whole in [`VendorCode::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr)]
pub enum VendorCode {
    /// 0000: the tenant does not exist.
    TenantNotFound,
    /// 0002: the `x-request-id` header is missing.
    RequestIdMissing,
    /// 0004: the project id does not exist.
    ProjectNotFound,
    /// 1000: a request parameter is wrong.
    InvalidParameter,
    /// 1001: no permission on an instance.
    NoPermission,
    /// 1002: the instances are not in the same region.
    RegionMismatch,
    /// 1004: the service is not subscribed.
    NotSubscribed,
    /// 1012: the instance does not belong to the tenant.
    NotOwned,
    /// 2004: the instance is frozen.
    Frozen,
    /// 2005: the instance is being restored.
    Restoring,
    /// 2006: the instance is being backed up.
    BackingUp,
    /// 4001: the instance does not exist.
    InstanceNotFound,
    /// 9999: an internal error of the service.
    Internal,
    /// A code this version does not know, kept exactly as the vendor sent it.
    Other(String),
}

/// The prefixes the vendor's pages put before a code's number, lower-cased.
const CODE_PREFIXES: [&str; 4] = ["koophone.api.", "kp.api.", "kpapi.", "kpapi"];

/// Every code this version knows, by its number: the one table of them.
const KNOWN_CODES: [(&str, VendorCode); 13] = [
    ("0000", VendorCode::TenantNotFound),
    ("0002", VendorCode::RequestIdMissing),
    ("0004", VendorCode::ProjectNotFound),
    ("1000", VendorCode::InvalidParameter),
    ("1001", VendorCode::NoPermission),
    ("1002", VendorCode::RegionMismatch),
    ("1004", VendorCode::NotSubscribed),
    ("1012", VendorCode::NotOwned),
    ("2004", VendorCode::Frozen),
    ("2005", VendorCode::Restoring),
    ("2006", VendorCode::BackingUp),
    ("4001", VendorCode::InstanceNotFound),
    ("9999", VendorCode::Internal),
];

impl VendorCode {
    /// Parses a vendor `error_code` (anything but the success code `"0"`).
    pub fn parse(raw: &str) -> VendorCode {
        let lower = raw.trim().to_ascii_lowercase();
        let number = CODE_PREFIXES
            .iter()
            .find_map(|prefix| lower.strip_prefix(prefix))
            .unwrap_or(&lower);
        KNOWN_CODES.iter().find(|(n, _)| *n == number).map_or_else(
            || VendorCode::Other(raw.trim().to_owned()),
            |(_, c)| c.clone(),
        )
    }

    /// A short, bounded name for logs, conditions and metric labels: the variant's (`Other` gives
    /// `Other`).
    pub fn name(&self) -> &'static str {
        self.into()
    }

    /// The code as `KOOPHONE.API.nnnn`, or the vendor's own text for an unknown code.
    pub fn canonical(&self) -> String {
        if let VendorCode::Other(raw) = self {
            return raw.clone();
        }
        // NB: every other variant is in the table (a test checks each one round-trips).
        let number = KNOWN_CODES
            .iter()
            .find(|(_, c)| c == self)
            .map_or("????", |(n, _)| n);
        format!("KOOPHONE.API.{number}")
    }

    /// True when the same call may succeed later without any change on our side.
    pub fn is_transient(&self) -> bool {
        matches!(self, VendorCode::Internal)
    }
}

impl fmt::Display for VendorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// The vendor's own account of a failure: its code and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorError {
    pub code: VendorCode,
    pub message: String,
}

impl fmt::Display for VendorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_whatever_the_prefix_and_case() {
        for raw in [
            "KOOPHONE.API.2006",
            "KooPhone.API.2006",
            "kp.api.2006",
            "KPAPI.2006",
            "KPAPI2006",
            "2006",
        ] {
            assert_eq!(VendorCode::parse(raw), VendorCode::BackingUp, "{raw}");
        }
        assert_eq!(
            VendorCode::parse("KooPhone.API.4001"),
            VendorCode::InstanceNotFound
        );
        assert_eq!(VendorCode::parse("koophone.api.9999"), VendorCode::Internal);
    }

    #[test]
    fn every_known_code_round_trips_and_has_its_own_name() {
        let mut names = std::collections::HashSet::new();
        for (number, code) in &KNOWN_CODES {
            assert_eq!(code.canonical(), format!("KOOPHONE.API.{number}"));
            assert_eq!(&VendorCode::parse(&code.canonical()), code);
            assert!(names.insert(code.name()), "{} twice", code.name());
            assert_ne!(code.name(), "Other");
        }
        assert_eq!(VendorCode::TenantNotFound.name(), "TenantNotFound");
    }

    #[test]
    fn unknown_codes_are_kept_whole() {
        let code = VendorCode::parse("APIGW.0301");
        assert_eq!(code, VendorCode::Other("APIGW.0301".into()));
        assert_eq!(code.to_string(), "APIGW.0301");
        assert_eq!(code.name(), "Other");
    }
}
