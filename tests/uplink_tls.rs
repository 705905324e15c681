//! TLS to the broker against a real mosquitto with test certificates made here by the
//! `openssl` CLI: records flow over TLS and over mutual TLS; a gateway without a client
//! certificate is refused by the mutual-TLS broker, and one that does not trust the broker's
//! CA refuses the broker, each with the reason in its log; `check-config` names bad files.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and a
/// second CA that signed nothing of the broker's.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI runs (see .ci/install-deps)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA certificate `name.pem` with its key `name.key` (EC P-256).
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=fleetedge test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A certificate `name.pem` (key `name.key`) signed by the CA `ca`, with `extensions`.
fn make_leaf(dir: &Path, name: &str, ca: &str, cn: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write extensions");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn make_pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir for certificates");
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "other-ca");
    make_leaf(
        d,
        "server",
        "ca",
        "localhost",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    make_leaf(
        d,
        "client",
        "ca",
        "gw-mtls",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\n",
    );
    Pki {
        ca: d.join("ca.pem"),
        server_cert: d.join("server.pem"),
        server_key: d.join("server.key"),
        client_cert: d.join("client.pem"),
        client_key: d.join("client.key"),
        other_ca: d.join("other-ca.pem"),
        _dir: dir,
    }
}

/// A broker with a plain listener (for the collector), a TLS listener and a mutual-TLS
/// listener; returns it with the TLS and mutual-TLS ports.
async fn tls_broker(pki: &Pki) -> (Mosquitto, u16, u16) {
    let (plain, tls, mtls) = (free_port(), free_port(), free_port());
    let files = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let broker = Mosquitto::start_with_conf(
        plain,
        &format!(
            "allow_anonymous true\n\
             listener {plain} 127.0.0.1\n\
             listener {tls} 127.0.0.1\n{files}\
             listener {mtls} 127.0.0.1\n{files}require_certificate true\n"
        ),
    )
    .await;
    for port in [tls, mtls] {
        assert!(
            wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(
                loopback(port)
            )
            .is_ok())
            .await,
            "mosquitto's TLS listener {port} does not accept:\n{}",
            broker.log()
        );
    }
    (broker, tls, mtls)
}

fn path_value(p: &Path) -> String {
    toml_string(&p.display().to_string())
}

/// How long the TLS tests wait for a record or a log line: several gateways each do a debug
/// build's TLS handshake, which under qemu emulation on a loaded machine takes seconds.
const TLS_WAIT: Duration = Duration::from_secs(45);

/// A TLS gateway config. `mqtt.connect_timeout_s` is the production default rather than the
/// harness's 2 s: TCP + TLS handshake + CONNACK must fit in it, and a debug rustls/ring
/// handshake under emulation, with other gateways competing, can miss 3 s again and again.
fn tls_config(id: &str, port: u16, pki: &Pki) -> GatewayConfig {
    GatewayConfig::new(id, port)
        .set("mqtt.connect_timeout_s", "15")
        .set("mqtt.tls.enabled", "true")
        .set("mqtt.tls.ca_file", &path_value(&pki.ca))
}

async fn send_records(gw: &Gateway, imei: &str, index: usize, n: u64) -> HashSet<(String, String)> {
    let records: Vec<_> = (0..n).map(|k| avl_record(index, k)).collect();
    let mut device = Device::connect(gw.addr(), imei, Duration::from_secs(5))
        .await
        .expect("device login");
    let reply = device
        .send(&records, Duration::from_secs(10))
        .await
        .expect("count reply");
    assert_eq!(u64::from(reply), n);
    records
        .iter()
        .map(|r| (imei.to_string(), time_of(r)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_over_tls_and_over_mutual_tls() {
    let pki = make_pki();
    let (broker, tls, mtls) = tls_broker(&pki).await;
    let collector = Collector::start(broker.port(), "tls-collector").await;

    // Server-authenticated TLS, by address, with the certificate checked for "localhost"
    // (mqtt.tls.server_name).
    let gw_tls = Gateway::start(
        tls_config("gw-tls", tls, &pki).set("mqtt.tls.server_name", "\"localhost\""),
    )
    .await;
    // Mutual TLS, certificate checked for the address itself.
    let gw_mtls = Gateway::start(
        tls_config("gw-mtls", mtls, &pki)
            .set("mqtt.tls.client_cert_file", &path_value(&pki.client_cert))
            .set("mqtt.tls.client_key_file", &path_value(&pki.client_key)),
    )
    .await;
    let mut keys = send_records(&gw_tls, &imei(51, 0), 0, 20).await;
    keys.extend(send_records(&gw_mtls, &imei(51, 1), 1, 20).await);
    let missing = collector.wait_for_all(&keys, TLS_WAIT).await;
    assert_eq!(
        missing,
        0,
        "records missing\n--- gw-tls ---\n{}\n--- gw-mtls ---\n{}",
        gw_tls.log(),
        gw_mtls.log()
    );
    for gw in [&gw_tls, &gw_mtls] {
        assert!(
            gw.count_log_lines(&["MQTT connected", "tls=true"]) >= 1,
            "{}",
            gw.log()
        );
    }
    let (got, errors, _) = collector.snapshot();
    assert!(errors.is_empty(), "{errors:?}");
    let gateways: HashSet<_> = got.iter().map(|g| g.gateway_id.as_str()).collect();
    assert_eq!(gateways, HashSet::from(["gw-tls", "gw-mtls"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tls_connections_say_why_and_publish_nothing() {
    let pki = make_pki();
    let (broker, tls, mtls) = tls_broker(&pki).await;
    let collector = Collector::start(broker.port(), "tls-refusal-collector").await;

    // No client certificate for a broker that requires one.
    let no_cert = Gateway::start(tls_config("gw-no-cert", mtls, &pki)).await;
    // A CA that did not sign the broker's certificate.
    let wrong_ca = Gateway::start(
        tls_config("gw-wrong-ca", tls, &pki).set("mqtt.tls.ca_file", &path_value(&pki.other_ca)),
    )
    .await;
    // The right CA, but a name the broker's certificate does not carry: proves that
    // mqtt.tls.server_name is what the certificate is checked against.
    let wrong_name = Gateway::start(
        tls_config("gw-wrong-name", tls, &pki).set("mqtt.tls.server_name", "\"other.example\""),
    )
    .await;
    send_records(&no_cert, &imei(52, 0), 0, 3).await;
    send_records(&wrong_ca, &imei(52, 1), 1, 3).await;
    send_records(&wrong_name, &imei(52, 2), 2, 3).await;

    let line = no_cert
        .wait_for_log_line(
            &["MQTT connection ended", "requires a client certificate"],
            TLS_WAIT,
        )
        .await;
    assert!(line.is_some(), "no reason in the log:\n{}", no_cert.log());
    let line = wrong_ca
        .wait_for_log_line(
            &[
                "MQTT connection ended",
                "does not chain to mqtt.tls.ca_file",
            ],
            TLS_WAIT,
        )
        .await;
    assert!(line.is_some(), "no reason in the log:\n{}", wrong_ca.log());
    let line = wrong_name
        .wait_for_log_line(
            &[
                "MQTT connection ended",
                "not valid for name \"other.example\"",
                "mqtt.tls.server_name",
            ],
            TLS_WAIT,
        )
        .await;
    assert!(
        line.is_some(),
        "no reason in the log:\n{}",
        wrong_name.log()
    );
    for gw in [&no_cert, &wrong_ca, &wrong_name] {
        assert_eq!(gw.count_log_lines(&["MQTT connected"]), 0, "{}", gw.log());
    }
    assert_eq!(collector.unique_count(), 0, "records got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_the_tls_key_and_file_at_fault() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let check = |extra: &str| {
        let config = write_file(
            dir.path(),
            "fleetedge.toml",
            &format!(
                "gateway_id = \"gw-check\"\n\
                 [mqtt]\nport = 8883\n\
                 [mqtt.tls]\nenabled = true\nca_file = {}\n{extra}\n\
                 [[listeners]]\nprotocol = \"teltonika\"\nbind = \"127.0.0.1:5027\"\n",
                path_value(&pki.ca)
            ),
        );
        let out = gateway_command()
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run fleetedge check-config");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = check(&format!(
        "client_cert_file = {}\nclient_key_file = {}",
        path_value(&pki.client_cert),
        path_value(&pki.client_key)
    ));
    assert_eq!(code, Some(0), "{text}");

    // The server's key does not belong to the client certificate.
    let (code, text) = check(&format!(
        "client_cert_file = {}\nclient_key_file = {}",
        path_value(&pki.client_cert),
        path_value(&pki.server_key)
    ));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("mqtt.tls.client_key_file"), "{text}");
    assert!(
        text.contains(&pki.server_key.display().to_string()),
        "{text}"
    );

    // A key where the certificate belongs.
    let (code, text) = check(&format!(
        "client_cert_file = {}\nclient_key_file = {}",
        path_value(&pki.client_key),
        path_value(&pki.client_key)
    ));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("mqtt.tls.client_cert_file"), "{text}");

    let missing = dir.path().join("missing.pem");
    let (code, text) = check(&format!(
        "client_cert_file = {}\nclient_key_file = {}",
        path_value(&missing),
        path_value(&pki.client_key)
    ));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("mqtt.tls.client_cert_file: cannot read") && text.contains("missing.pem"),
        "{text}"
    );
}
