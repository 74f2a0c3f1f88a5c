//! Every receiver's metric catalog against the docs: each receiver's metric
//! table lists exactly its catalog's metrics, with the same units, types and
//! attribute keys, and states their cardinality caps.

use crate::components::registry;
use crate::metric_catalog::checks::{assert_documented, assert_well_formed, documented_metrics};
use crate::metric_catalog::MetricDef;

/// Where a receiver's metrics are documented.
struct Documented {
    receiver: &'static str,
    catalog: &'static [MetricDef],
    /// Under docs/.
    file: &'static str,
    /// The heading of the receiver's section; `None`: the whole file.
    section: Option<&'static str>,
}

const DOCUMENTED: &[Documented] = &[
    Documented {
        receiver: "filelog",
        catalog: super::filelog::metrics::ALL,
        file: "configuration.md",
        section: Some("### `filelog`"),
    },
    Documented {
        receiver: "journald",
        catalog: super::journald::metrics::ALL,
        file: "configuration.md",
        section: Some("### `journald`"),
    },
    Documented {
        receiver: "kmsg",
        catalog: super::kmsg::metrics::ALL,
        file: "configuration.md",
        section: Some("### `kmsg`"),
    },
    Documented {
        receiver: "memory",
        catalog: super::memory::metrics::ALL,
        file: "metrics.md",
        section: None,
    },
    Documented {
        receiver: "oom",
        catalog: super::oom::metrics::ALL,
        file: "configuration.md",
        section: Some("### `oom`"),
    },
    // A pass-through: it emits what it receives, no metric of its own.
    Documented {
        receiver: "otlp",
        catalog: &[],
        file: "configuration.md",
        section: Some("### `otlp`"),
    },
];

fn read_doc(file: &str) -> String {
    let path = format!("{}/../docs/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_registered_receiver_has_its_metrics_documented() {
    for factory in registry().receivers {
        let name = factory.type_name();
        assert!(
            DOCUMENTED.iter().any(|d| d.receiver == name),
            "receiver {name}: add its catalog to DOCUMENTED"
        );
    }
}

#[test]
fn catalogs_are_well_formed() {
    for d in DOCUMENTED {
        assert_well_formed(d.catalog);
    }
}

#[test]
fn docs_tables_match_the_catalogs() {
    for d in DOCUMENTED {
        let rows = documented_metrics(&read_doc(d.file), d.section);
        let doc = format!("docs/{} ({})", d.file, d.section.unwrap_or("whole file"));
        assert_documented(&doc, &rows, d.catalog);
    }
}

/// A receiver documented in a file of its own has no metric rows in its
/// configuration.md section (one table per metric, not two to keep equal).
#[test]
fn configuration_md_lists_no_metrics_of_receivers_documented_elsewhere() {
    let text = read_doc("configuration.md");
    for d in DOCUMENTED.iter().filter(|d| d.file != "configuration.md") {
        let section = format!("### `{}`", d.receiver);
        let rows = documented_metrics(&text, Some(&section));
        assert!(rows.is_empty(), "{section}: {rows:?}");
    }
}
