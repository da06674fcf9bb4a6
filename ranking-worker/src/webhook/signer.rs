//! The webhook's signing secrets and signatures, per the Standard Webhooks specification: each
//! secret is `whsec_` + base64 of at least 24 random bytes; a request carries one `v1,<base64>`
//! signature per secret in `webhook-signature`, so a receiver rotating its secret accepts
//! requests during the change. The HMAC is the `standardwebhooks` crate's, not ours.

use std::fmt;

use standardwebhooks::Webhook;

/// The spec's prefix of a secret.
const PREFIX: &str = "whsec_";
/// The spec asks for secrets of 24 to 64 random bytes; fewer is refused.
pub const MIN_SECRET_BYTES: usize = 24;

/// One or more secrets, each of which signs every request. Never printed.
pub struct Signer {
    keys: Vec<Webhook>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({} secrets, redacted)", self.keys.len())
    }
}

impl Signer {
    /// Parses `SOLD_OUT_WEBHOOK_SECRET`: space-separated `whsec_...` secrets. The error names
    /// what is wrong and which secret (by its place), never the secret itself.
    pub fn parse(secrets: &str) -> Result<Self, String> {
        let words: Vec<&str> = secrets.split_whitespace().collect();
        if words.is_empty() {
            return Err(
                "SOLD_OUT_WEBHOOK_SECRET is empty; give one or more whsec_ secrets \
                        (space-separated)"
                    .to_owned(),
            );
        }
        let keys = words
            .iter()
            .enumerate()
            .map(|(index, word)| {
                parse_one(word).map_err(|why| {
                    let which = if words.len() == 1 {
                        "SOLD_OUT_WEBHOOK_SECRET".to_owned()
                    } else {
                        format!("secret {} of SOLD_OUT_WEBHOOK_SECRET", index + 1)
                    };
                    format!("{which} {why}")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// The `webhook-signature` header for one attempt: a signature per secret.
    pub fn sign(&self, event_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
        let signatures = self
            .keys
            .iter()
            .map(|key| key.sign(event_id, timestamp, body))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("cannot sign the request: {error}"))?;
        Ok(signatures.join(" "))
    }
}

fn parse_one(secret: &str) -> Result<Webhook, String> {
    let Some(encoded) = secret.strip_prefix(PREFIX) else {
        return Err(format!(
            "does not start with {PREFIX} (the Standard Webhooks form is {PREFIX} + base64)"
        ));
    };
    let key = Webhook::new(secret).map_err(|_| format!("is not {PREFIX} + base64"))?;
    // Webhook::new accepted canonical padded base64, whose length says how many bytes it holds.
    let bytes = encoded.len() / 4 * 3 - encoded.bytes().rev().take_while(|b| *b == b'=').count();
    if bytes < MIN_SECRET_BYTES {
        return Err(format!(
            "holds {bytes} bytes; at least {MIN_SECRET_BYTES} random bytes are required"
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 24 bytes, base64.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_secret_signs_as_the_standard_webhooks_reference_does() {
        // The crate's own test vector (a 24-byte secret).
        let signer = Signer::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            signer
                .sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body)
                .unwrap(),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn several_secrets_sign_with_each() {
        let signer = Signer::parse(&format!(
            " {SECRET}  whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD "
        ))
        .unwrap();
        let header = signer.sign("id", 1, b"{}").unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|part| part.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn anything_else_is_refused_naming_what_is_wrong_but_not_the_secret() {
        let refused = |secrets: &str| Signer::parse(secrets).unwrap_err();
        assert!(refused("").contains("empty"));
        assert!(refused("   ").contains("empty"));
        let no_prefix = refused("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(
            no_prefix.contains("does not start with whsec_"),
            "{no_prefix}"
        );
        assert!(!no_prefix.contains("MfKQ9r8G"), "never the secret itself");
        assert!(refused("whsec_not*base64").contains("is not whsec_ + base64"));
        // 18 bytes: too short.
        let short = refused("whsec_MfKQ9r8GKYqrTwjUPD8ILPZI");
        assert!(short.contains("holds 18 bytes"), "{short}");
        let second = refused(&format!("{SECRET} whsec_c2hvcnQ="));
        assert!(
            second.starts_with("secret 2 of SOLD_OUT_WEBHOOK_SECRET holds 5 bytes"),
            "{second}"
        );
        assert!(!format!("{:?}", Signer::parse(SECRET).unwrap()).contains("MfKQ"));
    }
}
