//! The systemd notification protocol (`Type=notify`): READY=1 once listening, STOPPING=1 when
//! draining, WATCHDOG=1 pings at half of `WatchdogSec`. Without `NOTIFY_SOCKET` every call is a
//! no-op, so the same binary runs anywhere.

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env(env: &HashMap<String, String>) -> Notifier {
        let socket = env.get("NOTIFY_SOCKET").filter(|s| !s.is_empty()).cloned();
        // WATCHDOG_PID, when set, says which process the watchdog is for.
        let ours = env
            .get("WATCHDOG_PID")
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = env
            .get("WATCHDOG_USEC")
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && ours)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    pub fn notify(&self, state: &str) {
        let Some(path) = &self.socket else {
            return;
        };
        if let Err(e) = send(path, state) {
            tracing::warn!(error = %e, "systemd notification failed");
        }
    }

    /// How often to ping the watchdog, if systemd asked for one.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

fn send(path: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let env = HashMap::from([
            ("NOTIFY_SOCKET".to_string(), path.display().to_string()),
            ("WATCHDOG_USEC".to_string(), "2000000".to_string()),
        ]);
        let n = Notifier::from_env(&env);
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn silent_without_systemd() {
        let n = Notifier::from_env(&HashMap::new());
        n.notify("READY=1");
        assert_eq!(n.watchdog_every(), None);
    }
}
