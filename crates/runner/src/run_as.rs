//! Who local actions run as, and with which shell: StackStorm's rules, decided once at start-up.
//!
//! Commands run under `bash -c` (packs are written for bash). When the server runs as a
//! different user than `[system_user] user` and that user exists, every local command runs as
//! that user through `sudo -E -H -u <user> -- bash -c <cmd>`, as StackStorm's runner does; a
//! `sudo: true` action runs as root with `sudo -E -- bash -c`. Python actions run as the same
//! user, switched to directly (sudo would close the result pipe and drop `PYTHONPATH`).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};
use tokio::process::Command;

/// The user local actions run as, and the bash that runs their commands.
#[derive(Debug, Clone)]
pub struct ActionUser {
    /// `None`: the server's own user.
    switch_to: Option<TargetUser>,
    /// bash's path, or why there is none.
    bash: Result<PathBuf, String>,
    server_user: String,
}

/// The account actions switch to.
#[derive(Debug, Clone)]
struct TargetUser {
    name: String,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    home: PathBuf,
}

impl Default for ActionUser {
    /// The server's own user, with bash from `PATH` (tests of the runner crate alone).
    fn default() -> ActionUser {
        ActionUser { switch_to: None, bash: find_bash(), server_user: user_name(Uid::current()) }
    }
}

impl ActionUser {
    /// Decides who actions run as for `[system_user] user` = `system_user`, and says so in the
    /// log: one line, a warning when actions run as the server's user for want of that user.
    pub fn detect(system_user: &str) -> ActionUser {
        let mut chosen = ActionUser::default();
        if let Err(why) = &chosen.bash {
            tracing::error!("{why}");
        }
        let server = chosen.server_user.clone();
        if server == system_user {
            tracing::info!("actions run as {server} (the server's user and [system_user] user)");
            return chosen;
        }
        match User::from_name(system_user) {
            Ok(Some(user)) if Uid::current().is_root() || sudo_allows(system_user) => {
                chosen.switch_to =
                    Some(TargetUser { groups: supplementary_groups(&user), name: user.name, uid: user.uid, gid: user.gid, home: user.dir });
                tracing::info!("actions run as {system_user} ([system_user] user) through sudo; the server runs as {server}");
            }
            Ok(Some(_)) => tracing::warn!(
                "actions run as {server}, the server's user: it may not sudo to \"{system_user}\" without a password; \
                 allow that in sudoers, or set [system_user] user = \"{server}\""
            ),
            _ => tracing::warn!(
                "actions run as {server}, the server's user: no user \"{system_user}\" exists on this machine; \
                 create it, or set [system_user] user to the user actions should run as"
            ),
        }
        chosen
    }

    /// The name of the user actions run as (`sudo: true` aside).
    pub fn name(&self) -> &str {
        self.switch_to.as_ref().map_or(&self.server_user, |t| &t.name)
    }

    /// The command that runs `line`: `bash -c`, as the action user, or as root for `sudo`
    /// (`-S` when a sudo password is fed on stdin).
    pub fn shell(&self, line: &str, sudo: bool, sudo_password: bool) -> Result<Command, String> {
        let bash = self.bash.as_ref().map_err(Clone::clone)?;
        let mut command = if sudo {
            let mut c = Command::new("sudo");
            if sudo_password {
                c.arg("-S");
            }
            c.args(["-E", "--"]).arg(bash);
            c
        } else if let Some(target) = &self.switch_to {
            let mut c = Command::new("sudo");
            c.args(["-E", "-H", "-u", &target.name, "--"]).arg(bash);
            c
        } else {
            Command::new(bash)
        };
        command.arg("-c").arg(line);
        Ok(command)
    }

    /// Makes `command` (a Python action) run as the action user: groups, group and user are set
    /// in the child before exec, `HOME`, `USER` and `LOGNAME` are the user's.
    pub fn switch(&self, command: &mut Command) {
        let Some(target) = self.switch_to.clone() else { return };
        command.env("HOME", &target.home).env("USER", &target.name).env("LOGNAME", &target.name);
        // SAFETY: setgroups, setgid and setuid are async-signal-safe system calls.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setgroups(&target.groups)?;
                nix::unistd::setgid(target.gid)?;
                nix::unistd::setuid(target.uid)?;
                Ok(())
            });
        }
    }

    /// Gives `path` (a file squall writes for an action) to the action user.
    pub fn hand_over(&self, path: &Path) -> std::io::Result<()> {
        match &self.switch_to {
            Some(t) => std::os::unix::fs::chown(path, Some(t.uid.as_raw()), Some(t.gid.as_raw())),
            None => Ok(()),
        }
    }
}

fn user_name(uid: Uid) -> String {
    User::from_uid(uid).ok().flatten().map_or_else(|| uid.to_string(), |u| u.name)
}

fn supplementary_groups(user: &User) -> Vec<Gid> {
    CString::new(user.name.as_str()).ok().and_then(|name| nix::unistd::getgrouplist(&name, user.gid).ok()).unwrap_or_else(|| vec![user.gid])
}

/// Whether this (non-root) server may run commands as `user` through sudo without a password.
fn sudo_allows(user: &str) -> bool {
    std::process::Command::new("sudo")
        .args(["-n", "-u", user, "--", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// bash from `PATH`, else the usual places.
fn find_bash() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join("bash"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "bash is not installed: squall runs local commands with bash -c, as StackStorm does, \
             and local shell actions fail until it is (Debian: apt-get install bash)"
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_run_under_bash() {
        let user = ActionUser::default();
        let c = user.shell("echo $[1+1]", false, false).unwrap();
        let std = c.as_std();
        assert!(std.get_program().to_string_lossy().ends_with("/bash"), "{std:?}");
        assert_eq!(std.get_args().collect::<Vec<_>>(), ["-c", "echo $[1+1]"]);
        let sudo = user.shell("id", true, true).unwrap();
        let args: Vec<_> = sudo.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(sudo.as_std().get_program(), "sudo");
        assert_eq!(args[..3], ["-S", "-E", "--"]);
        assert!(args[3].ends_with("/bash") && args[4..] == ["-c", "id"], "{args:?}");
    }

    #[test]
    fn no_bash_is_an_error_not_another_shell() {
        let user = ActionUser { bash: Err("bash is not installed".into()), ..ActionUser::default() };
        assert_eq!(user.shell("true", false, false).unwrap_err(), "bash is not installed");
    }
}
