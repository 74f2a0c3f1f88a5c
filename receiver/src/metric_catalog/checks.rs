//! Checks that hold a receiver's catalog, what the receiver emits and what
//! the docs say to one another (tests only).

use std::collections::BTreeSet;

use opentelemetry_proto::tonic::metrics::v1::{metric, AggregationTemporality, ResourceMetrics};

use super::{MetricDef, MetricKind};

/// Names unique, attribute keys unique per metric, caps above zero.
pub fn assert_well_formed(catalog: &[MetricDef]) {
    let mut names = BTreeSet::new();
    for def in catalog {
        assert!(names.insert(def.name), "{} is defined twice", def.name);
        let keys: BTreeSet<&str> = def.attributes.iter().copied().collect();
        assert_eq!(
            keys.len(),
            def.attributes.len(),
            "{}: repeated attribute",
            def.name
        );
        assert_ne!(def.cardinality_cap, Some(0), "{}: a cap of 0", def.name);
        assert!(!def.description.is_empty(), "{}: no description", def.name);
    }
}

/// Every metric in `emitted` is one of `catalog`, with its unit, type and
/// description, and its points carry only the def's attribute keys.
pub fn assert_emitted_per_catalog(emitted: &[ResourceMetrics], catalog: &[MetricDef]) {
    for m in emitted
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
    {
        let def = catalog
            .iter()
            .find(|d| d.name == m.name)
            .unwrap_or_else(|| panic!("{} is emitted but not in the catalog", m.name));
        assert_eq!(m.unit, def.unit, "unit of {}", m.name);
        assert_eq!(m.description, def.description, "description of {}", m.name);
        let (kind, points) = match &m.data {
            Some(metric::Data::Gauge(g)) => (MetricKind::Gauge, &g.data_points),
            Some(metric::Data::Sum(s)) => {
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32,
                    "{} is cumulative",
                    m.name
                );
                let kind = if s.is_monotonic {
                    MetricKind::Counter
                } else {
                    MetricKind::UpDownCounter
                };
                (kind, &s.data_points)
            }
            other => panic!("{}: unexpected data {other:?}", m.name),
        };
        assert_eq!(kind, def.kind, "type of {}", m.name);
        for key in points.iter().flat_map(|p| &p.attributes).map(|kv| &kv.key) {
            assert!(
                def.attributes.contains(&key.as_str()),
                "{} carries `{key}`, which its catalog entry does not list",
                m.name
            );
        }
    }
}

/// One row of a docs metric table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedMetric {
    pub name: String,
    pub unit: String,
    pub kind: String,
    /// The keys the row names (values in parentheses left out).
    pub attributes: BTreeSet<String>,
    pub meaning: String,
}

/// The cells of a table row; `\|` is a `|` inside a cell.
fn cells(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.trim().trim_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().expect("a cell").push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().expect("a cell").push(c),
        }
    }
    out.iter().map(|c| c.trim().to_string()).collect()
}

/// The backquoted keys of an attributes cell, leaving out what stands in
/// parentheses (the values a key takes): "`a` (`x`, `y`), `b`" is {a, b}.
fn attribute_keys(cell: &str) -> BTreeSet<String> {
    let mut outside = String::new();
    let mut depth = 0u32;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn heading_level(line: &str) -> Option<usize> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    (level > 0 && line.as_bytes().get(level) == Some(&b' ')).then_some(level)
}

/// The lines of the section whose heading starts with `heading` (up to the
/// next heading of the same or a higher level); every line when `None`.
fn section<'a>(markdown: &'a str, heading: Option<&str>) -> Vec<&'a str> {
    let Some(heading) = heading else {
        return markdown.lines().collect();
    };
    let mut lines = Vec::new();
    let mut level_inside = None;
    for line in markdown.lines() {
        match (heading_level(line), level_inside) {
            (Some(level), None) if line.starts_with(heading) => level_inside = Some(level),
            (Some(level), Some(inside)) if level <= inside => break,
            (_, Some(_)) => lines.push(line),
            _ => {}
        }
    }
    assert!(level_inside.is_some(), "no section {heading}");
    lines
}

/// The rows of every metric table (the header's first column is `metric`)
/// of a section of `markdown` (see [`section`]). A metric table must have
/// `unit`, `type` and `attributes` columns.
pub fn documented_metrics(markdown: &str, heading: Option<&str>) -> Vec<DocumentedMetric> {
    let mut rows = Vec::new();
    let mut columns: Option<Vec<String>> = None;
    for line in section(markdown, heading) {
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let row = cells(line);
        if row.first().map(String::as_str) == Some("metric") {
            columns = Some(row);
            continue;
        }
        let Some(columns) = &columns else { continue };
        if row.iter().all(|c| c.chars().all(|c| c == '-' || c == ':')) {
            continue;
        }
        let cell = |name: &str| -> &str {
            let i = columns
                .iter()
                .position(|c| c == name)
                .unwrap_or_else(|| panic!("a metric table without a `{name}` column"));
            row.get(i).map_or("", String::as_str)
        };
        rows.push(DocumentedMetric {
            name: cell("metric").trim_matches('`').to_string(),
            unit: cell("unit").trim_matches('`').to_string(),
            kind: cell("type").to_string(),
            attributes: attribute_keys(cell("attributes")),
            meaning: cell("meaning").to_string(),
        });
    }
    rows
}

/// `rows` list exactly the catalog's metrics, in its order, with its units,
/// types and attribute keys, and state its cardinality caps
/// ("at most N series").
pub fn assert_documented(doc: &str, rows: &[DocumentedMetric], catalog: &[MetricDef]) {
    let documented: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let defined: Vec<&str> = catalog.iter().map(|d| d.name).collect();
    assert_eq!(documented, defined, "{doc}: metric rows vs the catalog");
    for (row, def) in rows.iter().zip(catalog) {
        assert_eq!(row.unit, def.unit, "{doc}: unit of {}", def.name);
        assert_eq!(row.kind, def.kind.doc_name(), "{doc}: type of {}", def.name);
        let keys: BTreeSet<String> = def.attributes.iter().map(|k| k.to_string()).collect();
        assert_eq!(row.attributes, keys, "{doc}: attributes of {}", def.name);
        if let Some(cap) = def.cardinality_cap {
            let says = format!("at most {cap} series");
            assert!(
                row.meaning.contains(&says),
                "{doc}: the meaning of {} should say \"{says}\"",
                def.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# Title

## A

| metric | unit | type | attributes | meaning |
|---|---|---|---|---|
| `a.one` | `{x}` | Sum (monotonic) | `k` (`v1`, `v2`), `l` | One; at most 5 series. |
| `a.two` | `By` | Gauge | none | Two \\| more. |

Text.

### A.1

| metric | unit | type | attributes | meaning |
|---|---|---|---|---|
| `a.three` | `1` | Sum (non-monotonic) | `m` | Three. |

## B

| key | type | default | meaning |
|---|---|---|---|
| `not.a.metric` | int | `1` | A setting. |

| metric | unit | type | attributes | meaning |
|---|---|---|---|---|
| `b.one` | `s` | Gauge | none | B. |
";

    #[test]
    fn tables_of_a_section_and_its_subsections_are_read() {
        let rows = documented_metrics(DOC, Some("## A"));
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a.one", "a.two", "a.three"]);
        assert_eq!(rows[0].unit, "{x}");
        assert_eq!(rows[0].kind, "Sum (monotonic)");
        assert_eq!(
            rows[0].attributes,
            BTreeSet::from(["k".to_string(), "l".to_string()])
        );
        assert!(rows[1].attributes.is_empty());
        assert_eq!(rows[1].meaning, "Two | more.");
        let all: Vec<String> = documented_metrics(DOC, None)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(all, ["a.one", "a.two", "a.three", "b.one"]);
    }

    #[test]
    fn a_drifted_table_fails() {
        const ONE: MetricDef = MetricDef::new("a.one", "{x}", MetricKind::Counter, "1")
            .with_attributes(&["k", "l"])
            .with_cardinality_cap(5);
        const TWO: MetricDef = MetricDef::new("a.two", "By", MetricKind::Gauge, "2");
        const THREE: MetricDef =
            MetricDef::new("a.three", "1", MetricKind::UpDownCounter, "3").with_attributes(&["m"]);
        let rows = documented_metrics(DOC, Some("## A"));
        assert_documented("doc", &rows, &[ONE, TWO, THREE]);
        let fails = |catalog: Vec<MetricDef>| {
            let rows = rows.clone();
            std::panic::catch_unwind(move || assert_documented("doc", &rows, &catalog)).is_err()
        };
        assert!(fails(vec![ONE, TWO]), "a row too many");
        assert!(fails(vec![TWO, ONE, THREE]), "another order");
        assert!(fails(vec![ONE, MetricDef { unit: "s", ..TWO }, THREE]));
        assert!(fails(vec![
            ONE,
            MetricDef {
                kind: MetricKind::Counter,
                ..TWO
            },
            THREE
        ]));
        assert!(fails(vec![ONE.with_attributes(&["k"]), TWO, THREE]));
        assert!(fails(vec![ONE.with_cardinality_cap(6), TWO, THREE]));
    }
}
