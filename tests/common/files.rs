//! Access files (password, ACL, relations, auto-subscribe) in a temporary folder, written the way
//! an operator writes them.

use std::path::PathBuf;
use std::process::Command;

/// A temporary folder of access files, removed on drop.
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// An empty folder named after the test.
    pub fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("shardmq-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    /// Writes (or replaces) a file; its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// A password file made by `shardmq passwd`, the way an operator makes one.
    pub fn passwords(&self, users: &[(&str, &str)]) -> String {
        let path = self.dir.join("passwd");
        for (n, (user, password)) in users.iter().enumerate() {
            let mut command = Command::new(env!("CARGO_BIN_EXE_shardmq"));
            command.arg("passwd").arg("-b");
            if n == 0 {
                command.arg("-c");
            }
            let status = command.arg(&path).arg(user).arg(password).status().unwrap();
            assert!(status.success());
        }
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
