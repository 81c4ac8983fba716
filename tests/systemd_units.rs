//! berth under systemd: the unit files and the notify protocol.
//!
//! `systemd-analyze verify` and `security` read the unit; the sysusers
//! and tmpfiles entries are applied to a scratch root directory, never
//! to the machine itself. A test whose tool is absent says so and
//! passes; Debian's `systemd` package provides all of them.
//!
//! The last test starts `berth serve` with a notify socket of its own
//! and checks what systemd would be told through start, reload (which
//! must change the log level live) and stop.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth::config::Config;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const UNIT: &str = include_str!("../systemd/berth.service");

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("berth-units-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The named tool, or `None` after saying why the test is skipped.
fn tool(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return Some(path);
        }
    }
    // tests/run-all.sh installs it and sets BERTH_REQUIRE_TOOLS, so the
    // full suite never skips this quietly.
    assert!(
        std::env::var_os("BERTH_REQUIRE_TOOLS").is_none(),
        "{name} is not installed (apt-get install systemd)"
    );
    eprintln!("skipped: {name} is not installed (apt-get install systemd)");
    None
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    eprintln!(
        "{command:?}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A copy of the unit whose ExecStart names a binary that exists: the
/// `berth` this test run built.
fn unit_copy(scratch: &Scratch) -> PathBuf {
    let berth = env!("CARGO_BIN_EXE_berth");
    let text = UNIT.replace("ExecStart=/usr/bin/berth ", &format!("ExecStart={berth} "));
    assert_ne!(text, UNIT, "ExecStart=/usr/bin/berth not found");

    let path = scratch.path().join("berth.service");
    fs::write(&path, text).unwrap();
    path
}

/// The values of `key=` lines in the unit, in order.
fn unit_values(key: &str) -> Vec<&'static str> {
    let prefix = format!("{key}=");
    UNIT.lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .collect()
}

fn unit_value(key: &str) -> &'static str {
    match unit_values(key).as_slice() {
        [value] => value,
        other => panic!("{key}= appears {} times", other.len()),
    }
}

/// Parses `60s`, `5min` or a bare number of seconds.
fn unit_seconds(value: &str) -> u64 {
    if let Some(n) = value.strip_suffix("min") {
        return n.parse::<u64>().unwrap() * 60;
    }
    value.trim_end_matches('s').parse().unwrap()
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let scratch = Scratch::new("verify");
    let unit = unit_copy(&scratch);

    let output = run(Command::new(analyze).arg("verify").arg(&unit));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "verify failed: {stderr}");
    // verify exits 0 on warnings such as an unknown key; refuse those.
    assert!(!stderr.contains("berth.service"), "warnings: {stderr}");
}

#[test]
fn unit_hardening_keeps_exposure_low() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let scratch = Scratch::new("security");
    let unit = unit_copy(&scratch);

    let output = run(Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let marker = "Overall exposure level for berth.service:";
    let Some(at) = stdout.find(marker) else {
        panic!("no exposure level in: {stdout}");
    };
    let level: f64 = stdout[at + marker.len()..]
        .split_whitespace()
        .next()
        .and_then(|word| word.parse().ok())
        .unwrap();
    // 0 is fully locked down, 10 is unprotected; below 2 is "OK".
    assert!(level < 2.0, "exposure {level}");
}

#[test]
fn unit_declares_what_berth_relies_on() {
    assert_eq!(unit_value("Type"), "notify");
    assert_eq!(unit_value("NotifyAccess"), "main");
    assert_eq!(
        unit_value("ExecStart"),
        "/usr/bin/berth serve --config /etc/berth/berth.toml"
    );
    assert_eq!(unit_value("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(unit_value("LimitMEMLOCK"), "infinity");
    assert_eq!(unit_value("User"), "berth");
    assert_eq!(unit_value("StateDirectory"), "berth");
    assert_eq!(unit_value("ProtectSystem"), "strict");
    assert!(unit_seconds(unit_value("WatchdogSec")) > 0);

    // The first filter line allows; io_uring must be in it by name.
    let filters = unit_values("SystemCallFilter");
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(
            filters[0].split_whitespace().any(|w| w == call),
            "{call} is not allowed"
        );
        assert!(!filters[1..].iter().any(|f| f.contains(call)));
    }

    // systemd must wait for a full drain before it kills berth.
    let stop = unit_seconds(unit_value("TimeoutStopSec"));
    let drain = Config::default().server.drain_timeout_secs;
    assert!(stop > drain, "TimeoutStopSec {stop} <= drain {drain}");
}

#[test]
fn example_config_loads_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/berth.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn sysusers_and_tmpfiles_apply_to_a_scratch_root() {
    let (Some(sysusers), Some(tmpfiles)) = (tool("systemd-sysusers"), tool("systemd-tmpfiles"))
    else {
        return;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!("skipped: setting directory owners needs root");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let root = Scratch::new("root");
    fs::create_dir_all(root.path().join("etc")).unwrap();

    let output = run(Command::new(sysusers)
        .arg(format!("--root={}", root.path().display()))
        .arg(dir.join("berth.sysusers")));
    assert!(output.status.success());
    let passwd = fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let entry = passwd
        .lines()
        .find(|line| line.starts_with("berth:"))
        .unwrap();
    let fields: Vec<&str> = entry.split(':').collect();
    assert_eq!(fields[5], "/var/lib/berth", "{entry}");
    let uid: u32 = fields[2].parse().unwrap();

    let output = run(Command::new(tmpfiles)
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(dir.join("berth.tmpfiles")));
    assert!(output.status.success());
    for (path, owner) in [
        ("etc/berth", 0),
        ("etc/berth/tls", 0),
        ("var/lib/berth", uid),
    ] {
        let meta = fs::metadata(root.path().join(path)).unwrap();
        assert!(meta.is_dir(), "{path}");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "{path}");
        assert_eq!(meta.uid(), owner, "{path}");
    }
}

/// Two distinct free TCP ports on the loopback address.
fn free_ports() -> (u16, u16) {
    // Both probes stay bound until both ports are known, so the kernel
    // cannot hand out the same port twice.
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// Waits up to `limit` for a datagram whose text satisfies `wanted`,
/// returning it; the ones before it are kept in `seen`.
fn await_message(
    socket: &UnixDatagram,
    seen: &mut Vec<String>,
    limit: Duration,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if wanted(&text) {
            return text;
        }
        seen.push(text);
    }
    panic!("no wanted message within {limit:?}; got {seen:?}");
}

/// Sends one request and reads the whole answer.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// Waits until `path`'s text satisfies `wanted`.
fn await_log(path: &Path, limit: Duration, wanted: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if wanted(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "log never matched:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_config(path: &Path, data: &Path, port: u16, admin: u16, level: &str) {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nexecutors = 1\n\
         admin_listen = \"127.0.0.1:{admin}\"\ndrain_timeout_secs = 5\n\
         [storage]\ndata_dir = \"{}\"\nsegment_bytes = 8388608\n\
         cache_bytes = 0\n[log]\nlevel = \"{level}\"\n",
        data.display()
    );
    fs::write(path, text).unwrap();
}

#[test]
fn serve_tells_systemd_about_ready_reload_watchdog_and_stop() {
    let scratch = Scratch::new("serve");
    let socket_path = scratch.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let (port, admin) = free_ports();
    let config = scratch.path().join("berth.toml");
    let data = scratch.path().join("data");
    write_config(&config, &data, port, admin, "warn");
    let log = scratch.path().join("stderr.log");

    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    let mut seen = Vec::new();
    let long = Duration::from_secs(30);

    await_message(&socket, &mut seen, long, |m| m == "READY=1");
    assert!(seen.iter().any(|m| m.starts_with("STATUS=")), "{seen:?}");
    await_message(&socket, &mut seen, long, |m| m == "WATCHDOG=1");

    // At warn, a request writes no access line.
    assert!(http_get(port, "/v2/").starts_with("HTTP/1.1 200"));
    assert!(http_get(admin, "/readyz").starts_with("HTTP/1.1 200"));

    // SIGHUP with level info: RELOADING=1, READY=1, then access lines.
    write_config(&config, &data, port, admin, "info");
    kill(pid, Signal::SIGHUP).unwrap();
    let reloading = await_message(&socket, &mut seen, long, |m| m.starts_with("RELOADING=1"));
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading:?}");
    await_message(&socket, &mut seen, long, |m| m == "READY=1");
    let before = fs::read_to_string(&log).unwrap();
    assert!(!before.contains("berth::access"), "{before}");
    assert!(http_get(port, "/v2/").starts_with("HTTP/1.1 200"));
    await_log(&log, long, |text| text.contains("berth::access"));

    // The admin listener counts that request.
    let metrics = http_get(admin, "/metrics");
    assert!(metrics.contains("berth_http_requests_total{"), "{metrics}");

    // SIGTERM: STOPPING=1 and a clean exit.
    kill(pid, Signal::SIGTERM).unwrap();
    await_message(&socket, &mut seen, long, |m| m == "STOPPING=1");
    let deadline = Instant::now() + long;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth did not stop within {long:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
