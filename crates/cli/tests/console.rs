//! The web console's browser tests: `crates/server/ui/tests`, Node's test runner driving a real
//! headless Chromium (Debian's, through playwright-core) against this build's squall binary,
//! which the tests start, restart and log in to themselves. Their figures (time to the last
//! screen of a 1 GB log, go to line, search, rows, heap) are printed. Two real `sshd`s on
//! loopback give the remote action whose hosts the page filters.

#[path = "common/sshd.rs"]
mod sshd;

use std::path::Path;
use std::process::Command;

use sshd::{Sshd, USER, account};

#[test]
fn the_web_console_passes_its_browser_tests_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/ui/tests");
    let chromium = std::env::var("SQUALL_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing: apt-get install chromium fonts-dejavu-core (scripts/test does)");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: npm ci --prefix crates/server/ui/tests (scripts/test does)"
    );
    let hosts = [Sshd::start(), Sshd::start()];
    let remote = serde_json::json!({
        "hosts": hosts.iter().map(|h| format!("127.0.0.1:{}", h.port)).collect::<Vec<_>>().join(","),
        "username": USER,
        "private_key": account().key_material,
    });
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1"])
        .current_dir(&dir)
        .env("SQUALL_BIN", env!("CARGO_BIN_EXE_squall"))
        .env("SQUALL_TEST_CHROMIUM", &chromium)
        .env("SQUALL_TEST_SSH", remote.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): install Node.js 20 or later (Debian: apt-get install nodejs npm)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().filter(|l| l.starts_with("# figures") || l.starts_with("# pass") || l.starts_with("# fail")) {
        println!("{line}");
    }
    assert!(out.status.success(), "browser tests failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
