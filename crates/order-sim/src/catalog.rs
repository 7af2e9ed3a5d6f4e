//! The fixed product catalogue and sales regions, read from the repository's `data/` CSVs at
//! compile time so that the producer, the Spark jobs and the tests share one definition.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::contract;

const PRODUCTS_CSV: &str = include_str!("../../../data/products.csv");
const REGIONS_CSV: &str = include_str!("../../../data/regions.csv");

/// One product: every event for it carries this name, category and price.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    pub price_cents: u32,
    /// `"product_id":…,"product_name":…,"category":…` and the price as JSON, rendered once:
    /// these are most of an event's bytes, and escaping them per event was the generator's
    /// largest cost (perf: serde_json's serialize_str 20%, allocation another 20%).
    pub json_fields: &'static str,
    pub price_json: &'static str,
}

/// Leaked once per catalogue load (a few dozen products), so events borrow it for free.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn product(id: &'static str, name: &'static str, category: &'static str, price_cents: u32) -> Product {
    let quoted = |text: &str| serde_json::to_string(text).expect("string serialises");
    let price = f64::from(price_cents) / 100.0;
    Product {
        id,
        name,
        category,
        price_cents,
        json_fields: leak(format!(
            "\"product_id\":{},\"product_name\":{},\"category\":{}",
            quoted(id),
            quoted(name),
            quoted(category)
        )),
        price_json: leak(serde_json::to_string(&price).expect("price serialises")),
    }
}

/// Items picked with probability proportional to their weight (popularity), by binary search
/// over cumulative weights.
#[derive(Debug, Clone)]
pub struct Weighted<T> {
    items: Vec<T>,
    cumulative: Vec<u32>,
}

impl<T> Weighted<T> {
    fn new(pairs: Vec<(T, u32)>) -> Self {
        let mut total = 0;
        let mut items = Vec::with_capacity(pairs.len());
        let mut cumulative = Vec::with_capacity(pairs.len());
        for (item, weight) in pairs {
            assert!(weight > 0, "catalogue weights must be positive");
            total += weight;
            items.push(item);
            cumulative.push(total);
        }
        assert!(!items.is_empty(), "catalogue must not be empty");
        Self { items, cumulative }
    }

    pub fn pick(&self, rng: &mut fastrand::Rng) -> &T {
        let total = *self.cumulative.last().expect("non-empty");
        let ticket = rng.u32(0..total);
        let index = self.cumulative.partition_point(|&c| c <= ticket);
        &self.items[index]
    }

    #[cfg(test)]
    pub fn items(&self) -> &[T] {
        &self.items
    }
}

/// Data rows of a catalogue CSV with a header line, each as its fields (quoted fields such as
/// `"Socks, 3-pack"` included, as Python's csv module reads them), leaked for the program's life.
fn rows(csv_text: &'static str) -> Result<Vec<Vec<&'static str>>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.context("catalogue CSV")?;
        rows.push(record.iter().map(|field| leak(field.to_string())).collect());
    }
    Ok(rows)
}

/// A price in whole cents; more decimals than the contract's money scale are refused.
fn parse_cents(price: &str) -> Result<u32> {
    let (whole, frac) = price.split_once('.').unwrap_or((price, ""));
    if frac.len() > contract::MONEY_SCALE as usize {
        bail!("price {price} has more than {} decimals", contract::MONEY_SCALE);
    }
    let frac = format!("{frac:0<2}");
    let parsed = whole.parse::<u32>().ok().zip(frac.parse::<u32>().ok());
    let (whole, frac) = parsed.with_context(|| format!("price {price} is not a decimal number"))?;
    Ok(whole * 100 + frac)
}

/// The products of a catalogue CSV (product_id, product_name, category, unit_price, weight).
pub fn products_from(csv_text: &'static str) -> Result<Weighted<Product>> {
    let mut products = Vec::new();
    for f in rows(csv_text)? {
        let [id, name, category, price, weight] = f[..] else {
            bail!("catalogue row {f:?}: expected 5 fields");
        };
        let cents = parse_cents(price).with_context(|| format!("product {id}"))?;
        let weight = weight
            .parse()
            .with_context(|| format!("product {id}: weight {weight}"))?;
        products.push((product(id, name, category, cents), weight));
    }
    Ok(Weighted::new(products))
}

/// The products of a catalogue file (`--products`), read once and kept for the program's life.
pub fn products_from_file(path: &Path) -> Result<Weighted<Product>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    products_from(leak(text)).with_context(|| format!("catalogue {}", path.display()))
}

/// The repository's catalogue, data/products.csv, compiled in.
pub fn products() -> Weighted<Product> {
    products_from(PRODUCTS_CSV).expect("data/products.csv is a valid catalogue")
}

pub fn regions() -> Weighted<&'static str> {
    let rows = rows(REGIONS_CSV).expect("data/regions.csv is valid CSV");
    Weighted::new(
        rows.into_iter()
            .map(|f| (f[0], f[5].parse().expect("region weight")))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalogue_loads_with_unique_ids_and_positive_prices() {
        let products = products();
        let ids: HashSet<_> = products.items().iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), products.items().len());
        assert!(products.items().iter().all(|p| p.price_cents > 0));
        assert_eq!(products.items()[0].price_cents, 12999);
    }

    #[test]
    fn prices_parse_to_exact_cents() {
        assert_eq!(parse_cents("89.50").unwrap(), 8950);
        assert_eq!(parse_cents("89.5").unwrap(), 8950);
        assert_eq!(parse_cents("249").unwrap(), 24900);
        let finer = parse_cents("9.995").unwrap_err().to_string();
        assert!(finer.contains("more than 2 decimals"), "{finer}");
    }

    #[test]
    fn quoted_and_unicode_fields_read_as_python_reads_them() {
        let csv = "product_id,product_name,category,unit_price,weight\n\
                   P-1,\"Socks, 3-pack\",Fashion,9.99,2\n\
                   P-2,Caf\u{e9} cr\u{e8}me \u{2615},\"Food \"\"fine\"\"\",4.5,1\n";
        let products = products_from(csv).unwrap();
        let items = products.items();
        assert_eq!(items[0].name, "Socks, 3-pack");
        assert_eq!(
            (items[1].name, items[1].category),
            ("Caf\u{e9} cr\u{e8}me \u{2615}", "Food \"fine\"")
        );
        assert_eq!(items[1].price_cents, 450);
        assert!(items[1].json_fields.contains(r#""category":"Food \"fine\"""#));
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let w = Weighted::new(vec![("a", 1), ("b", 3)]);
        let mut rng = fastrand::Rng::with_seed(1);
        let b = (0..40_000).filter(|_| *w.pick(&mut rng) == "b").count();
        assert!((29_000..31_000).contains(&b), "b picked {b} times");
    }

    #[test]
    fn regions_match_the_csv() {
        let codes: Vec<_> = regions().items().to_vec();
        assert!(codes.contains(&"US-EAST") && codes.contains(&"AU"));
        assert_eq!(codes.len(), 12);
    }
}
