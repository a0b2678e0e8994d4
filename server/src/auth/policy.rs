//! The password policy, per NIST SP 800-63B (rev. 4, 3.1.1.2): a length floor, no composition
//! rules, and a check against known-bad passwords (common and breached ones, repetitive ones,
//! and words from the account's own context). Applied wherever a password is set: REST user
//! creation and changes, and the admin CLI.

use std::collections::HashSet;
use std::sync::OnceLock;

/// NIST SP 800-63B rev. 4: at least 15 characters when the password is the only factor (it is
/// here). Counted in characters, not bytes, and spaces count.
pub const MIN_PASSWORD_LEN: usize = 15;
/// NIST asks verifiers to accept at least 64 characters; the cap keeps hashing input bounded.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Bundled list of common and breached passwords (see the file's header).
const COMMON: &str = include_str!("common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Who the password is for: it must not be (or contain) their email or organisation name.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyContext<'a> {
    pub email: Option<&'a str>,
    pub org_name: Option<&'a str>,
}

/// `Ok`, or a message a person can act on (sent as a 422 naming the `password` field).
pub fn check_policy(password: &str, ctx: PolicyContext<'_>) -> Result<(), String> {
    if password.trim().is_empty() {
        return Err("password must not be only whitespace".into());
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    let lower = password.to_lowercase();
    // "aaaaaaaaaaaaaaa", "abababababababab", "1111111111111112": repetition, not length.
    let distinct: HashSet<char> = lower.chars().filter(|c| !c.is_whitespace()).collect();
    if distinct.len() < 4 {
        return Err("password is too repetitive: use more different characters".into());
    }
    if is_common(&lower) {
        return Err("password is on a list of common or breached passwords; choose another".into());
    }
    for (what, value) in [
        ("email address", ctx.email),
        ("organisation name", ctx.org_name),
    ] {
        let Some(value) = value.map(|v| v.trim().to_lowercase()) else {
            continue;
        };
        // Very short names ("AB") would refuse too much by substring.
        if value.chars().count() >= 4 && lower.contains(&value) {
            return Err(format!("password must not contain your {what}"));
        }
    }
    if let Some(local) = ctx
        .email
        .and_then(|e| e.split('@').next())
        .map(str::to_lowercase)
    {
        if local.chars().count() >= 4 && lower.contains(&local) {
            return Err("password must not contain your email address".into());
        }
    }
    Ok(())
}

/// On the list as typed, or a listed word with only digits, spaces and punctuation around it
/// ("Password-2024!!!!", "monkey 123456789"), or a listed password repeated.
fn is_common(lower: &str) -> bool {
    let list = common();
    if list.contains(lower) {
        return true;
    }
    let letters: String = lower.chars().filter(|c| c.is_alphabetic()).collect();
    let digits: String = lower.chars().filter(|c| c.is_ascii_digit()).collect();
    let core = if letters.is_empty() { digits } else { letters };
    if core.is_empty() || list.contains(core.as_str()) {
        return true;
    }
    // "qwertyqwertyqwerty": a listed password repeated.
    (1..=core.len() / 2).any(|n| {
        core.len() % n == 0
            && core.is_char_boundary(n)
            && core[..n].repeat(core.len() / n) == core
            && list.contains(&core[..n])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PolicyContext<'static> {
        PolicyContext {
            email: Some("jane.citizen@acme-fire.test"),
            org_name: Some("Acme Fire"),
        }
    }

    #[test]
    fn refuses_what_issue_12_found_accepted() {
        for weak in [
            "            ",
            "               ",
            "aaaaaaaaaaaaaaaaaa",
            "jane.citizen@acme-fire.test",
            "change-me-now-please",
            "Password-12345678!",
            "qwertyqwertyqwerty",
            "123456789012345",
            "my acme fire password",
            "jane.citizen is my name",
            "short",
        ] {
            assert!(check_policy(weak, ctx()).is_err(), "accepted {weak:?}");
        }
    }

    #[test]
    fn accepts_long_uncommon_passwords() {
        for ok in [
            "correct-stapler-hinge-47",
            "a long sentence about ladders",
            "pw-3f2c9a0e6b7d4c1e8f5a2b3c4d5e6f7a",
            "Überprüfung der Sprinkler 2026",
        ] {
            assert!(check_policy(ok, ctx()).is_ok(), "refused {ok:?}");
        }
        assert!(common().len() > 5000, "the bundled list is loaded");
    }
}
