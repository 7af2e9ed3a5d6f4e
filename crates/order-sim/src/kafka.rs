//! Kafka side of the simulator: reachability check, topic creation, and an idempotent producer
//! whose every delivery report is counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

/// Which of the two topics a record went to; rides to its delivery report as the opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Orders = 0,
    Updates = 1,
}

/// Counts delivery reports; librdkafka calls it from `poll`/`flush` on this thread.
#[derive(Default)]
pub struct DeliveryCounter {
    pub delivered: AtomicU64,
    pub updates_delivered: AtomicU64,
    pub failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl DeliveryCounter {
    fn record_error(&self, error: String) {
        let mut first = self.first_error.lock().expect("lock");
        first.get_or_insert(error);
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().expect("lock").clone()
    }
}

impl ClientContext for DeliveryCounter {
    fn error(&self, error: KafkaError, reason: &str) {
        log::warn!("kafka client error: {error}: {reason}");
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
            self.record_error(format!("fatal producer error: {reason}"));
        }
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, stream: usize) {
        match result {
            Ok(_) if stream == Stream::Updates as usize => {
                self.updates_delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.record_error(error.to_string());
            }
        }
    }
}

/// Client settings shared by the admin client and the producer: brokers plus any `-X` extras
/// (security settings for a real cluster come in this way, never from code).
pub fn client_config(brokers: &str, extra: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in extra {
        config.set(key, value);
    }
    config
}

fn how_to_fix(brokers: &str) -> String {
    format!(
        "no Kafka broker answered at {brokers}. Start the local one with `make broker-up`, \
         or pass --brokers HOST:PORT of a running cluster"
    )
}

/// After a delivery failure: which of the bootstrap brokers do not even accept a connection, so
/// that "message timed out" comes with its likely cause (brokers down, too few in-sync replicas).
pub fn diagnose(brokers: &str) -> String {
    use std::net::{TcpStream, ToSocketAddrs};
    let down: Vec<&str> = brokers
        .split(',')
        .map(str::trim)
        .filter(|broker| {
            let reachable = broker
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
            !reachable
        })
        .collect();
    let total = brokers.split(',').count();
    match down.len() {
        0 => "every bootstrap broker accepts connections: check the topic's in-sync replicas \
              (min.insync.replicas) and the broker logs"
            .to_string(),
        n if n == total => format!(
            "no broker reachable ({}): is the cluster running?",
            down.join(", ")
        ),
        n => format!(
            "{n} of {total} brokers not reachable ({}): with replication 3 and min.insync.replicas 2, \
             writes stop while fewer than 2 replicas are in sync (not enough in-sync replicas); \
             restart the stopped brokers and nothing acknowledged is lost",
            down.join(", ")
        ),
    }
}

/// Fails fast, with advice, when no broker answers: librdkafka itself would retry forever.
pub fn ensure_reachable(config: &ClientConfig, brokers: &str, timeout: Duration) -> Result<()> {
    let probe: BaseProducer = config.create().context("creating Kafka client")?;
    probe
        .client()
        .fetch_metadata(None, timeout)
        .map(|_| ())
        .map_err(|e| anyhow!("{} ({e})", how_to_fix(brokers)))
}

/// Creates the topic unless it already exists.
pub fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<()> {
    // An existing topic needs no admin request: that keeps working without a controller quorum
    // and for a principal that may write but not create topics.
    let probe: BaseProducer = config.create().context("creating Kafka client")?;
    if let Ok(metadata) = probe.client().fetch_metadata(Some(topic), timeout) {
        if metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        {
            log::debug!("topic {topic} exists");
            return Ok(());
        }
    }
    let admin: AdminClient<DefaultClientContext> = config.create().context("creating admin client")?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &options))
        .with_context(|| format!("creating topic {topic}"))?;
    for result in results {
        match result {
            Ok(name) => {
                log::info!("created topic {name} ({partitions} partitions, replication {replication})")
            }
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => log::debug!("topic {name} exists"),
            Err((name, code)) => bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

pub fn producer(config: &ClientConfig, delivery_timeout: Duration) -> Result<BaseProducer<DeliveryCounter>> {
    let mut config = config.clone();
    // Idempotence gives exactly-once, in-order writes per partition across retries; it implies
    // acks=all. lz4 and a short linger batch well without adding visible latency.
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("message.timeout.ms", delivery_timeout.as_millis().to_string());
    config
        .create_with_context(DeliveryCounter::default())
        .context("creating Kafka producer")
}

/// Enqueues one record, waiting for queue space (and serving delivery reports) when full.
pub fn send(
    producer: &BaseProducer<DeliveryCounter>,
    topic: &str,
    stream: Stream,
    key: Option<&str>,
    payload: &str,
) -> Result<()> {
    let mut record = BaseRecord::with_opaque_to(topic, stream as usize).payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                producer.poll(Duration::from_millis(20));
            }
            Err((error, _)) => bail!("cannot enqueue record for {topic}: {error}"),
        }
        if let Some(fatal) = producer
            .context()
            .first_error()
            .filter(|e| e.starts_with("fatal"))
        {
            bail!("{fatal}");
        }
    }
}

/// Waits until every enqueued record has a delivery report, or the timeout passes.
pub fn flush(producer: &BaseProducer<DeliveryCounter>, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    producer
        .flush(timeout)
        .map_err(|e| anyhow!("flush did not finish within {:?}: {e}", started.elapsed()))
}
