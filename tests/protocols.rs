//! Every network protocol through one real gateway (the binary, a real mosquitto), as the
//! devices' firmware would speak it. Frames and answers come from the fact sheets in
//! `shared/protocols/`; checksums are computed here, independently of the decoders.
//!
//! - `every_protocol_is_answered_and_reaches_the_broker`: one gateway with GT06, Wialon IPS,
//!   two Queclink (ACK mode off and on) TCP listeners and a Teltonika UDP listener.
//!   - GT06: login, location frames (the sheet's, CRC corrected, and built ones in every
//!     hemisphere), heartbeat and alarm; every answer byte-exact, every record at the broker
//!     with device_id = IMEI and time/lat/lon/satellites as the sheet says.
//!   - Wialon IPS 1.1 and 2.0 (with CRC-16/ARC) on two connections: `#L#`, `#SD#`, `#D#` with
//!     params, `#B#` with three messages, `#P#`; answers `#AL#1`, `#ASD#1`, `#AD#1`, `#AB#3`,
//!     `#AP#`; params, ADC and inputs in `io`.
//!   - Queclink: a GTFRI with two fixes (ACK mode off: no answer, the heartbeat's
//!     `+SACK:GTHBD,…$` is the first thing back), a GTFRI with three fixes and a `+BUFF`
//!     report with ACK mode on (`+SACK:<count>$` each); one record per fix, longitude before
//!     latitude, accuracy 0 = invalid.
//!   - Teltonika UDP: the sheet's datagram, ack `0005CAFE010501`, its record at the broker.
//! - `malformed_input_is_skipped_logged_and_loses_nothing`: per protocol, good records
//!   first, then bad input (a GT06 frame with a bad CRC and GT06 garbage, a broken Wialon
//!   packet and Wialon garbage, a Queclink report with broken fields, a truncated UDP
//!   datagram), then a good frame from another device; the bad input gets no positive answer
//!   and stores nothing, the gateway log names the peer and the reason, and every record
//!   accepted before and after reaches the broker.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const REPLY: Duration = Duration::from_secs(10);
const ARRIVE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Checksums, computed here (not by the decoders under test)
// ---------------------------------------------------------------------------------------------

/// CRC-16/X-25 (GT06 "CRC-ITU"): reflected poly 0x8408, init 0xFFFF, xorout 0xFFFF.
fn x25(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// CRC-16/ARC (Wialon IPS 2.0): reflected poly 0xA001, init 0, xorout 0.
fn arc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

fn unhex(text: &str) -> Vec<u8> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(compact).expect("hex in the test")
}

#[test]
fn checksums_match_the_fact_sheets() {
    assert_eq!(x25(b"123456789"), 0x906E);
    assert_eq!(x25(&[0x05, 0x01, 0x00, 0x01]), 0xD9DC);
    assert_eq!(arc(b"123456789"), 0xBB3D);
    assert_eq!(arc(b"2.0;123456789012345;NA;"), 0x15CD);
    // The sheet's frames are built again from their fields, CRC included.
    assert_eq!(
        gt06::frame(0x01, &unhex("0123456789012345"), 1),
        gt06::login()
    );
    assert_eq!(
        gt06::frame(0x13, &unhex("4004040001"), 0x0F),
        gt06::heartbeat()
    );
    assert_eq!(gt06::reply(0x01, 1), unhex("787805010001D9DC0D0A"));
    assert_eq!(gt06::reply(0x13, 0x0F), unhex("78780513000F008F0D0A"));
    assert_eq!(gt06::reply(0x16, 0x36), unhex("78780516003695700D0A"));
    assert_eq!(
        x25(&gt06::sheet_location_printed()[2..32]),
        0x7377,
        "the sheet says the printed location example's CRC should be 0x7377"
    );
    assert_eq!(
        wialon::v2("L", "2.0;123456789012345;NA;"),
        "#L#2.0;123456789012345;NA;15CD\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// GT06 frames
// ---------------------------------------------------------------------------------------------

mod gt06 {
    use super::{unhex, x25};

    pub const IMEI: &str = "123456789012345";

    /// A `78 78` frame: length = protocol + content + serial + CRC.
    pub fn frame(protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
        let mut f = vec![0x78, 0x78, (content.len() + 5) as u8, protocol];
        f.extend_from_slice(content);
        f.extend_from_slice(&serial.to_be_bytes());
        let crc = x25(&f[2..]);
        f.extend_from_slice(&crc.to_be_bytes());
        f.extend_from_slice(&[0x0D, 0x0A]);
        f
    }

    /// What the server answers to `protocol` with `serial`.
    pub fn reply(protocol: u8, serial: u16) -> Vec<u8> {
        let mut f = vec![0x78, 0x78, 0x05, protocol];
        f.extend_from_slice(&serial.to_be_bytes());
        let crc = x25(&f[2..]);
        f.extend_from_slice(&crc.to_be_bytes());
        f.extend_from_slice(&[0x0D, 0x0A]);
        f
    }

    /// Sheet §8 login: IMEI 123456789012345, serial 1.
    pub fn login() -> Vec<u8> {
        unhex("78 78 0D 01 01 23 45 67 89 01 23 45 00 01 8C DD 0D 0A")
    }

    /// A login for another IMEI (15 digits, BCD with a leading 0 nibble).
    pub fn login_for(imei: &str, serial: u16) -> Vec<u8> {
        frame(0x01, &unhex(&format!("0{imei}")), serial)
    }

    /// Sheet §8 heartbeat, serial 15.
    pub fn heartbeat() -> Vec<u8> {
        unhex("78 78 0A 13 40 04 04 00 01 00 0F DC EE 0D 0A")
    }

    /// Sheet §8 alarm (SOS), serial 0x36.
    pub fn alarm() -> Vec<u8> {
        unhex(
            "78 78 25 16 0B 0B 0F 0E 24 1D CF 02 7A C8 87 0C 46 57 E6 00 14 02 09 01 CC 00 28 7D \
             00 1F 72 65 06 04 01 01 00 36 56 A4 0D 0A",
        )
    }

    /// Sheet §8 location (0x12) exactly as printed, with its wrong CRC 0x8081.
    pub fn sheet_location_printed() -> Vec<u8> {
        unhex(
            "78 78 1F 12 0B 08 1D 11 2E 10 CC 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC 00 28 7D \
             00 1F B8 00 03 80 81 0D 0A",
        )
    }

    /// The same location with the CRC the sheet computed for it (0x7377).
    pub fn sheet_location() -> Vec<u8> {
        let mut f = sheet_location_printed();
        let crc = x25(&f[2..32]);
        f[32..34].copy_from_slice(&crc.to_be_bytes());
        f
    }

    /// A 0x12 location: `time` = [YY, MM, DD, hh, mm, ss] UTC, degrees unsigned with the
    /// hemisphere in the course/status word (bit 10 north, bit 11 west, bit 12 positioned).
    #[allow(clippy::too_many_arguments)]
    pub fn location(
        time: [u8; 6],
        satellites: u8,
        lat: f64,
        lon: f64,
        speed: u8,
        course: u16,
        positioned: bool,
        serial: u16,
    ) -> Vec<u8> {
        let mut c = time.to_vec();
        c.push(0xC0 | satellites);
        c.extend_from_slice(&((lat.abs() * 1_800_000.0).round() as u32).to_be_bytes());
        c.extend_from_slice(&((lon.abs() * 1_800_000.0).round() as u32).to_be_bytes());
        c.push(speed);
        let status = course
            | if lat >= 0.0 { 1 << 10 } else { 0 }
            | if lon < 0.0 { 1 << 11 } else { 0 }
            | if positioned { 1 << 12 } else { 0 };
        c.extend_from_slice(&status.to_be_bytes());
        // MCC 460, MNC 0, LAC 0x287D, cell 0x001FB8 (the sheet's LBS).
        c.extend_from_slice(&unhex("01CC 00 287D 001FB8"));
        frame(0x12, &c, serial)
    }
}

// ---------------------------------------------------------------------------------------------
// Wialon IPS packets
// ---------------------------------------------------------------------------------------------

mod wialon {
    use super::arc;

    /// A v1.1 packet: `#TYPE#body\r\n`.
    pub fn v1(kind: &str, body: &str) -> String {
        format!("#{kind}#{body}\r\n")
    }

    /// A v2.0 packet: `body` must end with the `;` (or `|` for B) the CRC follows.
    pub fn v2(kind: &str, body: &str) -> String {
        format!("#{kind}#{body}{:X}\r\n", arc(body.as_bytes()))
    }
}

// ---------------------------------------------------------------------------------------------
// A device connection and its answers
// ---------------------------------------------------------------------------------------------

/// Bytes shown both ways: as text (escaped) and as hex.
fn show(bytes: &[u8]) -> String {
    format!(
        "{:?} (hex {})",
        String::from_utf8_lossy(bytes),
        hex::encode(bytes)
    )
}

/// One TCP device connection.
struct Conn {
    stream: TcpStream,
    local: SocketAddr,
    what: String,
}

impl Conn {
    async fn open(addr: SocketAddr, what: &str) -> Conn {
        let stream = tokio::time::timeout(REPLY, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("{what}: connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("{what}: connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        let local = stream.local_addr().expect("local addr");
        Conn {
            stream,
            local,
            what: what.to_string(),
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        self.stream
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("{}: sending {}: {e}", self.what, show(bytes)));
    }

    /// Reads until `n` bytes, EOF, an error or `timeout`; returns what arrived and whether
    /// the connection was closed.
    async fn read_n(&mut self, n: usize, timeout: Duration) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while got.len() < n {
            let mut buf = vec![0u8; n - got.len()];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
                Ok(Ok(k)) => got.extend_from_slice(&buf[..k]),
                Err(_) => break,
            }
        }
        (got, false)
    }

    /// Sends `frame` and expects exactly `want` back (compared byte for byte).
    async fn exchange(&mut self, frame: impl AsRef<[u8]>, want: impl AsRef<[u8]>) {
        let (frame, want) = (frame.as_ref(), want.as_ref());
        self.send(frame).await;
        self.expect(frame, want).await;
    }

    /// Expects exactly `want` as the next bytes (the answer to `frame`).
    async fn expect(&mut self, frame: &[u8], want: &[u8]) {
        let (got, closed) = self.read_n(want.len(), REPLY).await;
        assert!(
            got == want,
            "{}: {} was answered {}{}; want {}",
            self.what,
            show(frame),
            show(&got),
            if closed {
                " and the connection closed"
            } else {
                ""
            },
            show(want)
        );
    }

    /// Reads until the gateway closes the connection; returns what it sent first.
    async fn until_closed(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let read = tokio::time::timeout(REPLY, self.stream.read_to_end(&mut all)).await;
        assert!(
            read.is_ok(),
            "{}: the gateway did not close the connection within {REPLY:?} (got {})",
            self.what,
            show(&all)
        );
        all
    }
}

// ---------------------------------------------------------------------------------------------
// Records at the broker
// ---------------------------------------------------------------------------------------------

/// The gateway's log line about bad input from `peer` (`what`: "malformed frame" or
/// "malformed datagram"); it must name a non-empty reason.
async fn bad_input_logged(gateway: &Gateway, what: &str, peer: SocketAddr) -> String {
    let line = gateway
        .wait_for_log_line(&[what, &format!("peer={peer} ")], REPLY)
        .await
        .unwrap_or_else(|| panic!("no \"{what}\" log line naming peer={peer}"));
    let reason = line.split("reason=").nth(1).unwrap_or_default().trim();
    assert!(!reason.is_empty(), "the log line names no reason: {line}");
    line
}

fn is_heartbeat(r: &Value) -> bool {
    r["event"] == "heartbeat"
}

/// Degrees and decimal minutes (Wialon's DDMM.MMMM) as decimal degrees.
fn dm(degrees: f64, minutes: f64) -> f64 {
    degrees + minutes / 60.0
}

// ---------------------------------------------------------------------------------------------
// Per-protocol device scripts (used by both tests)
// ---------------------------------------------------------------------------------------------

/// GT06: the sheet's session, plus built locations; returns the records it expects.
async fn gt06_session(addr: SocketAddr) -> Vec<Value> {
    let mut dev = Conn::open(addr, "GT06 device").await;
    dev.exchange(gt06::login(), gt06::reply(0x01, 1)).await;
    dev.send(gt06::sheet_location()).await;
    let built = [
        (-33.868_8, 151.209_3, 0u16, 7u8), // south, east
        (40.416_8, -3.703_8, 181, 9),      // north, west
        (-34.603_7, -58.381_6, 359, 11),   // south, west
    ];
    let mut wants = vec![json!({
        "device_id": gt06::IMEI, "protocol": "gt06", "time": "2011-08-29T17:46:16.000Z",
        "valid": true, "lat": 41_601_003.0 / 1.8e6, "lon": 205_936_713.0 / 1.8e6,
        "satellites": 12, "speed_kmh": 0.0, "course_deg": 143.0, "event": null,
    })];
    for (k, (lat, lon, course, sats)) in built.into_iter().enumerate() {
        let frame = gt06::location(
            [26, 1, 2, 3, 4, 5 + k as u8],
            sats,
            lat,
            lon,
            30 + k as u8,
            course,
            true,
            4 + k as u16,
        );
        dev.send(frame).await;
        // The wire carries degrees × 1 800 000, rounded.
        let on_wire = |d: f64| (d.abs() * 1_800_000.0).round() / 1_800_000.0 * d.signum();
        wants.push(json!({
            "device_id": gt06::IMEI, "protocol": "gt06",
            "time": format!("2026-01-02T03:04:{:02}.000Z", 5 + k),
            "valid": true, "lat": on_wire(lat), "lon": on_wire(lon), "satellites": sats,
            "speed_kmh": 30.0 + k as f64, "course_deg": f64::from(course), "event": null,
        }));
    }
    dev.exchange(gt06::heartbeat(), gt06::reply(0x13, 0x0F))
        .await;
    dev.exchange(gt06::alarm(), gt06::reply(0x16, 0x36)).await;
    wants.push(json!({
        "device_id": gt06::IMEI, "protocol": "gt06", "time": "2011-11-15T14:36:29.000Z",
        "valid": true, "lat": 0x027A_C887 as f64 / 1.8e6, "lon": 0x0C46_57E6 as f64 / 1.8e6,
        "satellites": 15, "speed_kmh": 0.0, "course_deg": 2.0, "event": "sos",
    }));
    wants
}

const WIALON_V1: &str = "351234567890121";
const WIALON_V2: &str = "351234567890122";

/// Wialon IPS 1.1 and 2.0, each on its own connection; returns the expected records.
async fn wialon_sessions(addr: SocketAddr) -> Vec<Value> {
    use wialon::{v1, v2};
    let moscow = (dm(55.0, 44.6025), dm(37.0, 39.6834));
    let south_west = (-dm(33.0, 44.67), -dm(70.0, 40.12));
    let mut wants = Vec::new();
    let base = |imei: &str, time: &str, (lat, lon): (f64, f64)| json!({"device_id": imei, "protocol": "wialon", "time": time, "lat": lat, "lon": lon});

    // 1.1: no checksums.
    let mut dev = Conn::open(addr, "Wialon 1.1 device").await;
    dev.exchange(v1("L", &format!("{WIALON_V1};NA")), "#AL#1\r\n")
        .await;
    dev.exchange(
        v1("SD", "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4"),
        "#ASD#1\r\n",
    )
    .await;
    let mut w = base(WIALON_V1, "2013-04-27T20:56:01.000Z", moscow);
    w["speed_kmh"] = json!(1.0);
    w["course_deg"] = json!(2.0);
    w["altitude_m"] = json!(3.0);
    w["satellites"] = json!(4);
    w["valid"] = json!(true);
    wants.push(w);
    dev.exchange(
        v1(
            "D",
            "270413;205602;5544.6025;N;03739.6834;E;1;2;3;4;0.0;0;0;14.77,0.02,3.6;NA;\
             count1:1:564,fuel:2:45.8,hw:3:V4.5",
        ),
        "#AD#1\r\n",
    )
    .await;
    let mut w = base(WIALON_V1, "2013-04-27T20:56:02.000Z", moscow);
    w["hdop"] = json!(0.0);
    w["satellites"] = json!(4);
    w["io"] = json!({"count1": 564, "fuel": 45.8, "hw": "V4.5",
                     "adc1": 14.77, "adc2": 0.02, "adc3": 3.6});
    wants.push(w);
    // Black box: two SD-style messages (one south-west, unpadded, negative altitude) and a
    // D-style one with params.
    dev.exchange(
        v1(
            "B",
            "270413;205603;5544.6025;N;03739.6834;E;10;20;30;7|\
             270413;205604;3344.67;S;7040.12;W;11;21;-31;8|\
             270413;205605;5544.6025;N;03739.6834;E;12;22;32;9;1.2;3;1;;NA;temp:2:-3.5,door:1:1",
        ),
        "#AB#3\r\n",
    )
    .await;
    for (k, pos, speed, alt, sats) in [
        (3, moscow, 10.0, 30.0, 7),
        (4, south_west, 11.0, -31.0, 8),
        (5, moscow, 12.0, 32.0, 9),
    ] {
        let mut w = base(WIALON_V1, &format!("2013-04-27T20:56:0{k}.000Z"), pos);
        w["speed_kmh"] = json!(speed);
        w["altitude_m"] = json!(alt);
        w["satellites"] = json!(sats);
        if k == 5 {
            w["hdop"] = json!(1.2);
            w["io"] = json!({"temp": -3.5, "door": 1, "inputs": 3, "outputs": 1});
        }
        wants.push(w);
    }
    dev.exchange(v1("P", ""), "#AP#\r\n").await;

    // 2.0: CRC-16/ARC on L, SD, D and B.
    let mut dev = Conn::open(addr, "Wialon 2.0 device").await;
    dev.exchange(v2("L", &format!("2.0;{WIALON_V2};NA;")), "#AL#1\r\n")
        .await;
    dev.exchange(
        v2(
            "SD",
            "280413;101500;5544.6025;N;03739.6834;E;50;180;150;12;",
        ),
        "#ASD#1\r\n",
    )
    .await;
    let mut w = base(WIALON_V2, "2013-04-28T10:15:00.000Z", moscow);
    w["speed_kmh"] = json!(50.0);
    w["course_deg"] = json!(180.0);
    w["satellites"] = json!(12);
    wants.push(w);
    dev.exchange(
        v2(
            "D",
            "280413;101501;5544.6025;N;03739.6834;E;51;181;151;11;0.9;0;0;;NA;\
             count1:1:565,fuel:2:45.5,hw:3:V4.5;",
        ),
        "#AD#1\r\n",
    )
    .await;
    let mut w = base(WIALON_V2, "2013-04-28T10:15:01.000Z", moscow);
    w["hdop"] = json!(0.9);
    w["io"] = json!({"count1": 565, "fuel": 45.5, "hw": "V4.5"});
    wants.push(w);
    dev.exchange(
        v2(
            "B",
            "280413;101502;5544.6025;N;03739.6834;E;52;0;150;10|\
             280413;101503;5544.6025;N;03739.6834;E;53;0;150;10|\
             280413;101504;5544.6025;N;03739.6834;E;54;0;150;10|",
        ),
        "#AB#3\r\n",
    )
    .await;
    for k in 2..5 {
        let mut w = base(WIALON_V2, &format!("2013-04-28T10:15:0{k}.000Z"), moscow);
        w["speed_kmh"] = json!(50.0 + k as f64);
        wants.push(w);
    }
    dev.exchange(v1("P", ""), "#AP#\r\n").await;
    wants
}

const QUECLINK: &str = "135790246811220";
const QUECLINK_ACK: &str = "135790246811221";

/// One Queclink GL300 fix block: accuracy, speed, azimuth, altitude, lon, lat, UTC time.
fn fix(acc: u8, speed: f64, az: u16, alt: f64, lon: f64, lat: f64, time: &str) -> String {
    format!("{acc},{speed:.1},{az},{alt:.1},{lon:.6},{lat:.6},{time},0460,0000,18d8,6141,00")
}

/// Queclink with ACK mode off (`plain`) and on (`acked`); returns the expected records.
async fn queclink_sessions(plain: SocketAddr, acked: SocketAddr) -> Vec<Value> {
    let mut wants = Vec::new();

    // ACK mode off: the sheet's two-fix report gets no answer, so the first bytes back are
    // the heartbeat's answer.
    let mut dev = Conn::open(plain, "Queclink device (ACK mode off)").await;
    dev.send(
        "+RESP:GTFRI,1A0102,135790246811220,,0,0,2,1,4.3,92,70.0,121.354335,31.222073,\
         20090214013254,0460,0000,18d8,6141,00,0,4.3,92,70.0,121.354335,31.222073,\
         20090101000000,0460,0000,18d8,6141,00,,20090214093254,11F0$",
    )
    .await;
    dev.exchange(
        "+ACK:GTHBD,1A0102,135790246811220,,20100214093254,11F0$",
        "+SACK:GTHBD,1A0102,11F0$",
    )
    .await;
    wants.push(json!({
        "device_id": QUECLINK, "protocol": "queclink", "time": "2009-02-14T01:32:54.000Z",
        "valid": true, "lat": 31.222073, "lon": 121.354335, "speed_kmh": 4.3,
        "course_deg": 92.0, "altitude_m": 70.0, "hdop": 1.0, "event": null,
    }));
    wants.push(json!({
        "device_id": QUECLINK, "protocol": "queclink", "time": "2009-01-01T00:00:00.000Z",
        "valid": false, "hdop": null,
    }));

    // ACK mode on: every report is answered with its count.
    let mut dev = Conn::open(acked, "Queclink device (ACK mode on)").await;
    let fixes = [
        (
            2u8,
            10.5,
            45u16,
            -12.5,
            -58.381_6,
            -34.603_7,
            "20260103000001",
        ),
        (3, 20.0, 90, 25.0, -58.381_7, -34.603_8, "20260103000002"),
        (0, 0.0, 0, 0.0, -58.381_8, -34.603_9, "20260103000003"),
    ];
    let blocks: Vec<String> = fixes
        .iter()
        .map(|&(a, s, z, h, lon, lat, t)| fix(a, s, z, h, lon, lat, t))
        .collect();
    dev.exchange(
        format!(
            "+RESP:GTFRI,1A0102,{QUECLINK_ACK},,0,0,3,{},87,20260103080003,0A1B$",
            blocks.join(",")
        ),
        "+SACK:0A1B$",
    )
    .await;
    for (k, &(acc, speed, az, alt, lon, lat, _)) in fixes.iter().enumerate() {
        let mut w = json!({
            "device_id": QUECLINK_ACK, "protocol": "queclink",
            "time": format!("2026-01-03T00:00:0{}.000Z", k + 1),
            "valid": acc > 0, "lat": lat, "lon": lon,
        });
        if acc > 0 {
            w["speed_kmh"] = json!(speed);
            w["course_deg"] = json!(f64::from(az));
            w["altitude_m"] = json!(alt);
            w["hdop"] = json!(f64::from(acc));
        }
        wants.push(w);
    }
    dev.exchange(
        format!(
            "+BUFF:GTFRI,1A0102,{QUECLINK_ACK},,0,0,1,{},86,20260103080010,0A1C$",
            fix(1, 5.0, 10, 1.0, -58.382, -34.604, "20260103000004")
        ),
        "+SACK:0A1C$",
    )
    .await;
    wants.push(json!({
        "device_id": QUECLINK_ACK, "protocol": "queclink", "time": "2026-01-03T00:00:04.000Z",
        "valid": true, "lat": -34.604, "lon": -58.382, "speed_kmh": 5.0,
    }));
    dev.exchange(
        format!("+ACK:GTHBD,1A0102,{QUECLINK_ACK},,20260103080011,0A1D$"),
        "+SACK:GTHBD,1A0102,0A1D$",
    )
    .await;
    wants
}

/// Sheet §7 Codec 8 over UDP: packet id CAFE, AVL packet id 05, IMEI 352093086403655.
const UDP_DATAGRAM: &str = "003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30\
                            010000000000000000000000000000000103021503010101425DBC000001";
const UDP_IMEI: &str = "352093086403655";

/// The sheet's datagram with another IMEI (same length) and packet id.
fn udp_datagram_from(imei: &str, packet_id: u16) -> Vec<u8> {
    assert_eq!(imei.len(), 15);
    let mut d = unhex(UDP_DATAGRAM);
    d[2..4].copy_from_slice(&packet_id.to_be_bytes());
    d[8..23].copy_from_slice(imei.as_bytes());
    d
}

fn udp_want(imei: &str) -> Value {
    json!({
        "device_id": imei, "protocol": "teltonika-udp", "time": "2019-06-13T06:23:26.000Z",
        "valid": false, "lat": 0.0, "lon": 0.0, "satellites": 0, "event": "io:1",
        "io": {"priority": 1, "21": 3, "1": 1, "66": 0x5DBC},
    })
}

/// Sends `datagram` from `socket` and waits up to `wait` for an answer.
async fn udp_exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    socket.send_to(datagram, to).await.expect("send datagram");
    let mut buf = [0u8; 1500];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        Ok(Err(e)) => panic!("UDP receive: {e}"),
        Err(_) => None,
    }
}

fn config(gateway_id: &str, mqtt_port: u16) -> GatewayConfig {
    GatewayConfig::new(gateway_id, mqtt_port)
        .listener("gt06", &[])
        .listener("wialon", &[])
        .listener("queclink", &[])
        .listener("queclink", &[("ack_reports", "true")])
        .listener("teltonika-udp", &[])
        .listener("wialon-udp", &[])
}

const GT06_AT: usize = 0;
const WIALON_AT: usize = 1;
const QUECLINK_AT: usize = 2;
const QUECLINK_ACK_AT: usize = 3;
const UDP_AT: usize = 4;
const WIALON_UDP_AT: usize = 5;
const WIALON_UDP: &str = "351234567890139";

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_is_answered_and_reaches_the_broker() {
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "protocols-collector").await;
    let gateway = Gateway::start(config("gw-protocols", broker.port())).await;

    let gt06_wants = gt06_session(gateway.listener_addr(GT06_AT)).await;
    let wialon_wants = wialon_sessions(gateway.listener_addr(WIALON_AT)).await;
    let queclink_wants = queclink_sessions(
        gateway.listener_addr(QUECLINK_AT),
        gateway.listener_addr(QUECLINK_ACK_AT),
    )
    .await;

    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let ack = udp_exchange(
        &udp,
        gateway.listener_addr(UDP_AT),
        &unhex(UDP_DATAGRAM),
        REPLY,
    )
    .await;
    assert_eq!(
        ack.as_deref().map(hex::encode),
        Some("0005cafe010501".to_string()),
        "the sheet's UDP datagram must be acked 0005CAFE010501"
    );
    // Wialon over UDP: the device id in front of the packet, answered once stored.
    let answer = udp_exchange(
        &udp,
        gateway.listener_addr(WIALON_UDP_AT),
        format!("{WIALON_UDP}#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n").as_bytes(),
        REPLY,
    )
    .await;
    assert_eq!(answer.as_deref(), Some(&b"#ASD#1\r\n"[..]));
    let wialon_udp_want = json!({
        "device_id": WIALON_UDP, "protocol": "wialon-udp", "time": "2013-04-27T20:56:01.000Z",
        "lat": dm(55.0, 44.6025), "lon": dm(37.0, 39.6834), "speed_kmh": 1.0,
        "course_deg": 2.0, "altitude_m": 3.0, "satellites": 4, "valid": true,
    });

    // GT06 heartbeats may become records of their own (the decoder documents it): allowed,
    // nothing else is.
    expect_records(&collector, ARRIVE, &[gt06::IMEI], &gt06_wants, is_heartbeat).await;
    expect_records(
        &collector,
        ARRIVE,
        &[WIALON_V1, WIALON_V2],
        &wialon_wants,
        |_| false,
    )
    .await;
    expect_records(
        &collector,
        ARRIVE,
        &[QUECLINK, QUECLINK_ACK],
        &queclink_wants,
        |_| false,
    )
    .await;
    expect_records(
        &collector,
        ARRIVE,
        &[UDP_IMEI],
        &[udp_want(UDP_IMEI)],
        |_| false,
    )
    .await;
    expect_records(
        &collector,
        ARRIVE,
        &[WIALON_UDP],
        &[wialon_udp_want],
        |_| false,
    )
    .await;
    assert_no_problems("batches", &contract_errors(&collector));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_skipped_logged_and_loses_nothing() {
    let broker = Mosquitto::start(free_port()).await;
    let collector = Collector::start(broker.port(), "malformed-collector").await;
    let gateway = Gateway::start(config("gw-malformed", broker.port())).await;
    let mut wants: Vec<Value> = Vec::new();

    // --- GT06 -----------------------------------------------------------------------------
    // Good records first (the whole sheet session).
    wants.extend(gt06_session(gateway.listener_addr(GT06_AT)).await);
    // The sheet's location as printed (its CRC is wrong): skipped without an answer, the
    // connection stays in sync, the next heartbeat is answered.
    let mut bad = Conn::open(gateway.listener_addr(GT06_AT), "GT06 device with a bad CRC").await;
    let bad_imei = "123456789012346";
    bad.exchange(gt06::login_for(bad_imei, 1), gt06::reply(0x01, 1))
        .await;
    bad.send(gt06::sheet_location_printed()).await;
    bad.exchange(gt06::heartbeat(), gt06::reply(0x13, 0x0F))
        .await;
    let line = bad_input_logged(&gateway, "malformed frame", bad.local).await;
    assert!(
        line.contains("CRC"),
        "the log line should name the CRC: {line}"
    );
    assert!(
        line.contains(bad_imei),
        "the log line should name the device: {line}"
    );
    // Garbage instead of a frame: no way to resynchronise, the connection is closed.
    let mut garbage = Conn::open(gateway.listener_addr(GT06_AT), "GT06 garbage").await;
    garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answered = garbage.until_closed().await;
    assert!(
        answered.is_empty(),
        "GT06 garbage was answered {}",
        show(&answered)
    );
    bad_input_logged(&gateway, "malformed frame", garbage.local).await;
    // Another device still works.
    let other = "123456789012347";
    let mut dev = Conn::open(gateway.listener_addr(GT06_AT), "second GT06 device").await;
    dev.exchange(gt06::login_for(other, 1), gt06::reply(0x01, 1))
        .await;
    dev.send(gt06::location(
        [26, 2, 1, 0, 0, 0],
        8,
        52.52,
        13.405,
        60,
        90,
        true,
        2,
    ))
    .await;
    dev.exchange(gt06::heartbeat(), gt06::reply(0x13, 0x0F))
        .await;
    wants.push(json!({
        "device_id": other, "protocol": "gt06", "time": "2026-02-01T00:00:00.000Z",
        "valid": true, "lat": 52.52, "lon": 13.405, "satellites": 8, "speed_kmh": 60.0,
    }));

    // --- Wialon ---------------------------------------------------------------------------
    wants.extend(wialon_sessions(gateway.listener_addr(WIALON_AT)).await);
    // A structurally broken #D# after a good login: the documented answer is #AD#-1 and the
    // connection stays usable.
    let broken_imei = "351234567890123";
    let mut bad = Conn::open(
        gateway.listener_addr(WIALON_AT),
        "Wialon device, broken #D#",
    )
    .await;
    bad.exchange(wialon::v1("L", &format!("{broken_imei};NA")), "#AL#1\r\n")
        .await;
    bad.exchange(wialon::v1("D", "this;is;not;a;packet"), "#AD#-1\r\n")
        .await;
    bad.exchange(
        wialon::v1("SD", "010126;000000;5230.0000;N;01324.0000;E;5;6;7;8"),
        "#ASD#1\r\n",
    )
    .await;
    wants.push(json!({
        "device_id": broken_imei, "protocol": "wialon", "time": "2026-01-01T00:00:00.000Z",
        "lat": 52.5, "lon": 13.4, "satellites": 8,
    }));
    bad_input_logged(&gateway, "malformed frame", bad.local).await;
    // Binary garbage on the Wialon port.
    let mut garbage = Conn::open(gateway.listener_addr(WIALON_AT), "Wialon garbage").await;
    garbage.send(b"\x00\x0f\xff\xfeGARBAGE\r\n").await;
    // The decoder's documented behaviour: not a `#TYPE#` packet, so not a Wialon stream:
    // closed without an answer.
    let answered = garbage.until_closed().await;
    assert!(
        answered.is_empty(),
        "Wialon garbage was answered {}",
        show(&answered)
    );
    bad_input_logged(&gateway, "malformed frame", garbage.local).await;
    // Another device still works.
    let other = "351234567890124";
    let mut dev = Conn::open(gateway.listener_addr(WIALON_AT), "second Wialon device").await;
    dev.exchange(wialon::v1("L", &format!("{other};NA")), "#AL#1\r\n")
        .await;
    dev.exchange(
        wialon::v1("SD", "010126;000001;5230.0000;N;01324.0000;E;5;6;7;8"),
        "#ASD#1\r\n",
    )
    .await;
    wants.push(json!({
        "device_id": other, "protocol": "wialon", "time": "2026-01-01T00:00:01.000Z",
        "lat": 52.5, "lon": 13.4,
    }));

    // --- Queclink -------------------------------------------------------------------------
    wants.extend(
        queclink_sessions(
            gateway.listener_addr(QUECLINK_AT),
            gateway.listener_addr(QUECLINK_ACK_AT),
        )
        .await,
    );
    // A report with broken fields (speed and longitude not numbers) on the
    // ACK-mode listener: never a +SACK for its count, nothing stored.
    let broken_imei = "135790246811222";
    let mut bad = Conn::open(
        gateway.listener_addr(QUECLINK_ACK_AT),
        "Queclink broken report",
    )
    .await;
    bad.send(format!(
        "+RESP:GTFRI,1A0102,{broken_imei},,0,0,1,1,fast,92,70.0,east,31.222073,\
         20260104000000,0460,0000,18d8,6141,00,,20260104080000,0B01$"
    ))
    .await;
    // Then a heartbeat: if the connection is still open its answer is the next thing back.
    bad.send(format!(
        "+ACK:GTHBD,1A0102,{broken_imei},,20260104080001,0B02$"
    ))
    .await;
    let hb = b"+SACK:GTHBD,1A0102,0B02$";
    let (got, closed) = bad.read_n(hb.len(), REPLY).await;
    assert!(
        !String::from_utf8_lossy(&got).contains("+SACK:0B01$"),
        "the broken Queclink report was acknowledged: {}",
        show(&got)
    );
    assert!(
        got == hb && !closed,
        "after a broken report (a line skipped, per the decoder) the heartbeat must be the \
         next answer on the same connection; got {}{}",
        show(&got),
        if closed {
            ", then the connection closed"
        } else {
            ""
        }
    );
    bad_input_logged(&gateway, "malformed frame", bad.local).await;
    // Another device still works.
    let other = "135790246811223";
    let mut dev = Conn::open(
        gateway.listener_addr(QUECLINK_ACK_AT),
        "second Queclink device",
    )
    .await;
    dev.exchange(
        format!(
            "+RESP:GTFRI,1A0102,{other},,0,0,1,{},90,20260104080002,0B03$",
            fix(1, 1.0, 1, 1.0, 13.405, 52.52, "20260104000002")
        ),
        "+SACK:0B03$",
    )
    .await;
    wants.push(json!({
        "device_id": other, "protocol": "queclink", "time": "2026-01-04T00:00:02.000Z",
        "lat": 52.52, "lon": 13.405, "valid": true,
    }));

    // --- Teltonika UDP --------------------------------------------------------------------
    let udp_addr = gateway.listener_addr(UDP_AT);
    let good = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let ack = udp_exchange(&good, udp_addr, &unhex(UDP_DATAGRAM), REPLY).await;
    assert_eq!(
        ack.as_deref().map(hex::encode),
        Some("0005cafe010501".into())
    );
    wants.push(udp_want(UDP_IMEI));
    // Truncated: the sheet's datagram from another IMEI without its last 10 bytes.
    let bad_udp_imei = "352093086403656";
    let truncated = udp_datagram_from(bad_udp_imei, 0xBEEF);
    let bad_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let bad_peer = bad_socket.local_addr().expect("local addr");
    let answer = udp_exchange(
        &bad_socket,
        udp_addr,
        &truncated[..truncated.len() - 10],
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(answer, None, "a truncated datagram was answered");
    bad_input_logged(&gateway, "malformed datagram", bad_peer).await;
    // Another device still works.
    let other_udp = "352093086403657";
    let other = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let ack = udp_exchange(
        &other,
        udp_addr,
        &udp_datagram_from(other_udp, 0x0102),
        REPLY,
    )
    .await;
    assert_eq!(
        ack.as_deref().map(hex::encode),
        Some("00050102010501".to_string())
    );
    wants.push(udp_want(other_udp));

    // --- Everything accepted arrived; nothing of the bad input did -------------------------
    let devices: Vec<String> = wants
        .iter()
        .filter_map(|w| w["device_id"].as_str().map(str::to_string))
        .chain(
            [
                "123456789012346",
                "351234567890123",
                broken_imei,
                bad_udp_imei,
            ]
            .map(String::from),
        )
        .collect();
    let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
    expect_records(&collector, ARRIVE, &devices, &wants, is_heartbeat).await;
    let all = collector.every_record();
    for r in &all {
        assert!(
            r["time"] != "2011-08-29T17:46:16.000Z" || r["device_id"] != "123456789012346",
            "the GT06 frame with a bad CRC was stored: {r}"
        );
        assert!(
            r["device_id"] != broken_imei || is_heartbeat(r),
            "the broken Queclink report was stored: {r}"
        );
        assert!(
            r["device_id"] != bad_udp_imei,
            "the truncated datagram was stored: {r}"
        );
    }
    assert_no_problems("batches", &contract_errors(&collector));
}
