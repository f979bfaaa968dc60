//! A mosquitto broker (Debian's `/usr/sbin/mosquitto`) per test on a free loopback port, for the
//! load generator's tests. Without the binary a test fails under CI and is skipped elsewhere (the
//! rule in `tests/common/external.rs`, shared with the root crate's tests).

#[path = "../../../tests/common/external.rs"]
mod external;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A mosquitto process on a free loopback port, killed (by its pid) when dropped.
pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto, or returns `None` when it is not installed and the test is skipped (see
    /// [`external::available`]).
    pub fn start() -> Option<Self> {
        Self::start_with(|_| "allow_anonymous true\n".into())
    }

    /// Starts mosquitto with the configuration lines `extra` returns for its temporary directory.
    pub fn start_with(extra: impl FnOnce(&Path) -> String) -> Option<Self> {
        if !external::available(
            MOSQUITTO,
            Path::new(MOSQUITTO).exists(),
            "apt-get install mosquitto",
        ) {
            return None;
        }
        // mosquitto cannot listen on port 0: take a free port from the kernel and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\npersistence false\nmax_queued_messages 100000\n\
                 log_dest stderr\nlog_type error\n{}",
                extra(dir.path())
            ),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let broker = Self {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(broker)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address nobody listens on: a port the kernel just handed out and took back.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
