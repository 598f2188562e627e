//! What runs on the remote host. The SSH `exec` request carries only a fixed bootstrap (no
//! parameter, no secret: it is what the remote `ps` shows); the real script — exports, `cd`,
//! the command, sudo's password — travels over the channel's stdin and is evaluated by the
//! login shell, which sshd made the leader of a new session, so its process group holds
//! everything the action starts.

use std::collections::BTreeMap;

use crate::local::quote;

/// Prefix of the line the bootstrap writes to stderr before anything else: its pid, which is
/// the process group to kill when the channel alone cannot stop it.
const PGID_MARKER: &str = "squall-pgid:";

/// The command line of the `exec` request.
pub const BOOTSTRAP: &str = "printf 'squall-pgid:%s\\n' \"$$\" >&2; squall_script=$(cat) && eval \"$squall_script\" </dev/null";

/// How the action's command is wrapped.
pub struct Plan<'a> {
    /// `env` plus `ST2_ACTION_*` and the secret script arguments, exported (sorted).
    pub env: &'a BTreeMap<String, String>,
    /// Already in shell syntax: StackStorm leaves `cwd` unquoted for commands, quoted for scripts.
    pub cwd: String,
    /// The command line, or the quoted remote script path and its arguments.
    pub line: &'a str,
    pub sudo: bool,
    pub sudo_password: Option<&'a str>,
}

/// The script sent over stdin. Exported values reach sudo'd commands through `sudo -E`; the
/// sudo password is written by the shell's builtin `printf`, so no process's argv holds it.
pub fn script(plan: &Plan<'_>) -> String {
    let mut text = String::new();
    if !plan.env.is_empty() {
        let exports: Vec<String> = plan.env.iter().map(|(k, v)| format!("{}={}", quote(k), quote(v))).collect();
        text.push_str(&format!("export {}\n", exports.join(" ")));
    }
    let body = format!("cd {} && {}", plan.cwd, plan.line);
    if !plan.sudo {
        text.push_str(&body);
    } else if let Some(password) = plan.sudo_password {
        text.push_str(&format!("printf '%s\\n' {} | sudo -S -p '' -E -- bash -c {}", quote(password), quote(&body)));
    } else {
        text.push_str(&format!("sudo -E -- bash -c {}", quote(&body)));
    }
    text.push('\n');
    text
}

/// Takes the bootstrap's pid line out of the stderr bytes. Lines before it (a login script
/// may print some) pass through untouched; once found, everything passes.
#[derive(Debug, Default)]
pub struct PgidScanner {
    pending: Vec<u8>,
    pgid: Option<u32>,
    done: bool,
}

/// Give up looking after this many bytes without the marker.
const SCAN_LIMIT: usize = 64 * 1024;

impl PgidScanner {
    pub fn pgid(&self) -> Option<u32> {
        self.pgid
    }

    /// Returns the bytes that are real stderr output.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        if self.done {
            return data.to_vec();
        }
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if let Some(pid) = std::str::from_utf8(&line).ok().and_then(|l| l.trim_end().strip_prefix(PGID_MARKER)) {
                self.pgid = pid.parse().ok();
                self.done = true;
                out.append(&mut self.pending);
                return out;
            }
            out.extend_from_slice(&line);
        }
        if self.pending.len() > SCAN_LIMIT {
            self.done = true;
            out.append(&mut self.pending);
        }
        out
    }

    /// Whatever is still held when the stream ends.
    pub fn finish(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts() {
        let env = BTreeMap::from([("B".to_string(), "two words".to_string()), ("A".to_string(), "1".to_string())]);
        let plan = Plan { env: &env, cwd: "/tmp".into(), line: "echo hi", sudo: false, sudo_password: None };
        assert_eq!(script(&plan), "export A=1 B='two words'\ncd /tmp && echo hi\n");
        let plan = Plan { sudo: true, sudo_password: Some("pa ss"), ..plan };
        assert_eq!(script(&plan), "export A=1 B='two words'\nprintf '%s\\n' 'pa ss' | sudo -S -p '' -E -- bash -c 'cd /tmp && echo hi'\n");
        let none = BTreeMap::new();
        let plan = Plan { env: &none, cwd: "'/a b'".into(), line: "x", sudo: true, sudo_password: None };
        assert_eq!(script(&plan), "sudo -E -- bash -c 'cd '\\''/a b'\\'' && x'\n");
    }

    #[test]
    fn pgid_line_is_taken_out() {
        let mut s = PgidScanner::default();
        assert_eq!(s.push(b"motd\nsquall-pg"), b"motd\n");
        assert_eq!(s.push(b"id:4242\nerr"), b"err");
        assert_eq!(s.pgid(), Some(4242));
        assert_eq!(s.push(b"squall-pgid:1\n"), b"squall-pgid:1\n", "only the first marker counts");
        let mut s = PgidScanner::default();
        assert_eq!(s.push(b"no newline"), b"");
        assert_eq!(s.finish(), b"no newline");
    }
}
