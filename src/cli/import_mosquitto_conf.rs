//! `shardmq import-mosquitto-conf FILE [-o OUT]`: converts a Mosquitto 2.x `mosquitto.conf` into
//! shardmq's TOML configuration, written to OUT or standard output.
//!
//! Every option that does not carry over is named on stderr, and as a `# not mapped:` comment at
//! the end of the TOML, with its file, line and why; options shardmq already behaves like are
//! listed in a comment too. Which option becomes which key, and why, is [`translate`]'s doc; this
//! file reads the files (the main one, and the `.conf` files of each `include_dir` in Mosquitto's
//! order) and writes the result. Paths inside the configuration are copied as written: like
//! Mosquitto, shardmq reads a relative path from its working directory.
//!
//! The same knowledge serves [`hint`]: a file given to `--config` that is not TOML but reads like
//! a mosquitto.conf gets its error followed by how to convert it.

pub mod translate;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use self::translate::{Included, Source};

/// Arguments of `shardmq import-mosquitto-conf`.
#[derive(clap::Args, Clone, Debug)]
pub struct ImportMosquittoConfArgs {
    /// The mosquitto.conf to convert.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to write shardmq's TOML configuration (default: standard output).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// Runs `shardmq import-mosquitto-conf`.
pub fn run(args: &ImportMosquittoConfArgs) -> anyhow::Result<()> {
    let main = Source {
        name: args.file.display().to_string(),
        text: std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?,
    };
    let mut included = BTreeMap::new();
    for dir in translate::include_dirs(&main) {
        included
            .entry(dir.clone())
            .or_insert_with(|| read_include_dir(Path::new(&dir)));
    }
    let translation = translate::translate(&main, &included);
    match &args.output {
        Some(output) => {
            if same_file(output, &args.file) {
                bail!(
                    "{} is the file being converted: write the TOML elsewhere",
                    output.display()
                );
            }
            std::fs::write(output, &translation.toml)
                .with_context(|| format!("writing {}", output.display()))?;
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(translation.toml.as_bytes())?;
            stdout.flush()?;
        }
    }
    let mut stderr = std::io::stderr().lock();
    for unmapped in &translation.unmapped {
        writeln!(stderr, "not mapped: {unmapped}")?;
    }
    let check = args
        .output
        .as_ref()
        .map_or("FILE".to_owned(), |output| output.display().to_string());
    writeln!(
        stderr,
        "{} option(s) not mapped; check the result with `shardmq check-config --config {check}`",
        translation.unmapped.len()
    )?;
    Ok(())
}

/// The `.conf` files of an `include_dir`, in the order Mosquitto reads them.
fn read_include_dir(dir: &Path) -> Included {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => return Included::Unreadable(err.to_string()),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => return Included::Unreadable(err.to_string()),
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.path().is_file();
        if is_file && name.len() > ".conf".len() && name.ends_with(".conf") {
            names.push(name);
        }
    }
    names.sort_by_key(|name| mosquitto_order(name));
    let mut files = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(Source {
                name: path.display().to_string(),
                text,
            }),
            Err(err) => return Included::Unreadable(format!("{}: {err}", path.display())),
        }
    }
    Included::Files(files)
}

/// Mosquitto's order of included files: alphabetical, case-sensitive, each upper-case letter
/// right before its lower case (`A a B b`).
fn mosquitto_order(name: &str) -> Vec<(char, bool)> {
    name.chars()
        .map(|c| (c.to_ascii_lowercase(), c.is_ascii_lowercase()))
        .collect()
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// How to convert `path`, when it is not TOML but reads like a mosquitto.conf: a line of
/// Mosquitto's syntax, or the name `mosquitto.conf`.
pub fn hint(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    if text.parse::<toml::Table>().is_ok() {
        return None;
    }
    let why = match translate::mosquitto_line(&text) {
        Some((line, option)) => format!("line {line} sets Mosquitto's `{option}`"),
        None if path
            .file_name()
            .is_some_and(|name| name == "mosquitto.conf") =>
        {
            "it is named mosquitto.conf".to_owned()
        }
        None => return None,
    };
    Some(format!(
        "{} looks like a Mosquitto configuration ({why}): convert it with `shardmq \
         import-mosquitto-conf {} -o shardmq.toml`, then give --config shardmq.toml",
        path.display(),
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn included_files_in_mosquitto_order() {
        let mut names = vec!["b.conf", "B.conf", "a.conf", "10.conf", "A.conf"];
        names.sort_by_key(|name| mosquitto_order(name));
        assert_eq!(names, ["10.conf", "A.conf", "a.conf", "B.conf", "b.conf"]);
    }

    #[test]
    fn include_dir_reads_conf_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.conf"), "sys_interval 5\n").unwrap();
        std::fs::write(dir.path().join("a.conf"), "max_keepalive 60\n").unwrap();
        std::fs::write(dir.path().join("README"), "not read\n").unwrap();
        std::fs::write(dir.path().join(".conf"), "not read\n").unwrap();
        std::fs::create_dir(dir.path().join("sub.conf")).unwrap();
        let Included::Files(files) = read_include_dir(dir.path()) else {
            panic!("readable");
        };
        let names: Vec<String> = files.iter().map(|file| file.name.clone()).collect();
        let expected: Vec<String> = ["a.conf", "b.conf"]
            .iter()
            .map(|name| dir.path().join(name).display().to_string())
            .collect();
        assert_eq!(names, expected);
        assert_eq!(files[0].text, "max_keepalive 60\n");
        assert!(matches!(
            read_include_dir(&dir.path().join("missing")),
            Included::Unreadable(_)
        ));
    }

    #[test]
    fn hint_only_for_files_that_read_like_mosquitto_conf() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let conf = write(
            "broker.conf",
            "# comment\n\nlistener 1883\nallow_anonymous true\n",
        );
        let hint = hint(&conf).expect("mosquitto syntax");
        assert!(
            hint.contains("line 3 sets Mosquitto's `listener`"),
            "{hint}"
        );
        assert!(hint.contains("shardmq import-mosquitto-conf"), "{hint}");
        // shardmq's own TOML, valid or not, gets no hint.
        assert_eq!(super::hint(&write("a.toml", "max_connections = 5\n")), None);
        assert_eq!(super::hint(&write("b.toml", "max_connections = \n")), None);
        // Nor does an ACL file, whose `user` and `topic` lines look alike.
        assert_eq!(
            super::hint(&write("acl", "user alice\ntopic read a/#\n")),
            None
        );
        let named = write("mosquitto.conf", "something odd\n");
        assert!(super::hint(&named)
            .unwrap()
            .contains("named mosquitto.conf"));
        assert_eq!(super::hint(&dir.path().join("missing")), None);
    }
}
