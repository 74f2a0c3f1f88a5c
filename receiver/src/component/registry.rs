//! The set of factories the config loader decodes with.

use super::factory::{
    ExporterFactory, ExtensionFactory, Factory, Kind, ProcessorFactory, ReceiverFactory,
};

/// A type the collector had and removed: naming it gets this message.
pub struct Retired {
    pub kind: Kind,
    pub type_name: &'static str,
    pub message: &'static str,
}

/// Every component type, by kind (`crate::components::registry` lists them).
pub struct Registry {
    pub receivers: &'static [&'static dyn ReceiverFactory],
    pub processors: &'static [&'static dyn ProcessorFactory],
    pub exporters: &'static [&'static dyn ExporterFactory],
    pub extensions: &'static [&'static dyn ExtensionFactory],
    pub retired: &'static [Retired],
}

/// The factory that accepts `type_name` (any of its spellings).
fn find<F: ?Sized + Factory>(factories: &[&'static F], type_name: &str) -> Option<&'static F> {
    factories
        .iter()
        .copied()
        .find(|f| f.type_names().contains(&type_name))
}

impl Registry {
    pub fn receiver(&self, type_name: &str) -> Option<&'static dyn ReceiverFactory> {
        find(self.receivers, type_name)
    }

    pub fn processor(&self, type_name: &str) -> Option<&'static dyn ProcessorFactory> {
        find(self.processors, type_name)
    }

    pub fn exporter(&self, type_name: &str) -> Option<&'static dyn ExporterFactory> {
        find(self.exporters, type_name)
    }

    pub fn extension(&self, type_name: &str) -> Option<&'static dyn ExtensionFactory> {
        find(self.extensions, type_name)
    }

    /// The factories of one kind, as what they share.
    pub fn factories(&self, kind: Kind) -> Vec<&'static dyn Factory> {
        // Trait upcasting: `&dyn ReceiverFactory` is a `&dyn Factory`.
        match kind {
            Kind::Receiver => self.receivers.iter().map(|f| *f as &dyn Factory).collect(),
            Kind::Processor => self.processors.iter().map(|f| *f as &dyn Factory).collect(),
            Kind::Exporter => self.exporters.iter().map(|f| *f as &dyn Factory).collect(),
            Kind::Extension => self.extensions.iter().map(|f| *f as &dyn Factory).collect(),
        }
    }

    /// Every accepted type name of one kind, sorted (for "valid values").
    pub fn type_names(&self, kind: Kind) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .factories(kind)
            .iter()
            .flat_map(|f| f.type_names().iter().copied())
            .collect();
        names.sort_unstable();
        names
    }

    /// Why a retired type is refused, if `type_name` is one.
    pub fn retired(&self, kind: Kind, type_name: &str) -> Option<&'static str> {
        self.retired
            .iter()
            .find(|r| r.kind == kind && r.type_name == type_name)
            .map(|r| r.message)
    }

    /// Inconsistencies a new registration could bring: a factory without a
    /// name, a name that is not a valid component type, or one spelling
    /// claimed twice in one kind.
    pub fn check(&self) -> Result<(), String> {
        for kind in Kind::ALL {
            let mut seen = std::collections::BTreeSet::new();
            for f in self.factories(kind) {
                if f.type_names().is_empty() {
                    return Err(format!("a {kind} factory has no type name"));
                }
                for name in f.type_names() {
                    if name.parse::<crate::config::ComponentId>().is_err() || name.contains('/') {
                        return Err(format!("{kind} type {name:?} is not a valid type"));
                    }
                    if !seen.insert(*name) {
                        return Err(format!("{kind} type {name:?} is registered twice"));
                    }
                }
            }
        }
        Ok(())
    }
}
