//! Tokens from an implementer's command (`--token-cmd`, spec/running-the-suite.md).

use super::TokenSource;

/// Tokens from an implementer's command, e.g.
/// `driftless token --data DIR --user {user} --space {space} --scope {scope} --ttl {ttl}`.
/// The placeholders are replaced by shell-quoted values and the command runs under `sh -c`;
/// its standard output, trimmed, is the Token.
pub struct CommandTokens {
    template: String,
}

impl CommandTokens {
    /// A source running `template`.
    pub fn new(template: &str) -> Self {
        Self {
            template: template.to_owned(),
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl TokenSource for CommandTokens {
    fn token(&self, user: &str, space: &str, scope: &str, ttl_s: i64) -> Result<String, String> {
        let command = self
            .template
            .replace("{user}", &shell_quote(user))
            .replace("{space}", &shell_quote(space))
            .replace("{scope}", &shell_quote(scope))
            .replace("{ttl}", &shell_quote(&ttl_s.to_string()));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .map_err(|e| format!("cannot run the token command: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "the token command failed ({}): {}",
                out.status,
                stderr.lines().next().unwrap_or("")
            ));
        }
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err("the token command printed no single token".into());
        }
        Ok(token)
    }
}
