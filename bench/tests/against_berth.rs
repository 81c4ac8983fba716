//! End-to-end: the tool against a berth started by the test.

mod common;

use common::{bench, run_and_verify, start_berth, text};

#[test]
fn tiny_run_matches_what_berth_stored() {
    let Some(server) = start_berth() else { return };
    run_and_verify(&server.url, "");
}

#[test]
fn stopped_berth_is_reported_as_an_error() {
    let Some(mut server) = start_berth() else {
        return;
    };
    let url = server.url.clone();
    server.stop();

    let target = format!("berth={url}");
    let output = bench(&["run", "--target", &target, "--count", "3", "--warmup", "0"]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("!!!"), "banner first: {out}");
    assert!(stdout.contains("unreachable"), "{out}");
}
