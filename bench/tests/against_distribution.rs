//! End-to-end: the tool against CNCF Distribution, when it is installed.

mod common;

use common::{bench, run_and_verify, start_distribution, text};

#[test]
fn tiny_run_matches_what_distribution_stored() {
    let Some(server) = start_distribution(false) else {
        return;
    };
    run_and_verify(&server.url, "");
}

#[test]
fn basic_auth_with_the_right_password_works() {
    let Some(server) = start_distribution(true) else {
        return;
    };
    run_and_verify(&server.url, ",user=bench,password=right-password");
}

#[test]
fn wrong_basic_password_is_reported_as_an_error() {
    let Some(server) = start_distribution(true) else {
        return;
    };
    let target = format!("dist={},user=bench,password=wrong", server.url);
    let output = bench(&["run", "--target", &target, "--count", "3", "--warmup", "0"]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("HTTP 401"), "{out}");
}

#[test]
fn registry_dying_mid_run_is_reported_as_an_error() {
    let Some(mut server) = start_distribution(false) else {
        return;
    };
    let target = format!("dist={}", server.url);
    let child = std::thread::spawn(move || {
        bench(&[
            "run",
            "--target",
            &target,
            "--workload",
            "push:size=64KiB,conc=2",
            "--duration",
            "4s",
            "--warmup",
            "0",
            "--repeat",
            "1",
        ])
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.stop();

    let output = child.join().unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("!!!"), "{out}");
    assert!(out.contains("connect"), "{out}");
}
