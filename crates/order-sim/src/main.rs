//! order-sim: simulates an online shop's order events and produces them to Apache Kafka.
//!
//!     order-sim --brokers 127.0.0.1:9092 --count 5000 --seed 7
//!
//! Prints one JSON summary line on stdout (delivered, failed, malformed, seconds, events/s);
//! logs and progress go to stderr. Exits nonzero if any event was not delivered.

mod catalog;
mod contract {
    //! The event contract's constants (build.rs, from contracts/order_event.schema.json).
    // The field lists are what the tests check the producer's output against.
    #![allow(dead_code)]
    include!(concat!(env!("OUT_DIR"), "/contract.rs"));
}
mod generator;
mod kafka;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Parser;
use rdkafka::producer::Producer;

use generator::{Clock, Options, OrderGenerator};
use kafka::Stream;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulates e-commerce order events (NEW, CANCELLED, RETURNED) and produces them to Kafka.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Kafka bootstrap servers [default: bootstrap.servers of SHOPSTREAM_KAFKA_CONFIG, else
    /// 127.0.0.1:9092].
    #[arg(long, env = "SHOPSTREAM_KAFKA_BOOTSTRAP")]
    brokers: Option<String>,
    /// librdkafka settings as a JSON object, e.g. security.protocol, sasl.mechanism,
    /// sasl.username, sasl.password for a SASL cluster (the kafka Connection's extras). Read from
    /// the environment only, so that credentials never show on a command line.
    #[arg(skip = std::env::var("SHOPSTREAM_KAFKA_CONFIG").ok())]
    kafka_config: Option<String>,
    /// Topic for order events.
    #[arg(long, default_value = contract::ORDERS_TOPIC)]
    topic: String,
    /// Topic for status changes (order_id, new_status, reason, timestamp), one per CANCELLED or
    /// RETURNED event of --topic.
    #[arg(long, default_value = contract::UPDATES_TOPIC)]
    updates_topic: String,
    /// Do not produce to --updates-topic.
    #[arg(long)]
    no_updates: bool,
    /// Number of order events to produce (status updates come on top).
    #[arg(long, default_value_t = 500)]
    count: u64,
    /// Events per second; 0 means as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Random seed: the same seed and options give the same events. Random if not set.
    #[arg(long)]
    seed: Option<u64>,
    /// Share of events (0..1) that are malformed: bad JSON, wrong types, a missing id or an
    /// unreadable timestamp.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    malformed_ratio: f64,
    /// Share of events (0..1) that are well-formed but out of the domain: unknown status,
    /// quantity or price not positive.
    #[arg(long, default_value_t = 0.0, value_parser = parse_ratio)]
    out_of_domain_ratio: f64,
    /// Event time of the first event: RFC 3339, a date (midnight UTC), or `now` for wall-clock
    /// timestamps. Default: today's date.
    #[arg(long)]
    start: Option<String>,
    /// Event times are spread evenly over this span after --start (e.g. 24h, 90m, 3600s).
    #[arg(long, default_value = "24h", value_parser = parse_span)]
    span: Duration,
    /// Product catalogue CSV (product_id, product_name, category, unit_price, weight) to draw
    /// from instead of the compiled-in data/products.csv.
    #[arg(long)]
    products: Option<std::path::PathBuf>,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Replication factor of the topic if it has to be created; -1 takes the cluster's
    /// default.replication.factor (1 on the local broker, 3 on the loopback cluster).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    replication_factor: i32,
    /// Give up on an event not acknowledged within this many seconds.
    #[arg(long, default_value_t = 120)]
    delivery_timeout_secs: u64,
    /// Extra librdkafka setting KEY=VALUE (e.g. security.protocol=SASL_PLAINTEXT); repeatable.
    #[arg(short = 'X', value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Generate and serialise only, without Kafka: measures the generator.
    #[arg(long)]
    dry_run: bool,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s} is not a ratio between 0 and 1")),
    }
}

fn parse_span(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad span {s}: use e.g. 24h, 90m, 30s"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("bad span unit in {s}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s} is not KEY=VALUE"))
}

fn parse_start(start: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    let Some(start) = start else {
        let today = Utc::now().date_naive();
        return Ok(Some(today.and_hms_opt(0, 0, 0).expect("midnight").and_utc()));
    };
    if start == "now" {
        return Ok(None);
    }
    if let Ok(date) = NaiveDate::parse_from_str(start, "%Y-%m-%d") {
        return Ok(Some(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc()));
    }
    let at = DateTime::parse_from_rfc3339(start)
        .with_context(|| format!("--start {start}: use RFC 3339, YYYY-MM-DD or now"))?;
    Ok(Some(at.with_timezone(&Utc)))
}

/// The generator the arguments ask for: its options and catalogue.
fn generator(args: &Args) -> Result<OrderGenerator> {
    let options = generator_options(args)?;
    Ok(match &args.products {
        Some(path) => OrderGenerator::with_products(options, catalog::products_from_file(path)?),
        None => OrderGenerator::new(options),
    })
}

fn generator_options(args: &Args) -> Result<Options> {
    if args.malformed_ratio + args.out_of_domain_ratio > 1.0 {
        bail!("--malformed-ratio plus --out-of-domain-ratio must not exceed 1");
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    log::info!("seed {seed} (pass --seed {seed} to reproduce these events)");
    let clock = match parse_start(args.start.as_deref())? {
        Some(start) => Clock::Spread {
            start,
            span_ms: args.span.as_millis() as i64,
        },
        None => Clock::WallClock,
    };
    Ok(Options {
        seed,
        count: args.count,
        malformed_ratio: args.malformed_ratio,
        out_of_domain_ratio: args.out_of_domain_ratio,
        updates: !args.no_updates,
        clock,
    })
}

/// Sleeps as needed so that event `index` is not sent before `index / rate` seconds.
struct Pacer {
    started: Instant,
    rate: f64,
}

impl Pacer {
    fn wait_for(&self, index: u64) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        let due = Duration::from_secs_f64(index as f64 / self.rate);
        due.checked_sub(self.started.elapsed()).filter(|d| !d.is_zero())
    }
}

/// A progress line every two seconds on long runs.
struct Progress {
    total: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Self {
            total,
            started: now,
            last: now,
        }
    }

    fn tick(&mut self, done: u64) {
        // Reading the clock per event cost 3% of generation: look every 4096 events.
        if done % 4096 == 0 && self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64();
            let pct = 100.0 * done as f64 / self.total.max(1) as f64;
            log::info!(
                "progress: {done}/{} events ({pct:.0}%), {rate:.0} events/s",
                self.total
            );
        }
    }
}

#[derive(Default)]
struct Summary {
    generated: u64,
    malformed: u64,
    out_of_domain: u64,
    delivered: u64,
    updates: u64,
    updates_delivered: u64,
    failed: u64,
    bytes: u64,
}

impl Summary {
    /// Counts one generated record (and its update, if it has one).
    fn count(&mut self, record: &generator::Record) {
        self.generated += 1;
        self.malformed += u64::from(record.malformed);
        self.out_of_domain += u64::from(record.out_of_domain);
        self.bytes += record.payload.len() as u64;
        if let Some(update) = &record.update {
            self.updates += 1;
            self.bytes += update.len() as u64;
        }
    }
}

fn print_summary(args: &Args, summary: &Summary, started: Instant, dry_run: bool) {
    let seconds = started.elapsed().as_secs_f64();
    let json = serde_json::json!({
        "topic": args.topic,
        "updates_topic": (!args.no_updates).then_some(&args.updates_topic),
        "updates": summary.updates,
        "updates_delivered": summary.updates_delivered,
        "dry_run": dry_run,
        "generated": summary.generated,
        "malformed": summary.malformed,
        "out_of_domain": summary.out_of_domain,
        "delivered": summary.delivered,
        "failed": summary.failed,
        "bytes": summary.bytes,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "events_per_second": (summary.generated as f64 / seconds.max(1e-9)).round(),
    });
    println!("{json}");
}

fn dry_run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut progress = Progress::new(args.count);
    for record in generator(args)? {
        summary.count(&record);
        progress.tick(summary.generated);
    }
    print_summary(args, &summary, started, true);
    Ok(())
}

/// The brokers: --brokers (or SHOPSTREAM_KAFKA_BOOTSTRAP), else the settings' bootstrap.servers,
/// else the local broker.
fn brokers(args: &Args, settings: &BTreeMap<String, String>) -> String {
    args.brokers
        .clone()
        .or_else(|| settings.get("bootstrap.servers").cloned())
        .unwrap_or_else(|| contract::DEFAULT_BOOTSTRAP.to_string())
}

fn produce(args: &Args) -> Result<()> {
    let settings = match &args.kafka_config {
        Some(json) if !json.trim().is_empty() => kafka::parse_settings(json)?,
        _ => BTreeMap::new(),
    };
    let brokers = brokers(args, &settings);
    let config = kafka::client_config(&brokers, &settings, &args.config);
    let admin_timeout = Duration::from_secs(10);
    let probe = kafka::Probe::connect(&config, &brokers, admin_timeout)?;
    let mut topics = vec![args.topic.as_str()];
    if !args.no_updates {
        topics.push(args.updates_topic.as_str());
    }
    for topic in topics {
        probe.ensure_topic(topic, args.partitions, args.replication_factor)?;
    }
    drop(probe);
    let producer = kafka::producer(&config, Duration::from_secs(args.delivery_timeout_secs))?;

    let started = Instant::now();
    let pacer = Pacer {
        started,
        rate: args.rate,
    };
    let mut progress = Progress::new(args.count);
    let mut summary = Summary::default();
    for record in generator(args)? {
        if let Some(pause) = pacer.wait_for(summary.generated) {
            producer.poll(pause);
        }
        let key = record.key.as_deref();
        kafka::send(&producer, &args.topic, Stream::Orders, key, &record.payload)?;
        if let Some(update) = &record.update {
            kafka::send(&producer, &args.updates_topic, Stream::Updates, key, update)?;
        }
        summary.count(&record);
        producer.poll(Duration::ZERO);
        progress.tick(summary.generated);
    }
    let flushed = kafka::flush(&producer, Duration::from_secs(args.delivery_timeout_secs + 10));
    let counter = producer.context();
    summary.delivered = counter.delivered.load(Ordering::Relaxed);
    summary.updates_delivered = counter.updates_delivered.load(Ordering::Relaxed);
    summary.failed = counter.failed.load(Ordering::Relaxed);
    print_summary(args, &summary, started, false);
    flushed?;
    let sent = summary.generated + summary.updates;
    let acknowledged = summary.delivered + summary.updates_delivered;
    if summary.failed > 0 || acknowledged != sent {
        bail!(
            "{} of {} records were not delivered to {} at {}: first error: {}; {}",
            sent - acknowledged,
            sent,
            args.topic,
            brokers,
            counter.first_error().unwrap_or_else(|| "unknown".into()),
            kafka::diagnose(&brokers)
        );
    }
    log::info!(
        "delivered {} events to {} and {} updates to {} in {:.2?}",
        summary.delivered,
        args.topic,
        summary.updates_delivered,
        args.updates_topic,
        started.elapsed()
    );
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let outcome = if args.dry_run {
        dry_run(&args)
    } else {
        produce(&args)
    };
    if let Err(error) = outcome {
        eprintln!("order-sim: error: {error:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_with_units() {
        assert_eq!(parse_span("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_span("90m").unwrap(), Duration::from_secs(5_400));
        assert!(parse_span("3w").is_err());
    }

    #[test]
    fn start_accepts_date_rfc3339_and_now() {
        let date = parse_start(Some("2026-11-25")).unwrap().unwrap();
        assert_eq!(date.to_rfc3339(), "2026-11-25T00:00:00+00:00");
        let at = parse_start(Some("2026-11-25T10:00:00+02:00")).unwrap().unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-25T08:00:00+00:00");
        assert!(parse_start(Some("now")).unwrap().is_none());
        assert!(parse_start(Some("tomorrow")).is_err());
    }

    #[test]
    fn brokers_come_from_the_flag_then_the_settings_then_the_default() {
        let settings = kafka::parse_settings(r#"{"bootstrap.servers": "a:1,b:2", "linger.ms": 5}"#).unwrap();
        assert_eq!(settings["linger.ms"], "5");
        let flag = Args::parse_from(["order-sim", "--brokers", "c:3"]);
        assert_eq!(brokers(&flag, &settings), "c:3");
        let no_flag = Args {
            brokers: None,
            ..flag
        };
        assert_eq!(brokers(&no_flag, &settings), "a:1,b:2");
        assert_eq!(brokers(&no_flag, &BTreeMap::new()), "127.0.0.1:9092");
        assert!(kafka::parse_settings("[1]").is_err());
        assert!(kafka::parse_settings(r#"{"x": {"nested": 1}}"#).is_err());
    }

    #[test]
    fn ratio_must_be_between_zero_and_one() {
        assert!(parse_ratio("0.01").is_ok());
        assert!(parse_ratio("1.5").is_err());
    }
}
