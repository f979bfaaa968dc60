//! The `.hgrm` writer against the reference: HdrHistogram's own Java
//! `outputPercentileDistribution(out, 5, 1e6)`, fed the same histograms (V2-serialized). Needs a
//! JDK (`java` runs the program from source, which takes the compiler) and Debian's
//! `libhdrhistogram-java`; `.ci/run` installs both. Without them the test fails under CI and is
//! skipped elsewhere (the rule in `tests/common/external.rs`, shared with the root crate's tests).

#[path = "../../tests/common/external.rs"]
mod external;

use std::io::Write;
use std::process::{Command, Stdio};

use hdrhistogram::Histogram;
use shardmq_loadtest::report::{write_percentiles, Latency};

const JAR: &str = "/usr/share/java/hdrhistogram.jar";

const PROGRAM: &str = r#"
import org.HdrHistogram.Histogram;
import java.nio.ByteBuffer;
import java.util.Base64;
public class Hgrm {
  public static void main(String[] args) throws Exception {
    java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
    String line;
    while ((line = in.readLine()) != null) {
      ByteBuffer bytes = ByteBuffer.wrap(Base64.getDecoder().decode(line.trim()));
      Histogram.decodeFromByteBuffer(bytes, 0).outputPercentileDistribution(System.out, 5, 1e6);
      System.out.println("----");
    }
  }
}
"#;

fn histograms() -> Vec<Histogram<u64>> {
    let new = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
    let mut uniform = new();
    for n in 1..=10_000u64 {
        uniform.record(n * 997).unwrap();
    }
    let mut single = new();
    single.record(62_500).unwrap();
    let mut ten = new();
    for ms in 1..=10u64 {
        ten.record(ms * 1_000_000).unwrap();
    }
    // A long tail: mostly ~100 µs, a few up to seconds (deterministic pseudo-random).
    let mut tail = new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..50_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let spread = (state % 1000) as f64 / 1000.0;
        tail.record((100_000.0 * (1.0 / (1.0 - spread * 0.999)).powi(2)) as u64)
            .unwrap();
    }
    let mut repeated = new();
    repeated.record_n(1_234_567, 1_000).unwrap();
    repeated.record_n(125_000, 3).unwrap();
    vec![uniform, single, ten, tail, repeated]
}

#[test]
fn percentile_files_match_java_byte_for_byte() {
    let jdk = external::starts("java", &["-version"]) && external::starts("javac", &["-version"]);
    if !external::available(
        "a JDK (java, javac)",
        jdk,
        "apt-get install default-jdk-headless",
    ) || !external::available(
        JAR,
        std::path::Path::new(JAR).exists(),
        "apt-get install libhdrhistogram-java",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("Hgrm.java");
    std::fs::write(&source, PROGRAM).unwrap();
    let histograms = histograms();
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(JAR)
        .arg(&source)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for histogram in &histograms {
            writeln!(stdin, "{}", Latency::from_histogram(histogram).histogram).unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "java {JAR} Hgrm.java failed");
    let java = String::from_utf8(output.stdout).unwrap();
    let java: Vec<&str> = java
        .split("----\n")
        .filter(|part| !part.is_empty())
        .collect();
    assert_eq!(java.len(), histograms.len());
    for (histogram, java) in histograms.iter().zip(java) {
        let mut ours = String::new();
        write_percentiles(histogram, 1e6, 5, &mut ours);
        assert_eq!(ours, java);
    }
}
