//! `${env:VAR}` expansion in scalar values, the collector's way
//! (`confmap/provider/envprovider`, `docs/rfcs/env-vars.md`):
//!
//! - `${env:VAR}` and `${VAR}` are replaced by the variable's value;
//! - `${env:VAR:-default}` gives `default` when `VAR` is unset;
//! - `$$` is a literal `$`; any other `$` is kept as written;
//! - an unset variable without a default becomes the empty string.
//!
//! Keys are not expanded. A plain scalar that is exactly one `${...}` stays
//! plain, so its value is typed on decoding (`port: ${env:PORT}` can be a
//! number); any other scalar that contained an expansion is a string. The
//! expanded text is never expanded again.

use std::sync::LazyLock;

use regex::Regex;

use super::{ConfigError, Mark, Node, NodeValue};

static VAR_NAME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z_][a-zA-Z0-9_]*$").ok());

/// Expands every scalar value under `node` in place, looking variables up with
/// `lookup`. Returns every error found.
pub fn expand(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    expand_node(node, lookup, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn expand_node(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match &mut node.value {
        NodeValue::Null => {}
        NodeValue::Scalar { text, quoted } => match expand_text(text, &node.mark, lookup) {
            Ok(Some(Expanded {
                text: new_text,
                whole,
            })) => {
                *text = new_text;
                // A scalar built from pieces is a string, as in the collector.
                if !whole {
                    *quoted = true;
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        },
        NodeValue::Seq(items) => {
            for item in items {
                expand_node(item, lookup, errors);
            }
        }
        NodeValue::Map(entries) => {
            for (_, value) in entries {
                expand_node(value, lookup, errors);
            }
        }
    }
}

struct Expanded {
    text: String,
    /// The whole text was exactly one `${...}`.
    whole: bool,
}

/// `Ok(None)` when the text has nothing to expand.
fn expand_text(
    text: &str,
    mark: &Mark,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Expanded>, ConfigError> {
    if !text.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    let mut expansions = 0usize;
    let mut escapes = 0usize;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            changed = true;
            escapes += 1;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let Some(end) = body_and_tail.find('}') else {
                return Err(ConfigError::new(
                    Some(mark.clone()),
                    "",
                    format!("unterminated \"${{\" in {text:?} (write $$ for a literal $)"),
                ));
            };
            out.push_str(&resolve(&body_and_tail[..end], mark, lookup)?);
            rest = &body_and_tail[end + 1..];
            changed = true;
            expansions += 1;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if !changed {
        return Ok(None);
    }
    let whole = expansions == 1 && escapes == 0 && text.starts_with("${") && text.ends_with('}');
    Ok(Some(Expanded { text: out, whole }))
}

/// The value of one `${...}` body: `env:VAR`, `VAR`, optionally `:-default`.
fn resolve(
    body: &str,
    mark: &Mark,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let reference = match body.split_once(':') {
        // `${VAR:-default}`: no scheme, a default.
        Some((_, rest)) if rest.starts_with('-') => body,
        Some(("env", rest)) => rest,
        Some((scheme, _)) => {
            return Err(ConfigError::new(
                Some(mark.clone()),
                "",
                format!("unsupported configuration provider {scheme:?} in \"${{{body}}}\" (only env is supported)"),
            ))
        }
        None => body,
    };
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = VAR_NAME.as_ref().is_some_and(|re| re.is_match(name));
    if !valid {
        return Err(ConfigError::new(
            Some(mark.clone()),
            "",
            format!("environment variable {name:?} has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$"),
        ));
    }
    // As in the collector, the default applies only to an unset variable.
    match (lookup(name), default) {
        (Some(value), _) if !value.is_empty() => Ok(value),
        (None, Some(default)) => Ok(default.to_string()),
        (value, _) => {
            tracing::info!(
                name,
                set = value.is_some(),
                at = %mark,
                "Configuration references empty environment variable"
            );
            Ok(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::node::parse;

    fn expand_with(text: &str, vars: &[(&str, &str)]) -> Result<Node, Vec<ConfigError>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut node = parse("env.yaml", text).map_err(|e| vec![e])?;
        expand(&mut node, &|name| vars.get(name).cloned())?;
        Ok(node)
    }

    fn scalar(node: &Node, key: &str) -> (String, bool) {
        match &node.get(key).expect("key present").value {
            NodeValue::Scalar { text, quoted } => (text.clone(), *quoted),
            other => panic!("{key} is not a scalar: {other:?}"),
        }
    }

    #[test]
    fn expands_every_form() {
        let node = expand_with(
            "a: ${env:HOST}\n\
             b: ${HOST}\n\
             c: ${env:MISSING:-fallback}\n\
             d: ${MISSING:-x}\n\
             e: ${env:HOST:-unused}\n\
             f: cost $$5 and $$${HOST} and $$$${HOST}\n\
             g: ${env:MISSING}\n\
             h: $HOST stays\n\
             i: ${env:EMPTY:-def}\n",
            &[("HOST", "db.local"), ("EMPTY", "")],
        )
        .expect("expands");
        assert_eq!(scalar(&node, "a"), ("db.local".into(), false));
        assert_eq!(scalar(&node, "b"), ("db.local".into(), false));
        assert_eq!(scalar(&node, "c"), ("fallback".into(), false));
        assert_eq!(scalar(&node, "d"), ("x".into(), false));
        assert_eq!(scalar(&node, "e"), ("db.local".into(), false));
        assert_eq!(
            scalar(&node, "f"),
            ("cost $5 and $db.local and $${HOST}".into(), true)
        );
        assert_eq!(scalar(&node, "g"), ("".into(), false));
        assert_eq!(scalar(&node, "h"), ("$HOST stays".into(), false));
        // Set but empty: the default is for unset variables only.
        assert_eq!(scalar(&node, "i"), ("".into(), false));
    }

    #[test]
    fn whole_plain_expansion_stays_plain_pieces_become_strings() {
        let node = expand_with(
            "port: ${env:PORT}\nquoted: \"${env:PORT}\"\nendpoint: localhost:${env:PORT}\n",
            &[("PORT", "4317")],
        )
        .expect("expands");
        assert_eq!(scalar(&node, "port"), ("4317".into(), false));
        assert_eq!(scalar(&node, "quoted"), ("4317".into(), true));
        assert_eq!(scalar(&node, "endpoint"), ("localhost:4317".into(), true));
    }

    #[test]
    fn expanded_text_is_not_expanded_again_and_keys_are_left_alone() {
        let node = expand_with(
            "${KEY}: ${A}\nlist: [\"${A}\", x$$]\n",
            &[("A", "${B}"), ("B", "no")],
        )
        .expect("expands");
        assert_eq!(scalar(&node, "${KEY}"), ("${B}".into(), false));
        let list = node.get("list").expect("list");
        let NodeValue::Seq(items) = &list.value else {
            panic!("not a sequence")
        };
        assert_eq!(items[0].as_str(), Some("${B}"));
        assert_eq!(items[1].as_str(), Some("x$"));
    }

    #[test]
    fn invalid_names_are_errors_with_position() {
        let errors = expand_with(
            "a: ok\nb:\n  c: x ${env:1BAD}\n  d: ${env:bad-name:-x}\n",
            &[],
        )
        .expect_err("invalid");
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "env.yaml:3:6: environment variable \"1BAD\" has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$",
                "env.yaml:4:6: environment variable \"bad-name\" has invalid name: must match regex ^[a-zA-Z_][a-zA-Z0-9_]*$",
            ]
        );
    }

    #[test]
    fn unterminated_and_unknown_providers_are_errors() {
        let errors = expand_with("a: ${env:X\nb: ${file:/etc/x}\n", &[]).expect_err("invalid");
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0]
                .to_string()
                .starts_with("env.yaml:1:4: unterminated"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1]
                .to_string()
                .starts_with("env.yaml:2:4: unsupported configuration provider \"file\""),
            "{}",
            errors[1]
        );
    }
}
