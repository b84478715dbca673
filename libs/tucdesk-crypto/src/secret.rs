//! [`SecretString`]: a secret text handed to a caller once (a token, a code, a key in text
//! form). It is wiped on drop and its `Debug` never shows it, so a `{:?}` of any struct holding
//! one cannot leak it into a log line.

use std::fmt;
use std::ops::Deref;

use zeroize::Zeroizing;

/// Secret text: zeroized on drop, redacted in `Debug`. Dereferences to the `String` for use.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The secret, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl Deref for SecretString {
    type Target = String;

    fn deref(&self) -> &String {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<Zeroizing<String>> for SecretString {
    fn from(text: Zeroizing<String>) -> Self {
        Self(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = SecretString::from("hunter2-token".to_owned());
        assert_eq!(format!("{secret:?}"), "SecretString(<redacted>)");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: SecretString,
        }
        assert!(
            !format!(
                "{:?}",
                Holder {
                    token: secret.clone()
                }
            )
            .contains("hunter2")
        );
        assert_eq!(secret.expose(), "hunter2-token");
        assert_eq!(secret.as_str(), "hunter2-token");
    }
}
