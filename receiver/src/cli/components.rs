//! `oomscope components`: every component by kind, as the collector's
//! `components` command lists them.

use crate::component::{Kind, Registry};

/// The list as YAML: build info, then each kind with each type's name, other
/// spellings, stability per signal and what it does.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    out.push_str("buildinfo:\n");
    out.push_str("  command: oomscope\n");
    out.push_str(&format!("  version: {}\n", env!("CARGO_PKG_VERSION")));
    for kind in Kind::ALL {
        out.push_str(&format!("{}:\n", kind.section()));
        for factory in registry.factories(kind) {
            let names = factory.type_names();
            out.push_str(&format!("  - name: {}\n", factory.type_name()));
            if names.len() > 1 {
                out.push_str(&format!("    aliases: [{}]\n", names[1..].join(", ")));
            }
            out.push_str("    stability:\n");
            if kind == Kind::Extension {
                out.push_str(&format!("      extension: {}\n", factory.stability()));
            } else {
                for signal in factory.signals() {
                    out.push_str(&format!("      {signal}: {}\n", factory.stability()));
                }
            }
            let description =
                serde_json::to_string(factory.description()).unwrap_or_else(|_| "\"\"".to_string());
            out.push_str(&format!("    description: {description}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_component_is_listed_with_its_stability() {
        let registry = crate::components::registry();
        let text = render(registry);
        for kind in Kind::ALL {
            assert!(text.contains(&format!("\n{}:\n", kind.section())), "{text}");
            for f in registry.factories(kind) {
                assert!(
                    text.contains(&format!("  - name: {}\n", f.type_name())),
                    "{text}"
                );
            }
        }
        assert!(
            text.contains("  - name: memory\n    stability:\n      metrics: Beta\n"),
            "{text}"
        );
        assert!(
            text.contains("  - name: otlp_grpc\n    aliases: [otlp]\n"),
            "{text}"
        );
        assert!(text.contains("      extension: Beta\n"), "{text}");
        // The listing is YAML.
        let source = crate::config::ConfigSource::Text {
            name: "components".into(),
            text,
        };
        let parsed = crate::config::resolve(&[source], &|_| None);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
