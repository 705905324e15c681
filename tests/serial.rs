//! Serial ports for real: socat pty pairs, one end the gateway's `[[serial]] path`, the other
//! written by the test as the device would. The real binary and a real mosquitto.
//!
//! - `serial_records_reach_the_broker_and_survive_an_unplug`: an NMEA receiver (`nmea`,
//!   `device_id = "gnss-1"`) writes RMC + GGA pairs (the fact sheet's and built ones, with XOR
//!   checksums computed here) and a JSON-lines sensor (`jsonl`) writes `{"device_id":…}` lines
//!   (one bad line among them, skipped with a log line). Records reach the broker with the
//!   RMC's date, speed and course combined with the GGA's satellites, HDOP and altitude. Then
//!   the NMEA pty vanishes mid-sentence (socat killed), comes back with the same name about a
//!   second later, and the gateway reopens it (`reopen_max_ms = 1000`): new sentences arrive,
//!   nothing before was lost or duplicated, and the sensor port was never disturbed.
//! - `a_missing_serial_port_does_not_stop_the_gateway`: a port that does not exist at start is
//!   logged ("serial port unavailable") while the TCP listener serves a device normally; when
//!   the port appears it is opened and its records flow.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ARRIVE: Duration = Duration::from_secs(15);
const REPLY: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// NMEA sentences
// ---------------------------------------------------------------------------------------------

/// `$body*hh\r\n` with hh the XOR of every byte of `body`.
fn nmea(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |acc, b| acc ^ b);
    format!("${body}*{sum:02X}\r\n")
}

#[test]
fn checksums_match_the_fact_sheet() {
    assert_eq!(
        nmea("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
        "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
    );
    assert_eq!(
        nmea("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
    );
    assert_eq!(
        nmea("GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E"),
        "$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68\r\n"
    );
}

const GNSS_ID: &str = "gnss-1";

/// The fact sheet's two epochs: its RMC + GGA pair, and its second RMC with a GGA built for
/// it (negative altitude). Returns the sentences and the records they make.
fn sheet_epochs() -> (String, Vec<Value>) {
    let text = [
        nmea("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
        nmea("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        nmea("GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E"),
        nmea("GPGGA,225446,4916.45,N,12311.12,W,2,11,1.4,-12.3,M,-17.0,M,,"),
    ]
    .concat();
    let wants = vec![
        json!({
            "device_id": GNSS_ID, "protocol": "nmea", "time": "1994-03-23T12:35:19.000Z",
            "valid": true, "lat": 48.1173, "lon": 11.0 + 31.0 / 60.0,
            "speed_kmh": 22.4 * 1.852, "course_deg": 84.4,
            "satellites": 8, "hdop": 0.9, "altitude_m": 545.4, "event": null,
        }),
        json!({
            "device_id": GNSS_ID, "protocol": "nmea", "time": "1994-11-19T22:54:46.000Z",
            "valid": true, "lat": 49.0 + 16.45 / 60.0, "lon": -(123.0 + 11.12 / 60.0),
            "speed_kmh": 0.5 * 1.852, "course_deg": 54.7,
            "satellites": 11, "hdop": 1.4, "altitude_m": -12.3,
        }),
    ];
    (text, wants)
}

/// Epoch `k` of a receiver driving south-west of Buenos Aires on 2026-01-15, from 12:00:00:
/// a GNRMC then a GNGGA of the same time of day.
fn epoch(k: u32) -> (String, Value) {
    let (hh, mm, ss) = (12 + k / 3600, (k / 60) % 60, k % 60);
    let time = format!("{hh:02}{mm:02}{ss:02}");
    let lat_min = 36.0 + f64::from(k) * 0.001;
    let lon_min = 22.0 + f64::from(k) * 0.002;
    let (knots, course) = (10.0 + f64::from(k) * 0.5, f64::from(k * 7 % 360));
    let (sats, hdop, alt) = (5 + k % 7, 0.7 + f64::from(k % 5) * 0.1, 20.0 + f64::from(k));
    let text = [
        nmea(&format!(
            "GNRMC,{time}.00,A,34{lat_min:06.3},S,058{lon_min:06.3},W,{knots:05.1},{course:05.1},150126,,,A"
        )),
        nmea(&format!(
            "GNGGA,{time}.00,34{lat_min:06.3},S,058{lon_min:06.3},W,1,{sats:02},{hdop:.1},{alt:.1},M,16.0,M,,"
        )),
    ]
    .concat();
    let want = json!({
        "device_id": GNSS_ID, "protocol": "nmea",
        "time": format!("2026-01-15T{hh:02}:{mm:02}:{ss:02}.000Z"),
        "valid": true, "lat": -(34.0 + lat_min / 60.0), "lon": -(58.0 + lon_min / 60.0),
        "speed_kmh": knots * 1.852, "course_deg": course,
        "satellites": sats, "hdop": (hdop * 10.0).round() / 10.0, "altitude_m": alt,
    });
    (text, want)
}

fn epochs(range: std::ops::Range<u32>) -> (String, Vec<Value>) {
    let (texts, wants): (Vec<String>, Vec<Value>) = range.map(epoch).unzip();
    (texts.concat(), wants)
}

// ---------------------------------------------------------------------------------------------
// JSON lines
// ---------------------------------------------------------------------------------------------

const SENSOR_ID: &str = "sensor-1";

/// Line `k` of the sensor and its record.
fn sensor_line(k: u32) -> (String, Value) {
    let time = format!("2026-01-15T12:00:{k:02}.000Z");
    let temp = 21.5 + f64::from(k) * 0.25;
    let line = format!("{{\"device_id\":\"{SENSOR_ID}\",\"time\":\"{time}\",\"temp_c\":{temp}}}\n");
    let want = json!({
        "device_id": SENSOR_ID, "protocol": "jsonl", "time": time, "io": {"temp_c": temp},
    });
    (line, want)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

fn gnss_keys() -> [(&'static str, &'static str); 2] {
    [("device_id", "\"gnss-1\""), ("reopen_max_ms", "1000")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_records_reach_the_broker_and_survive_an_unplug() {
    let dir = tempfile::tempdir().expect("tempdir for the ptys");
    let mut gnss = PtyPair::start(dir.path(), "gnss");
    let sensor = PtyPair::start(dir.path(), "sensor");
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "serial-collector").await;
    let mut gateway = Gateway::start(
        GatewayConfig::new("gw-serial", broker.port())
            .serial(&gnss.port, "nmea", &gnss_keys())
            .serial(&sensor.port, "jsonl", &[("reopen_max_ms", "1000")]),
    )
    .await;
    let gnss_path = gnss.port.display().to_string();
    let sensor_path = sensor.port.display().to_string();
    for path in [&gnss_path, &sensor_path] {
        gateway
            .wait_for_log_line(&["serial port open", path], REPLY)
            .await
            .unwrap_or_else(|| panic!("the gateway did not open {path}"));
    }

    // The receiver: the sheet's epochs, then built ones.
    let mut wants = Vec::new();
    let mut receiver = gnss.open_dev();
    let (text, sheet) = sheet_epochs();
    write_all(&mut receiver, &text);
    wants.extend(sheet);
    let (text, first) = epochs(0..4);
    write_all(&mut receiver, &text);
    wants.extend(first);

    // The sensor: good lines around one that is not JSON.
    let mut sensor_dev = sensor.open_dev();
    let mut sensor_wants = Vec::new();
    for k in 0..2 {
        let (line, want) = sensor_line(k);
        write_all(&mut sensor_dev, &line);
        sensor_wants.push(want);
    }
    write_all(&mut sensor_dev, "{\"device_id\":\"sensor-1\",\"time\":\n");
    for k in 2..4 {
        let (line, want) = sensor_line(k);
        write_all(&mut sensor_dev, &line);
        sensor_wants.push(want);
    }
    expect_records(&collector, ARRIVE, &[GNSS_ID], &wants, |_| false).await;
    expect_records(&collector, ARRIVE, &[SENSOR_ID], &sensor_wants, |_| false).await;
    let line = gateway
        .wait_for_log_line(&["malformed frame", &format!("peer={sensor_path}")], REPLY)
        .await
        .unwrap_or_else(|| panic!("no log line for the bad JSON line on {sensor_path}"));
    assert!(line.contains("reason="), "{line}");

    // Unplugged mid-stream: two more epochs (wait until they are stored), half a sentence,
    // then the pty vanishes.
    let (text, before) = epochs(4..6);
    write_all(&mut receiver, &text);
    wants.extend(before);
    expect_records(&collector, ARRIVE, &[GNSS_ID], &wants, |_| false).await;
    write_all(&mut receiver, "$GNRMC,120006.00,A,3436.0");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(receiver);
    gnss.kill();
    let closed = gateway
        .wait_for_log_line(&["serial port closed; reopening", &gnss_path], REPLY)
        .await;
    assert!(
        closed.is_some(),
        "the gateway did not notice the pty vanish"
    );

    // Back after about a second, under the same name: reopened within reopen_max_ms.
    tokio::time::sleep(Duration::from_secs(1)).await;
    gnss.restart();
    let reopened = wait_until(Duration::from_secs(5), || {
        gateway.count_log_lines(&["serial port open", &gnss_path]) >= 2
    })
    .await;
    assert!(
        reopened,
        "the gateway did not reopen {gnss_path} within 5 s"
    );
    let mut receiver = gnss.open_dev();
    let (text, after) = epochs(6..10);
    write_all(&mut receiver, &text);
    wants.extend(after);
    expect_records(&collector, ARRIVE, &[GNSS_ID], &wants, |_| false).await;

    // The sensor port was not disturbed.
    let (line, want) = sensor_line(4);
    write_all(&mut sensor_dev, &line);
    sensor_wants.push(want);
    expect_records(&collector, ARRIVE, &[SENSOR_ID], &sensor_wants, |_| false).await;
    assert_eq!(
        gateway.count_log_lines(&["serial port open", &sensor_path]),
        1,
        "the sensor port was reopened, though only the GNSS pty went away"
    );
    assert!(gateway.is_running(), "the gateway exited");
    assert_no_problems("batches", &contract_errors(&collector));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_serial_port_does_not_stop_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir for the ptys");
    let missing = dir.path().join("gnss");
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "serial-missing-collector").await;
    let mut gateway = Gateway::start(
        GatewayConfig::new("gw-serial-missing", broker.port()).serial(
            &missing,
            "nmea",
            &gnss_keys(),
        ),
    )
    .await;
    let path = missing.display().to_string();
    gateway
        .wait_for_log_line(&["serial port unavailable", &path], REPLY)
        .await
        .unwrap_or_else(|| panic!("no \"serial port unavailable\" log line for {path}"));

    // The TCP listener serves a device meanwhile.
    let imei = imei(90, 0);
    let mut device = Device::connect(gateway.addr(), &imei, REPLY)
        .await
        .expect("a Teltonika device logs in while the serial port is missing");
    let records: Vec<_> = (0..3).map(|k| avl_record(0, k)).collect();
    assert_eq!(device.send(&records, REPLY).await.expect("reply"), 3);
    let keys: std::collections::HashSet<_> =
        records.iter().map(|r| (imei.clone(), time_of(r))).collect();
    assert_eq!(
        collector.wait_for_all(&keys, ARRIVE).await,
        0,
        "the device's records did not arrive"
    );
    assert!(gateway.is_running(), "the gateway exited");

    // The port appears: it is opened (within reopen_max_ms) and its records flow.
    let gnss = PtyPair::start(dir.path(), "gnss");
    gateway
        .wait_for_log_line(&["serial port open", &path], Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("the gateway did not open {path} once it appeared"));
    let mut receiver = gnss.open_dev();
    let (text, wants) = epochs(0..2);
    write_all(&mut receiver, &text);
    expect_records(&collector, ARRIVE, &[GNSS_ID], &wants, |_| false).await;
    let (got, errors, _) = collector.snapshot();
    assert_no_problems("batches", &errors);
    for g in got.iter().filter(|g| g.device_id == imei) {
        let sent = records
            .iter()
            .find(|r| time_of(r) == g.time)
            .expect("a record the device sent");
        if let Err(e) = check_fields(&imei, sent, &g.record) {
            panic!("{e}");
        }
    }
}
