//! Real OpenSSH servers on loopback ports for the remote runner tests (never port 22): a test
//! user with a password and an authorized ed25519 key, and `sshd` instances started per test.
//! Needs root (to create the user and run `sshd`), Debian's `openssh-server` and `sudo`; the
//! README's test command installs both. A missing piece fails the test with what to do.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The login the tests use on every sshd.
pub const USER: &str = "squall-ssh";

/// The test user's credentials, made once per test process.
pub struct Account {
    pub password: String,
    pub key_path: PathBuf,
    pub key_material: String,
    _dir: tempfile::TempDir,
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (install it: the README's test command does)"))
}

fn check(program: &str, args: &[&str]) {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Creates (once) the test user with a fresh password, an authorized key and sudo rights that
/// need the password.
pub fn account() -> &'static Account {
    static ACCOUNT: OnceLock<Account> = OnceLock::new();
    ACCOUNT.get_or_init(|| {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: install Debian's openssh-server (apt-get install openssh-server), as scripts/test does"
        );
        assert!(Path::new("/usr/bin/sudo").exists(), "sudo is missing: apt-get install sudo (scripts/test does)");
        assert!(
            String::from_utf8_lossy(&run("id", &["-u"]).stdout).trim() == "0",
            "the remote runner tests must run as root: they create the user {USER} and start sshd"
        );
        if !run("id", &["-u", USER]).status.success() {
            check("useradd", &["--create-home", "--shell", "/bin/bash", USER]);
        }
        let password = format!("pw-{}", squall_random_hex());
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().expect("chpasswd");
        use std::io::Write;
        chpasswd.stdin.take().unwrap().write_all(format!("{USER}:{password}\n").as_bytes()).unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        std::fs::write(format!("/etc/sudoers.d/{USER}"), format!("{USER} ALL=(ALL) ALL\n")).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("id_ed25519");
        check("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "squall-test", "-f", key_path.to_str().unwrap()]);
        let public = std::fs::read_to_string(key_path.with_extension("pub")).unwrap();
        let ssh_dir = format!("/home/{USER}/.ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::write(format!("{ssh_dir}/authorized_keys"), public).unwrap();
        check("chown", &["-R", &format!("{USER}:{USER}"), &ssh_dir]);
        let key_material = std::fs::read_to_string(&key_path).unwrap();
        Account { password, key_path, key_material, _dir: dir }
    })
}

fn squall_random_hex() -> String {
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One running `sshd` on 127.0.0.1.
pub struct Sshd {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sshd {
    pub fn start() -> Sshd {
        account();
        std::fs::create_dir_all("/run/sshd").unwrap(); // privilege separation directory
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        check("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", host_key.to_str().unwrap()]);
        let port = free_port();
        let config = dir.path().join("sshd_config");
        let text = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM no\nPasswordAuthentication yes\n\
             PubkeyAuthentication yes\nKbdInteractiveAuthentication no\nStrictModes no\nPermitRootLogin no\nAllowUsers {USER}\n\
             AllowTcpForwarding yes\nSubsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 50\nLogLevel FATAL\n",
            host_key.display(),
            dir.path().join("sshd.pid").display()
        );
        std::fs::write(&config, text).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start listening on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { port, child, _dir: dir }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Command lines of the test user's processes whose arguments contain `needle`.
pub fn user_processes_with(needle: &str) -> Vec<String> {
    let out = run("ps", &["-u", USER, "-o", "args="]);
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// Command lines of every process whose arguments contain `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let out = run("ps", &["-eo", "args="]);
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(needle) && !l.starts_with("ps ")).map(str::to_string).collect()
}
