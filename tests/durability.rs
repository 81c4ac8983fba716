//! Acknowledged means durable: kill the server with SIGKILL in the middle
//! of a push load, restart it, and read back every blob and manifest it
//! acknowledged. Also: many clients pushing the same layers into many
//! repositories at once all pull back intact.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{image_manifest, payload, request, sha256_digest, try_request, Server};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// What a client saw acknowledged with a 201.
#[derive(Default)]
struct Acked {
    blobs: Vec<(String, String, usize, u64)>,
    manifests: Vec<(String, String, Vec<u8>)>,
}

fn push_until_stopped(
    addr: std::net::SocketAddr,
    worker: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let repo = format!("crash/w{worker}-{}", n % 3);
        let seed = worker * 1_000_000 + n;
        let len = 1000 + ((seed * 7919) % 200_000) as usize;
        let data = payload(seed, len);
        let digest = sha256_digest(&data);
        let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let Ok(response) = try_request(addr, "POST", &path, &[], &data) else {
            continue;
        };
        if response.status != 201 {
            continue;
        }
        acked
            .lock()
            .unwrap()
            .blobs
            .push((repo.clone(), digest.clone(), len, seed));

        if n % 4 == 0 {
            let manifest = image_manifest((&digest, len), &[]);
            let tag = format!("t{n}");
            let path = format!("/v2/{repo}/manifests/{tag}");
            let headers = [("Content-Type", OCI_MANIFEST)];
            let Ok(response) = try_request(addr, "PUT", &path, &headers, &manifest) else {
                continue;
            };
            if response.status == 201 {
                acked.lock().unwrap().manifests.push((repo, tag, manifest));
            }
        }
    }
}

#[test]
fn sigkill_mid_push_loses_nothing_acknowledged() {
    let mut server = Server::start();
    let mut total_blobs = 0;
    for round in 0..4u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Acked::default()));
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let (stop, acked) = (stop.clone(), acked.clone());
                let addr = server.addr;
                std::thread::spawn(move || push_until_stopped(addr, round * 10 + w, stop, acked))
            })
            .collect();

        std::thread::sleep(Duration::from_millis(400 + round * 250));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            let _ = worker.join();
        }
        server.restart();

        let acked = acked.lock().unwrap();
        assert!(
            !acked.blobs.is_empty(),
            "round {round}: no push was acknowledged"
        );
        for (repo, digest, len, seed) in &acked.blobs {
            let got = server.get(&format!("/v2/{repo}/blobs/{digest}"));
            assert_eq!(
                got.status, 200,
                "round {round}: acknowledged blob {digest} in {repo} lost"
            );
            assert_eq!(got.body.len(), *len);
            assert_eq!(sha256_digest(&got.body), *digest);
            assert_eq!(got.body, payload(*seed, *len));
        }
        for (repo, tag, manifest) in &acked.manifests {
            let got = server.get(&format!("/v2/{repo}/manifests/{tag}"));
            assert_eq!(
                got.status, 200,
                "round {round}: acknowledged tag {repo}:{tag} lost"
            );
            assert_eq!(&got.body, manifest);
        }
        total_blobs += acked.blobs.len();
    }
    eprintln!("verified {total_blobs} acknowledged blobs across 4 crashes");
}

#[test]
fn many_clients_push_shared_layers_into_many_repositories() {
    let server = Server::start();
    let shared: Vec<Vec<u8>> = (0..4).map(|i| payload(500 + i, 150_000)).collect();
    let shared = Arc::new(shared);
    let addr = server.addr;

    let clients: Vec<_> = (0..12)
        .map(|client| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut pushed = Vec::new();
                for r in 0..4 {
                    let repo = format!("fleet/app{}", (client * 4 + r) % 24);
                    let mut layers = Vec::new();
                    for layer in shared.iter() {
                        let digest = sha256_digest(layer);
                        let response = request(
                            addr,
                            "POST",
                            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                            &[],
                            layer,
                        );
                        assert_eq!(response.status, 201, "{}", response.text());
                        layers.push((digest, layer.len()));
                    }
                    let config = format!("{{\"client\":{client},\"r\":{r}}}").into_bytes();
                    let config_digest = sha256_digest(&config);
                    let response = request(
                        addr,
                        "POST",
                        &format!("/v2/{repo}/blobs/uploads/?digest={config_digest}"),
                        &[],
                        &config,
                    );
                    assert_eq!(response.status, 201);
                    let refs: Vec<(&str, usize)> =
                        layers.iter().map(|(d, s)| (d.as_str(), *s)).collect();
                    let manifest = image_manifest((&config_digest, config.len()), &refs);
                    let tag = format!("c{client}");
                    let response = request(
                        addr,
                        "PUT",
                        &format!("/v2/{repo}/manifests/{tag}"),
                        &[("Content-Type", OCI_MANIFEST)],
                        &manifest,
                    );
                    assert_eq!(response.status, 201, "{}", response.text());
                    pushed.push((repo, tag, manifest, config));
                }
                pushed
            })
        })
        .collect();

    for client in clients {
        for (repo, tag, manifest, config) in client.join().unwrap() {
            assert_eq!(
                server.get(&format!("/v2/{repo}/manifests/{tag}")).body,
                manifest
            );
            assert_eq!(
                server
                    .get(&format!("/v2/{repo}/blobs/{}", sha256_digest(&config)))
                    .body,
                config
            );
            for layer in shared.iter() {
                let got = server.get(&format!("/v2/{repo}/blobs/{}", sha256_digest(layer)));
                assert_eq!(&got.body, layer);
            }
        }
    }
}
