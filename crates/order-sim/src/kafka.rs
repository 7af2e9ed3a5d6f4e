//! Kafka side of the simulator: reachability check, topic creation, and an idempotent producer
//! whose every delivery report is counted.

use std::collections::BTreeMap;
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

/// librdkafka settings from a JSON object (what `SHOPSTREAM_KAFKA_CONFIG` and the Airflow
/// Connection's extras hold): strings, numbers and booleans.
pub fn parse_settings(json: &str) -> Result<BTreeMap<String, String>> {
    let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(json)
        .context("SHOPSTREAM_KAFKA_CONFIG is not a JSON object of librdkafka settings")?;
    object
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => Ok((key, text)),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Ok((key, value.to_string())),
            _ => bail!("SHOPSTREAM_KAFKA_CONFIG: {key} must be a string, number or boolean"),
        })
        .collect()
}

/// Client settings shared by the probes and the producer: the settings from the environment
/// (security for a real cluster comes this way, never from code or the command line), the
/// brokers, then any `-X` extras.
pub fn client_config(
    brokers: &str,
    settings: &BTreeMap<String, String>,
    extra: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in settings {
        config.set(key, value);
    }
    config.set("bootstrap.servers", brokers);
    for (key, value) in extra {
        config.set(key, value);
    }
    config
}

/// Remembers the first error librdkafka reports while probing, so that a failed probe can say
/// why (a refused password, a plaintext client on a SASL listener) instead of only "timed out".
#[derive(Default)]
struct ProbeContext {
    first_error: Mutex<Option<(Option<RDKafkaErrorCode>, String)>>,
}

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log::debug!("kafka client error: {error}: {reason}");
        let mut first = self.first_error.lock().expect("lock");
        first.get_or_insert((error.rdkafka_error_code(), reason.to_string()));
    }
}

/// The probe sends nothing: it only fetches metadata.
impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

fn how_to_fix(brokers: &str, cause: Option<(Option<RDKafkaErrorCode>, String)>) -> String {
    match cause {
        Some((Some(RDKafkaErrorCode::Authentication), reason)) => format!(
            "Kafka at {brokers} refused the credentials ({reason}). Check sasl.username and \
             sasl.password in SHOPSTREAM_KAFKA_CONFIG (the kafka_default Connection's extras)"
        ),
        cause => format!(
            "no Kafka broker answered at {brokers}{}. Start the local one with `make broker-up`, \
             or pass --brokers HOST:PORT of a running cluster; a cluster that requires SASL needs \
             security.protocol, sasl.mechanism, sasl.username and sasl.password in \
             SHOPSTREAM_KAFKA_CONFIG",
            cause
                .map(|(_, reason)| format!(" ({reason})"))
                .unwrap_or_default()
        ),
    }
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

/// One metadata client for the checks before producing: whether the cluster answers, then
/// whether each topic exists (one connection for all of them).
pub struct Probe<'a> {
    client: BaseProducer<ProbeContext>,
    config: &'a ClientConfig,
    brokers: &'a str,
    timeout: Duration,
}

impl<'a> Probe<'a> {
    /// Fails fast, with advice, when no broker answers or the credentials are refused:
    /// librdkafka itself would retry forever.
    pub fn connect(config: &'a ClientConfig, brokers: &'a str, timeout: Duration) -> Result<Self> {
        let client: BaseProducer<ProbeContext> = config
            .create_with_context(ProbeContext::default())
            .context("creating Kafka client")?;
        if let Err(error) = client.client().fetch_metadata(None, timeout) {
            // librdkafka queues its error events: serve them so that the context sees them.
            client.poll(Duration::from_millis(200));
            let cause = client.context().first_error.lock().expect("lock").take();
            let cause = cause.or(Some((None, error.to_string())));
            bail!(how_to_fix(brokers, cause));
        }
        Ok(Self {
            client,
            config,
            brokers,
            timeout,
        })
    }

    fn topic_exists(&self, topic: &str) -> bool {
        self.client
            .client()
            .fetch_metadata(Some(topic), self.timeout)
            .is_ok_and(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            })
    }

    /// Creates the topic unless it already exists.
    pub fn ensure_topic(&self, topic: &str, partitions: i32, replication: i32) -> Result<()> {
        // An existing topic needs no admin request: that keeps working without a controller
        // quorum and for a principal that may write but not create topics.
        if self.topic_exists(topic) {
            log::debug!("topic {topic} exists");
            return Ok(());
        }
        create_topic(
            self.config,
            self.brokers,
            topic,
            partitions,
            replication,
            self.timeout,
        )
    }
}

fn is_authorization_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

fn create_topic(
    config: &ClientConfig,
    brokers: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.create().context("creating admin client")?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &options))
        .with_context(|| format!("creating topic {topic}; {}", diagnose(brokers)))?;
    for result in results {
        match result {
            Ok(name) => {
                log::info!("created topic {name} ({partitions} partitions, replication {replication})")
            }
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => log::debug!("topic {name} exists"),
            Err((name, code)) if is_authorization_error(code) => bail!(
                "not authorized to write topic {name} ({code}): it does not exist for this \
                 principal, which may not create it either; ask for WRITE and DESCRIBE ACLs on \
                 an existing {name}, or use a topic it may write"
            ),
            Err((name, code)) => bail!("cannot create topic {name}: {code}; {}", diagnose(brokers)),
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
