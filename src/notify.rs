//! Readiness and watchdog messages to systemd (`sd_notify`).
//!
//! systemd passes a datagram socket in `$NOTIFY_SOCKET` to a service of
//! `Type=notify`; the service sends newline-separated `KEY=VALUE`
//! assignments to it (see `sd_notify(3)`). berth sends `READY=1` once
//! recovery is done, `STATUS=` lines along the way, `RELOADING=1` and
//! `STOPPING=1` around SIGHUP and SIGTERM, and `WATCHDOG=1` while every
//! executor is alive.
//!
//! Outside systemd `$NOTIFY_SOCKET` is unset and every call is a no-op
//! that returns `Ok(false)`.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The environment variable naming the notification socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Sends `state` to `$NOTIFY_SOCKET`.
///
/// Returns `Ok(false)` when the variable is unset (not run by systemd),
/// `Ok(true)` once the datagram is sent.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET_ENV) {
        Some(socket) => match socket.to_str() {
            Some(socket) => notify_to(socket, state).map(|()| true),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is not valid UTF-8",
            )),
        },
        None => Ok(false),
    }
}

/// Sends `state` to the socket named by `socket`, as `$NOTIFY_SOCKET`
/// would name it: a filesystem path (`/run/...`) or an abstract name
/// (`@name`).
pub fn notify_to(socket: &str, state: &str) -> io::Result<()> {
    let address = socket_address(socket)?;
    let sender = UnixDatagram::unbound()?;
    let sent = sender.send_to_addr(state.as_bytes(), &address)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification datagram was cut short",
        ));
    }
    Ok(())
}

/// Tells systemd that start-up is done: recovery finished and the
/// listeners accept connections.
pub fn ready() -> io::Result<bool> {
    notify("READY=1")
}

/// Sets the one-line status `systemctl status` shows.
///
/// Newlines in `message` are replaced by spaces, since a newline would
/// start a new assignment.
pub fn status(message: &str) -> io::Result<bool> {
    notify(&status_message(message))
}

/// Tells systemd that berth is draining and about to exit.
pub fn stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// Tells systemd that a reload (SIGHUP) has begun; send [`ready`] when
/// it is done.
///
/// Carries `MONOTONIC_USEC=`, which `Type=notify-reload` units require
/// from systemd 253 on; older systemd ignores it.
pub fn reloading() -> io::Result<bool> {
    match reloading_message() {
        Some(message) => notify(&message),
        None => notify("RELOADING=1"),
    }
}

/// Feeds the watchdog (`WatchdogSec=`).
///
/// Call it only while every executor has answered recently, so a hung
/// core makes systemd restart the service.
pub fn watchdog() -> io::Result<bool> {
    notify("WATCHDOG=1")
}

/// Asks systemd for `extra` more time before it gives up on start-up or
/// shutdown, for a long recovery or drain.
pub fn extend_timeout(extra: Duration) -> io::Result<bool> {
    notify(&format!("EXTEND_TIMEOUT_USEC={}", extra.as_micros()))
}

/// The watchdog period systemd expects, from `$WATCHDOG_USEC`.
///
/// `None` when the watchdog is off, when the value does not parse, or
/// when `$WATCHDOG_PID` names another process. Feed the watchdog at
/// half this period or more often.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] on given variable values, for tests.
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }

    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec))
}

/// Resolves `$NOTIFY_SOCKET`'s text to an address.
fn socket_address(socket: &str) -> io::Result<SocketAddr> {
    if let Some(name) = socket.strip_prefix('@') {
        return abstract_address(name.as_bytes());
    }
    if socket.starts_with('/') {
        return SocketAddr::from_pathname(socket);
    }

    // NOTE: systemd also accepts `vsock:` addresses for virtual machines;
    // berth runs on bare metal and refuses them rather than guess.
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("unsupported NOTIFY_SOCKET address {socket:?}"),
    ))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;

    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

fn status_message(message: &str) -> String {
    let line: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={line}")
}

fn reloading_message() -> Option<String> {
    let usec = monotonic_usec()?;
    Some(format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares against.
fn monotonic_usec() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the whole call, and
    // CLOCK_MONOTONIC is a clock every Linux kernel provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    secs.checked_mul(1_000_000)?.checked_add(nanos / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A datagram socket bound in a fresh directory, removed on drop.
    struct Listener {
        dir: PathBuf,
        socket: UnixDatagram,
    }

    impl Listener {
        fn new(name: &str) -> Listener {
            let dir =
                std::env::temp_dir().join(format!("berth-notify-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Listener { dir, socket }
        }

        fn path(&self) -> String {
            self.dir.join("notify").to_str().unwrap().to_owned()
        }

        fn receive(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn messages_arrive_on_a_path_socket() {
        let listener = Listener::new("path");
        let path = listener.path();

        notify_to(&path, "READY=1").unwrap();
        assert_eq!(listener.receive(), "READY=1");

        notify_to(&path, &status_message("recovered\n3 shards")).unwrap();
        assert_eq!(listener.receive(), "STATUS=recovered 3 shards");

        notify_to(&path, "STOPPING=1").unwrap();
        assert_eq!(listener.receive(), "STOPPING=1");
    }

    #[test]
    fn reloading_carries_monotonic_usec_close_to_now() {
        let listener = Listener::new("reload");
        let before = monotonic_usec().unwrap();
        notify_to(&listener.path(), &reloading_message().unwrap()).unwrap();
        let after = monotonic_usec().unwrap();

        let got = listener.receive();
        let (first, second) = got.split_once('\n').unwrap();
        assert_eq!(first, "RELOADING=1");
        let usec: u64 = second
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(before <= usec && usec <= after);
    }

    #[test]
    fn messages_arrive_on_an_abstract_socket() {
        let name = format!("berth-notify-test-{}", std::process::id());
        let address = abstract_address(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();

        notify_to(&format!("@{name}"), "WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn unsupported_or_absent_socket_is_an_error() {
        let e = notify_to("vsock:2:1234", "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

        let missing = std::env::temp_dir().join("berth-no-such-socket");
        assert!(notify_to(missing.to_str().unwrap(), "READY=1").is_err());
    }

    #[test]
    fn watchdog_interval_follows_usec_and_pid() {
        let ten_s = Some(Duration::from_secs(10));
        let table: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (None, None, None),
            (Some("10000000"), None, ten_s),
            (Some("10000000"), Some("42"), ten_s),
            (Some("10000000"), Some("43"), None),
            (Some("0"), None, None),
            (Some("ten"), None, None),
            (Some("10000000"), Some("x"), None),
        ];
        for (usec, pid, want) in table {
            let got = watchdog_interval_from(*usec, *pid, 42);
            assert_eq!(got, *want, "{usec:?} {pid:?}");
        }
    }
}
