//! MQTT clients of the tests, all on [`subscribe`] (connect, subscribe, wait for the SUBACK,
//! then hand every message to a callback until dropped): [`Collector`], a subscriber to every
//! gateway's record batches that checks each batch against the cloud contract and keeps its
//! records, and [`Subscriber`], which keeps the raw messages of any topic filter.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode};
use serde_json::Value;

use super::ports::wait_until;

pub const RECORDS_TOPIC_FILTER: &str = "fleetedge/+/records";
pub const SCHEMA: &str = "fleetedge.batch.v1";

/// Whether a [`subscribe`]d client's session outlives its connection at the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Clean session off: the subscription and the QoS 1 messages queued for it survive a
    /// dropped connection and a broker restart (with the broker's persistence on, as
    /// [`Mosquitto`](super::Mosquitto) has it).
    Persistent,
    /// Clean session on: only what is published while connected arrives.
    Clean,
}

/// A live subscription from [`subscribe`]: its client and the task polling it, which stops
/// when this is dropped.
pub struct Subscription {
    _client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `127.0.0.1:broker_port` as `client_id`, subscribes to `filter` at QoS 1 and
/// returns once the broker granted it (SUBACK); panics naming the client (and the last
/// connection error) when that takes more than 10 s, or when the subscription is refused. From then on a task hands every message to
/// `on_message` and reconnects after a dropped connection, subscribing again when the broker
/// has no session for the client (always so with [`Session::Clean`]; retained messages then
/// arrive again, with their retain flag).
pub async fn subscribe(
    broker_port: u16,
    client_id: &str,
    filter: &str,
    session: Session,
    mut on_message: impl FnMut(Publish) + Send + 'static,
) -> Subscription {
    let who = format!("MQTT client {client_id} on port {broker_port}");
    let mut options = MqttOptions::new(client_id, "127.0.0.1", broker_port);
    options
        .set_keep_alive(Duration::from_secs(5))
        .set_clean_session(session == Session::Clean)
        .set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("queue SUBSCRIBE");
    // Nothing is published to us before the SUBACK (retained messages follow it). A connection
    // error is tried again (rumqttc reconnects on the next poll) until the deadline: on a
    // loaded machine a broker that just started listening has reset a first connection.
    let mut last_error = None;
    let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(ack))) => return ack,
                Ok(_) => {}
                Err(e) => {
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await;
    match subscribed {
        Ok(ack) if ack.return_codes.contains(&SubscribeReasonCode::Failure) => {
            panic!("{who}: the broker refused the subscription to {filter}")
        }
        Ok(_) => {}
        Err(_) => panic!("{who}: no SUBACK within 10 s (last connection error: {last_error:?})"),
    }
    let filter = filter.to_string();
    let resubscriber = client.clone();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => on_message(p),
                Ok(Event::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                    // The broker forgot us: subscribe again (never awaited here).
                    let _ = resubscriber.try_subscribe(filter.as_str(), QoS::AtLeastOnce);
                }
                Ok(_) => {}
                // Broker gone: rumqttc reconnects on the next poll.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    Subscription {
        _client: client,
        task,
    }
}

/// One record as it arrived at the broker.
#[derive(Debug, Clone)]
pub struct Got {
    pub gateway_id: String,
    pub seq: u64,
    pub device_id: String,
    pub time: String,
    /// The whole record JSON, `seq` included.
    pub record: Value,
}

#[derive(Debug, Default)]
pub struct Collected {
    pub batches: u64,
    /// The largest payload seen, in bytes.
    pub max_payload_bytes: usize,
    pub records: Vec<Got>,
    /// Distinct (device_id, time) seen.
    pub unique: HashSet<(String, String)>,
    /// Every way a batch broke the cloud contract.
    pub errors: Vec<String>,
    /// Every record JSON of every batch, in arrival order, including records that `records`
    /// leaves out (e.g. a null `time`, which the contract allows for records without a
    /// device time).
    pub every_record: Vec<Value>,
}

/// An MQTT subscriber to every gateway's record batches.
///
/// It uses a persistent session (clean session off), so its subscription and the messages
/// queued for it survive a restart of the broker (see [`Mosquitto`](super::Mosquitto)).
pub struct Collector {
    state: Arc<Mutex<Collected>>,
    _subscription: Subscription,
}

impl Collector {
    /// Connects, subscribes with QoS 1 and returns once the SUBACK arrived.
    pub async fn start(broker_port: u16, client_id: &str) -> Collector {
        let state = Arc::new(Mutex::new(Collected::default()));
        let collected = state.clone();
        let subscription = subscribe(
            broker_port,
            client_id,
            RECORDS_TOPIC_FILTER,
            Session::Persistent,
            move |p| take_batch(&mut collected.lock().unwrap(), &p.topic, &p.payload),
        )
        .await;
        Collector {
            state,
            _subscription: subscription,
        }
    }

    /// Waits until `n` distinct (device_id, time) records arrived; returns how many did.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        wait_until(timeout, || self.unique_count() >= n).await;
        self.unique_count()
    }

    /// Waits until every (device_id, time) in `keys` arrived; returns how many are missing.
    pub async fn wait_for_all(&self, keys: &HashSet<(String, String)>, timeout: Duration) -> usize {
        let missing = || {
            let s = self.state.lock().unwrap();
            keys.iter().filter(|k| !s.unique.contains(*k)).count()
        };
        wait_until(timeout, || missing() == 0).await;
        missing()
    }

    pub fn unique_count(&self) -> usize {
        self.state.lock().unwrap().unique.len()
    }

    /// The largest payload seen so far, in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        self.state.lock().unwrap().max_payload_bytes
    }

    /// Every record JSON so far (see [`Collected::every_record`]).
    pub fn every_record(&self) -> Vec<Value> {
        self.state.lock().unwrap().every_record.clone()
    }

    /// Waits up to `timeout` until `done` holds for every record so far; returns them.
    pub async fn wait_for_records(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_until(timeout, || done(&self.state.lock().unwrap().every_record)).await;
        self.every_record()
    }

    pub fn snapshot(&self) -> (Vec<Got>, Vec<String>, u64) {
        let s = self.state.lock().unwrap();
        (s.records.clone(), s.errors.clone(), s.batches)
    }
}

/// Decodes one payload, checks the batch against the cloud contract and keeps its records.
fn take_batch(s: &mut Collected, topic: &str, payload: &[u8]) {
    s.batches += 1;
    s.max_payload_bytes = s.max_payload_bytes.max(payload.len());
    let batch = match fleetedge::uplink::payload::decode_payload(payload) {
        Ok(b) => b,
        Err(e) => {
            s.errors.push(format!(
                "{topic}: undecodable payload ({} bytes): {e}",
                payload.len()
            ));
            return;
        }
    };
    let mut bad = |why: String| s.errors.push(format!("{topic}: {why}"));
    if batch["schema"] != SCHEMA {
        bad(format!("schema is {}", batch["schema"]));
    }
    let gateway_id = batch["gateway_id"].as_str().unwrap_or_default().to_string();
    let topic_gateway = topic.split('/').nth(1).unwrap_or_default();
    if gateway_id.is_empty() || gateway_id != topic_gateway {
        bad(format!(
            "gateway_id {:?} on topic {topic}",
            batch["gateway_id"]
        ));
    }
    let Some(records) = batch["records"].as_array() else {
        bad("no records array".into());
        return;
    };
    if records.is_empty() {
        bad("an empty batch".into());
    }
    if batch["count"].as_u64() != Some(records.len() as u64) {
        bad(format!(
            "count {} but {} records",
            batch["count"],
            records.len()
        ));
    }
    let seqs: Vec<Option<u64>> = records.iter().map(|r| r["seq"].as_u64()).collect();
    if seqs.iter().any(Option::is_none) {
        bad("a record without a numeric seq".into());
    }
    let seqs: Vec<u64> = seqs.into_iter().flatten().collect();
    if seqs.windows(2).any(|w| w[0] >= w[1]) {
        bad(format!("seqs not strictly increasing: {seqs:?}"));
    }
    if batch["first_seq"].as_u64() != seqs.first().copied() {
        bad(format!(
            "first_seq {} but the first record has seq {:?}",
            batch["first_seq"],
            seqs.first()
        ));
    }
    if batch["last_seq"].as_u64() != seqs.last().copied() {
        bad(format!(
            "last_seq {} but the last record has seq {:?}",
            batch["last_seq"],
            seqs.last()
        ));
    }
    for r in records {
        s.every_record.push(r.clone());
        let (Some(seq), Some(device_id), Some(time)) = (
            r["seq"].as_u64(),
            r["device_id"].as_str(),
            r["time"].as_str(),
        ) else {
            s.errors.push(format!(
                "{topic}: a record without seq, device_id or time: {r}"
            ));
            continue;
        };
        s.unique.insert((device_id.to_string(), time.to_string()));
        s.records.push(Got {
            gateway_id: gateway_id.clone(),
            seq,
            device_id: device_id.to_string(),
            time: time.to_string(),
            record: r.clone(),
        });
    }
}

/// One message as a [`Subscriber`] received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Set on a retained message delivered because of the subscription.
    pub retain: bool,
    pub at: Instant,
}

impl Received {
    /// The payload as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// An MQTT subscriber (clean session, QoS 1) to one topic filter that keeps every message
/// it receives, with its retain flag and arrival time.
pub struct Subscriber {
    messages: Arc<Mutex<Vec<Received>>>,
    _subscription: Subscription,
}

impl Subscriber {
    /// Connects to `127.0.0.1:broker_port`, subscribes and returns once the SUBACK arrived.
    pub async fn start(broker_port: u16, client_id: &str, filter: &str) -> Subscriber {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let received = messages.clone();
        let subscription = subscribe(broker_port, client_id, filter, Session::Clean, move |p| {
            received.lock().unwrap().push(Received {
                topic: p.topic.clone(),
                payload: p.payload.to_vec(),
                retain: p.retain,
                at: Instant::now(),
            });
        })
        .await;
        Subscriber {
            messages,
            _subscription: subscription,
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a message that satisfies `pred`; returns the first one.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let find = || self.messages().into_iter().find(|m| pred(m));
        wait_until(timeout, || find().is_some()).await;
        find()
    }
}
