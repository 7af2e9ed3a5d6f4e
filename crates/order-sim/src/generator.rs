//! Deterministic generation of order events: the same seed and options give the same events.
//!
//! A share of events are status changes (CANCELLED, RETURNED) of an order that was produced
//! earlier as NEW, carrying that order's product, customer, quantity and price. Open orders wait
//! in a bounded pool, so memory stays flat for any event count.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::{self, Product, Weighted};
use crate::contract;

/// Event statuses, as the contract's `order_status` enum spells them (NEW, CANCELLED, RETURNED).
pub const NEW: &str = contract::ORDER_STATUSES[0];
pub const CANCELLED: &str = contract::ORDER_STATUSES[1];
pub const RETURNED: &str = contract::ORDER_STATUSES[2];

/// Share of events that change the status of an earlier order (when one is open).
const UPDATE_SHARE: f64 = 0.15;
/// Of those, the share that are cancellations; the rest are returns.
const CANCEL_SHARE: f64 = 0.65;
/// Open orders remembered for later status changes; the oldest random ones fall out.
const OPEN_ORDER_POOL: usize = 50_000;
const CUSTOMERS: u32 = 20_000;

/// One order event of the contract (contracts/order_event.schema.json; `contract::ORDER_FIELDS`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderEvent {
    pub order_id: String,
    pub customer_id: String,
    pub product_id: &'static str,
    pub product_name: &'static str,
    pub category: &'static str,
    pub quantity: u32,
    pub unit_price: f64,
    pub order_status: &'static str,
    pub region: &'static str,
    pub timestamp: String,
    /// The product's pre-rendered JSON (see `catalog::Product`).
    #[serde(skip)]
    pub product_json: (&'static str, &'static str),
}

impl OrderEvent {
    /// The same JSON as `serde_json::to_string(self)`, written straight into one buffer: the ids,
    /// codes and timestamp are generated ASCII that needs no escaping, the rest is pre-rendered.
    pub fn to_json(&self) -> String {
        let (product_fields, price) = self.product_json;
        // The fixed keys, ids and timestamp take 209 bytes: one allocation, never a regrowth.
        let mut json = String::with_capacity(224 + product_fields.len() + price.len() + self.region.len());
        for part in [
            r#"{"order_id":""#,
            &self.order_id,
            r#"","customer_id":""#,
            &self.customer_id,
            "\",",
            product_fields,
            r#","quantity":"#,
            small_number(self.quantity),
            r#","unit_price":"#,
            price,
            r#","order_status":""#,
            self.order_status,
            r#"","region":""#,
            self.region,
            r#"","timestamp":""#,
            &self.timestamp,
            "\"}",
        ] {
            json.push_str(part);
        }
        json
    }
}

/// Valid quantities are 1..=10 (out-of-domain ones go through serde_json).
fn small_number(n: u32) -> &'static str {
    const NUMBERS: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    NUMBERS.get(n as usize).copied().expect("quantity within 0..=10")
}

// Ids and timestamps are written by hand: `format!` and chrono's general formatter were the
// largest costs of generation (perf), and these shapes are fixed.

/// "ORD-" and 16 upper-case hex digits, as `format!("ORD-{n:016X}")`.
fn order_id(n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut id = *b"ORD-0000000000000000";
    for (i, digit) in id[4..].iter_mut().enumerate() {
        *digit = HEX[((n >> (60 - 4 * i)) & 0xF) as usize];
    }
    String::from_utf8(id.to_vec()).expect("ASCII")
}

/// "CUST-" and 6 decimal digits, as `format!("CUST-{n:06}")` for n < 1,000,000.
fn customer_id(n: u32) -> String {
    let mut id = *b"CUST-000000";
    write_digits(&mut id[5..], n);
    String::from_utf8(id.to_vec()).expect("ASCII")
}

/// Writes `n` zero-padded into all of `out`.
fn write_digits(out: &mut [u8], mut n: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// RFC 3339 in UTC with milliseconds, "2026-11-25T08:00:00.000Z": what chrono's
/// `to_rfc3339_opts(SecondsFormat::Millis, true)` prints for years 0..=9999.
fn rfc3339_millis(unix_ms: i64) -> String {
    let (days, ms_of_day) = (
        unix_ms.div_euclid(86_400_000),
        unix_ms.rem_euclid(86_400_000) as u32,
    );
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    write_digits(&mut text[0..4], year as u32);
    write_digits(&mut text[5..7], month);
    write_digits(&mut text[8..10], day);
    write_digits(&mut text[11..13], ms_of_day / 3_600_000);
    write_digits(&mut text[14..16], ms_of_day / 60_000 % 60);
    write_digits(&mut text[17..19], ms_of_day / 1000 % 60);
    write_digits(&mut text[20..23], ms_of_day % 1000);
    String::from_utf8(text.to_vec()).expect("ASCII")
}

/// (year, month, day) of a count of days since 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A status change for the `order_updates` topic, mirroring a CANCELLED/RETURNED order event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderUpdate {
    pub order_id: String,
    pub new_status: &'static str,
    pub reason: &'static str,
    pub timestamp: String,
}

/// Why orders change status, as the `reason` field of an update spells it.
const CANCEL_REASONS: [&str; 4] = [
    "customer_request",
    "payment_failed",
    "out_of_stock",
    "address_invalid",
];
const RETURN_REASONS: [&str; 4] = ["damaged", "wrong_item", "not_as_described", "changed_mind"];

/// A record ready for Kafka: key (the order id where there is one) and JSON payload, plus the
/// `order_updates` payload when the event is a status change.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Option<String>,
    pub payload: String,
    /// Broken format: bad JSON, wrong types, a missing id or an unreadable timestamp.
    pub malformed: bool,
    /// Well-formed but outside the domain: unknown status, quantity or price not positive.
    pub out_of_domain: bool,
    pub update: Option<String>,
}

/// Where event time comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Spread evenly over `[start, start + span)` by event index: reproducible.
    Spread { start: DateTime<Utc>, span_ms: i64 },
    /// The wall clock at generation: for live runs and latency measurements.
    WallClock,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub count: u64,
    pub malformed_ratio: f64,
    pub out_of_domain_ratio: f64,
    /// Render the `order_updates` record of each status change (off: `Record::update` is None).
    pub updates: bool,
    pub clock: Clock,
}

pub struct OrderGenerator {
    rng: fastrand::Rng,
    options: Options,
    products: Weighted<Product>,
    regions: Weighted<&'static str>,
    open_orders: Vec<OrderEvent>,
    produced: u64,
}

impl OrderGenerator {
    pub fn new(options: Options) -> Self {
        Self::with_products(options, catalog::products())
    }

    /// A generator drawing from `products` instead of the compiled-in catalogue.
    pub fn with_products(options: Options, products: Weighted<Product>) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(options.seed),
            options,
            products,
            regions: catalog::regions(),
            open_orders: Vec::new(),
            produced: 0,
        }
    }

    fn timestamp(&self, index: u64) -> String {
        let unix_ms = match self.options.clock {
            Clock::Spread { start, span_ms } => {
                let offset = (span_ms as i128 * index as i128 / self.options.count.max(1) as i128) as i64;
                start.timestamp_millis() + offset
            }
            Clock::WallClock => Utc::now().timestamp_millis(),
        };
        rfc3339_millis(unix_ms)
    }

    fn quantity(&mut self) -> u32 {
        // Most baskets hold one or two of an item; a few are bulk buys.
        match self.rng.u32(0..100) {
            0..=54 => 1,
            55..=79 => 2,
            80..=89 => 3,
            90..=94 => 4,
            95..=97 => 5,
            _ => self.rng.u32(6..=10),
        }
    }

    fn new_order(&mut self, timestamp: String) -> OrderEvent {
        let product = self.products.pick(&mut self.rng).clone();
        let region = *self.regions.pick(&mut self.rng);
        OrderEvent {
            order_id: order_id(self.rng.u64(..)),
            customer_id: customer_id(self.rng.u32(1..=CUSTOMERS)),
            product_id: product.id,
            product_name: product.name,
            category: product.category,
            quantity: self.quantity(),
            unit_price: f64::from(product.price_cents) / 100.0,
            product_json: (product.json_fields, product.price_json),
            order_status: NEW,
            region,
            timestamp,
        }
    }

    fn remember_open(&mut self, order: OrderEvent) {
        if self.open_orders.len() >= OPEN_ORDER_POOL {
            let evicted = self.rng.usize(..self.open_orders.len());
            self.open_orders.swap_remove(evicted);
        }
        self.open_orders.push(order);
    }

    /// The update record that announces a status change on `order_updates`.
    fn update_for(&mut self, event: &OrderEvent) -> OrderUpdate {
        let reasons = if event.order_status == CANCELLED {
            &CANCEL_REASONS
        } else {
            &RETURN_REASONS
        };
        OrderUpdate {
            order_id: event.order_id.clone(),
            new_status: event.order_status,
            reason: reasons[self.rng.usize(..reasons.len())],
            timestamp: event.timestamp.clone(),
        }
    }

    /// The next valid event: a status change of an open order, or a new order (as `next` draws
    /// them, for the tests of single events).
    #[cfg(test)]
    fn next_event(&mut self, timestamp: String) -> OrderEvent {
        let event = self.draw_event(timestamp);
        if event.order_status == NEW {
            self.remember_open(event.clone());
        }
        event
    }

    /// The next valid event: a status change of an open order, or a new order, which the caller
    /// hands to `remember_open` once serialised (that saves copying its strings).
    fn draw_event(&mut self, timestamp: String) -> OrderEvent {
        if !self.open_orders.is_empty() && self.rng.f64() < UPDATE_SHARE {
            let index = self.rng.usize(..self.open_orders.len());
            let mut update = self.open_orders.swap_remove(index);
            update.order_status = if self.rng.f64() < CANCEL_SHARE {
                CANCELLED
            } else {
                RETURNED
            };
            update.timestamp = timestamp;
            return update;
        }
        self.new_order(timestamp)
    }

    /// A broken event for the quarantine path: bad JSON, wrong types, a missing id or an
    /// unreadable timestamp.
    fn malformed(&mut self, timestamp: String) -> Record {
        let event = self.new_order(timestamp);
        let mut value = serde_json::to_value(&event).expect("event serialises");
        let key = Some(event.order_id.clone());
        let payload = match self.rng.u8(0..6) {
            0 => {
                let json = value.to_string();
                json[..json.len() / 2].to_string()
            }
            1 => "<<not json at all>>".to_string(),
            2 => {
                value["quantity"] = "two".into();
                value.to_string()
            }
            3 => {
                value["unit_price"] = "free".into();
                value.to_string()
            }
            4 => {
                value.as_object_mut().expect("object").remove("order_id");
                value.to_string()
            }
            _ => {
                value["timestamp"] = "yesterday at noon".into();
                value.to_string()
            }
        };
        Record {
            key,
            payload,
            malformed: true,
            out_of_domain: false,
            update: None,
        }
    }

    /// A well-formed event whose values break the domain rules.
    fn out_of_domain(&mut self, timestamp: String) -> Record {
        let event = self.new_order(timestamp);
        let mut value = serde_json::to_value(&event).expect("event serialises");
        match self.rng.u8(0..3) {
            0 => value["order_status"] = "SHIPPED".into(),
            1 => value["quantity"] = (-(self.rng.i64(0..=2))).into(),
            _ => value["unit_price"] = (-(self.rng.f64() * 100.0).round() / 100.0).into(),
        }
        Record {
            key: Some(event.order_id),
            payload: value.to_string(),
            malformed: false,
            out_of_domain: true,
            update: None,
        }
    }
}

impl Iterator for OrderGenerator {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.produced >= self.options.count {
            return None;
        }
        let timestamp = self.timestamp(self.produced);
        self.produced += 1;
        let broken = self.options.malformed_ratio + self.options.out_of_domain_ratio;
        if broken > 0.0 {
            // One draw for both shares, and none at all without them: a seed gives the same
            // valid events whatever the ratios were before they were added.
            let roll = self.rng.f64();
            if roll < self.options.malformed_ratio {
                return Some(self.malformed(timestamp));
            }
            if roll < broken {
                return Some(self.out_of_domain(timestamp));
            }
        }
        let event = self.draw_event(timestamp);
        // The update is always drawn, so that a seed gives the same events with or without
        // updates; it is only serialised when wanted.
        let update = (event.order_status != NEW)
            .then(|| self.update_for(&event))
            .filter(|_| self.options.updates)
            .map(|update| serde_json::to_string(&update).expect("update serialises"));
        let record = Record {
            key: Some(event.order_id.clone()),
            payload: event.to_json(),
            malformed: false,
            out_of_domain: false,
            update,
        };
        if event.order_status == NEW {
            self.remember_open(event);
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn options(seed: u64, count: u64, malformed_ratio: f64) -> Options {
        Options {
            seed,
            count,
            malformed_ratio,
            out_of_domain_ratio: 0.0,
            updates: true,
            clock: Clock::Spread {
                start: "2026-11-25T00:00:00Z".parse().unwrap(),
                span_ms: 86_400_000,
            },
        }
    }

    fn events(seed: u64, count: u64) -> Vec<serde_json::Value> {
        OrderGenerator::new(options(seed, count, 0.0))
            .map(|r| serde_json::from_str(&r.payload).unwrap())
            .collect()
    }

    /// The JSON type name of a value, as JSON Schema spells it.
    fn json_type(value: &serde_json::Value) -> &'static str {
        match value {
            serde_json::Value::String(_) => "string",
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::Bool(_) => "boolean",
            serde_json::Value::Null => "null",
            serde_json::Value::Array(_) => "array",
            serde_json::Value::Object(_) => "object",
        }
    }

    #[test]
    fn events_and_updates_carry_exactly_the_contracts_fields() {
        // A field added to (or renamed in) contracts/order_event.schema.json and not written
        // here fails this test; the Python suite validates the same output with the full schema.
        let mut statuses = HashSet::new();
        for record in OrderGenerator::new(options(9, 5_000, 0.0)) {
            let event: serde_json::Value = serde_json::from_str(&record.payload).unwrap();
            let object = event.as_object().unwrap();
            let keys: HashSet<&str> = object.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                contract::ORDER_FIELDS.iter().copied().collect::<HashSet<_>>()
            );
            // ... in the contract's order, as the hand-written JSON writer lays them out.
            let at: Vec<usize> = contract::ORDER_FIELDS
                .iter()
                .map(|f| record.payload.find(&format!("\"{f}\":")).unwrap())
                .collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{}", record.payload);
            for (field, kind) in contract::ORDER_FIELDS.iter().zip(contract::ORDER_FIELD_TYPES) {
                let value = &object[*field];
                // A whole price such as 249 is still a JSON number.
                let ok = json_type(value) == *kind || (*kind == "number" && json_type(value) == "integer");
                assert!(ok, "{field} is {} in {}", json_type(value), record.payload);
            }
            let status = object["order_status"].as_str().unwrap();
            assert!(contract::ORDER_STATUSES.contains(&status));
            statuses.insert(status.to_string());
            let price = object["unit_price"].to_string();
            let decimals = price.split_once('.').map_or(0, |(_, f)| f.len());
            assert!(decimals <= contract::MONEY_SCALE as usize, "price {price}");
            if let Some(update) = record.update {
                let update: serde_json::Value = serde_json::from_str(&update).unwrap();
                let keys: HashSet<&str> = update.as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(
                    keys,
                    contract::UPDATE_FIELDS.iter().copied().collect::<HashSet<_>>()
                );
                assert!(contract::UPDATE_STATUSES.contains(&update["new_status"].as_str().unwrap()));
            }
        }
        // Every status of the contract is produced.
        let all: HashSet<String> = contract::ORDER_STATUSES.iter().map(|s| s.to_string()).collect();
        assert_eq!(statuses, all);
    }

    #[test]
    fn same_seed_gives_same_events_and_other_seed_differs() {
        assert_eq!(events(7, 2000), events(7, 2000));
        assert_ne!(events(7, 2000), events(8, 2000));
    }

    #[test]
    fn status_changes_repeat_an_earlier_new_order_exactly() {
        let mut new_orders: HashMap<String, serde_json::Value> = HashMap::new();
        let mut updates = 0;
        for mut e in events(3, 20_000) {
            let id = e["order_id"].as_str().unwrap().to_string();
            match e["order_status"].as_str().unwrap() {
                NEW => assert!(new_orders.insert(id, e).is_none(), "order ids are unique"),
                CANCELLED | RETURNED => {
                    updates += 1;
                    let mut original = new_orders.remove(&id).expect("update follows its NEW");
                    assert!(e["timestamp"].as_str() >= original["timestamp"].as_str());
                    for v in [&mut e, &mut original] {
                        let o = v.as_object_mut().unwrap();
                        o.remove("order_status");
                        o.remove("timestamp");
                    }
                    assert_eq!(e, original);
                }
                other => panic!("unexpected status {other}"),
            }
        }
        assert!((2_000..4_000).contains(&updates), "{updates} updates");
    }

    #[test]
    fn every_status_change_has_an_update_record_that_matches_it() {
        let records: Vec<_> = OrderGenerator::new(options(4, 5_000, 0.05)).collect();
        let mut updates = 0;
        for record in &records {
            let Some(update) = &record.update else {
                if !record.malformed && !record.out_of_domain {
                    let event: serde_json::Value = serde_json::from_str(&record.payload).unwrap();
                    assert_eq!(event["order_status"], NEW);
                }
                continue;
            };
            updates += 1;
            let event: serde_json::Value = serde_json::from_str(&record.payload).unwrap();
            let update: serde_json::Value = serde_json::from_str(update).unwrap();
            assert_eq!(update["order_id"], event["order_id"]);
            assert_eq!(update["new_status"], event["order_status"]);
            assert_eq!(update["timestamp"], event["timestamp"]);
            let reasons: &[&str] = if event["order_status"] == CANCELLED {
                &CANCEL_REASONS
            } else {
                &RETURN_REASONS
            };
            assert!(reasons.contains(&update["reason"].as_str().unwrap()));
        }
        assert!(updates > 300, "{updates} updates");
    }

    #[test]
    fn hand_written_json_is_exactly_serde_json() {
        let mut generator = OrderGenerator::new(options(12, 3_000, 0.0));
        for index in 0..3_000 {
            let timestamp = generator.timestamp(index);
            let event = generator.next_event(timestamp);
            assert_eq!(event.to_json(), serde_json::to_string(&event).unwrap());
        }
    }

    #[test]
    fn hand_written_ids_and_timestamps_equal_the_general_formatters() {
        use chrono::{SecondsFormat, TimeZone};
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..20_000 {
            // Any instant from 1970 to 2200.
            let ms = rng.i64(0..7_258_118_400_000);
            let at = Utc.timestamp_millis_opt(ms).unwrap();
            assert_eq!(
                rfc3339_millis(ms),
                at.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
            let n = rng.u64(..);
            assert_eq!(order_id(n), format!("ORD-{n:016X}"));
            let c = rng.u32(0..1_000_000);
            assert_eq!(customer_id(c), format!("CUST-{c:06}"));
        }
        for date in [
            "2024-02-29T23:59:59.999Z",
            "2000-03-01T00:00:00.000Z",
            "1999-12-31T23:59:59.999Z",
        ] {
            let ms = DateTime::parse_from_rfc3339(date).unwrap().timestamp_millis();
            assert_eq!(rfc3339_millis(ms), date);
        }
        assert_eq!(order_id(u64::MAX), "ORD-FFFFFFFFFFFFFFFF");
    }

    #[test]
    fn timestamps_are_spread_over_the_span_in_utc() {
        let all = events(1, 1000);
        assert_eq!(all[0]["timestamp"], "2026-11-25T00:00:00.000Z");
        let last = all[999]["timestamp"].as_str().unwrap();
        assert!(
            last.starts_with("2026-11-25T23:5") && last.ends_with('Z'),
            "{last}"
        );
    }

    #[test]
    fn malformed_ratio_is_honoured_and_flags_records() {
        let records: Vec<_> = OrderGenerator::new(options(5, 10_000, 0.1)).collect();
        let malformed = records.iter().filter(|r| r.malformed).count();
        assert!((800..1200).contains(&malformed), "{malformed} malformed");
        assert_eq!(records.len(), 10_000);
    }

    #[test]
    fn out_of_domain_events_are_valid_json_of_the_schema_with_bad_values() {
        let options = Options {
            out_of_domain_ratio: 0.2,
            ..options(6, 5_000, 0.05)
        };
        let records: Vec<_> = OrderGenerator::new(options).collect();
        let odd: Vec<_> = records.iter().filter(|r| r.out_of_domain).collect();
        let broken = records.iter().filter(|r| r.malformed).count();
        assert!((800..1200).contains(&odd.len()), "{} out of domain", odd.len());
        assert!((150..350).contains(&broken), "{broken} malformed");
        for record in odd {
            let e: serde_json::Value = serde_json::from_str(&record.payload).unwrap();
            let bad_status = e["order_status"] == "SHIPPED";
            let bad_quantity = e["quantity"].as_i64().unwrap() <= 0;
            let bad_price = e["unit_price"].as_f64().unwrap() <= 0.0;
            assert!(bad_status || bad_quantity || bad_price, "{e}");
        }
    }

    #[test]
    fn prices_serialise_with_cents() {
        let e = &events(9, 50)[0];
        let price = e["unit_price"].as_f64().unwrap();
        assert_eq!((price * 100.0).round() / 100.0, price);
    }
}
