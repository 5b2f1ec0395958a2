//! The vendor token, held in a [`secrecy`] box: neither `Debug` nor `Display` can show it, and it
//! is zeroed when dropped.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// An IAM token for the `X-Auth-Token` header. Its value leaves this type only through
/// [`Token::expose`], which the client calls when it builds a request header.
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    /// Wraps a token value, trimming the whitespace that files and environment variables carry.
    pub fn new(value: impl Into<String>) -> Token {
        Token(secret(value.into()))
    }

    /// The token's value, for the request header only: never log or format it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// True when there is no token at all (an empty file or variable).
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Token {}

/// A secret value (a password, a secret key, a security token) from a Secret or a file, without
/// the whitespace those carry.
pub fn secret(value: String) -> SecretString {
    SecretString::from(value.trim().to_owned())
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let token = Token::new("  s3cr3t-value\n");
        assert_eq!(token.expose(), "s3cr3t-value");
        assert!(!format!("{token:?}").contains("s3cr3t"));
        assert!(!format!("{token}").contains("s3cr3t"));
        assert!(!format!("{:#?}", Some(&token)).contains("s3cr3t"));
    }
}
