//! Client certificates on the TLS listener (`[tls] client_ca`,
//! `require_client_cert`): the certificate's CN is the username the ACL applies to,
//! and without a certificate from that CA the handshake is refused.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{metric, publish, tool, Sub, Switchboard, BIN};

#[test]
fn a_client_certificate_logs_in_as_its_cn_and_is_required_when_configured() {
    let mut sb = Switchboard::start("");
    let acl = sb.dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic write devices/#\n\nuser dev-client\ntopic read devices/dev-client/#\n",
    )
    .unwrap();
    sb.edit_config(
        "[tls]\n",
        "[auth]\nacl_file = \"acl\"\n\n[tls]\nclient_ca = \"certs/ca.pem\"\nrequire_client_cert = true\n",
    );
    assert!(sb.wait_for_log("only clients with a certificate", Duration::from_secs(2)));
    let certs = sb.dir.path().join("certs");
    let file = |name: &str| certs.join(name).to_str().unwrap().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));

    // The username in CONNECT does not matter: the certificate says dev-client.
    let sub = Sub::start_at(
        "localhost",
        sb.ports.tls,
        &[
            "--cafile",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-u",
            "mallory",
            "-t",
            "devices/#",
            "-v",
            "-C",
            "1",
            "-W",
            "10",
        ],
    );
    publish(sb.ports.tcp, &["-t", "devices/other/cmd", "-m", "no"]);
    publish(sb.ports.tcp, &["-t", "devices/dev-client/cmd", "-m", "yes"]);
    assert_eq!(sub.lines(), vec!["devices/dev-client/cmd yes".to_string()]);

    // No certificate, or one from another CA: the handshake fails.
    let other = sb.dir.path().join("other-ca");
    let made = Command::new(BIN)
        .args(["certs-dev", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let foreign = |name: &str| other.join(name).to_str().unwrap().to_string();
    let (_, before) = sb.http_get("/metrics");
    let tls = sb.ports.tls.to_string();
    let base = [
        "-h",
        "localhost",
        "-p",
        &tls,
        "--cafile",
        &ca,
        "-t",
        "devices/x",
        "-m",
        "1",
    ];
    let (foreign_cert, foreign_key) = (foreign("client.pem"), foreign("client.key"));
    for extra in [vec![], vec!["--cert", &foreign_cert, "--key", &foreign_key]] {
        let out = tool("mosquitto_pub")
            .args(base)
            .args(&extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} was let in: {out:?}");
    }
    let (_, after) = sb.http_get("/metrics");
    let refused = |text: &str| metric_with(text, "reason=\"handshake_failed\"");
    assert!(refused(&after) - refused(&before) >= 2.0, "{after}");
    assert!(metric(&after, "switchboard_uptime_seconds") > 0.0);
}

fn metric_with(text: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("switchboard_mqtt_refusals_total{") && l.contains(label))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}
