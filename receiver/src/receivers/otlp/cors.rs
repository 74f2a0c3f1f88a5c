//! `cors` of the OTLP/HTTP receiver, as the collector's `confighttp` does it
//! (with github.com/rs/cors): browsers' preflight `OPTIONS` requests are
//! answered before authentication (a preflight carries no credentials), and
//! responses to allowed origins carry `Access-Control-Allow-Origin` and,
//! as confighttp's do, `Access-Control-Allow-Credentials: true`.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use serde::Deserialize;

use crate::config::ValidationError;

/// Headers a preflight may always ask for: the CORS-safelisted ones,
/// `X-Requested-With` and `Origin` (confighttp's README: "By default,
/// safelist headers and `X-Requested-With` will be allowed").
const ALWAYS_ALLOWED_HEADERS: [&str; 6] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
    "origin",
    "x-requested-with",
];
/// Most distinct origin patterns kept (each is matched per request).
const MAX_ORIGINS: usize = 1000;

/// `protocols.http.cors`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to send requests: exact, `*` for any, or with one
    /// `*` wildcard (`https://*.example.com`). Empty: CORS stays off.
    pub allowed_origins: Vec<String>,
    /// Request headers a preflight may ask for, beyond the CORS-safelisted
    /// ones; `*` allows any.
    pub allowed_headers: Vec<String>,
    /// Seconds a browser may cache a preflight's answer; 0 sends no
    /// `Access-Control-Max-Age`.
    pub max_age: u32,
}

impl CorsConfig {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.allowed_origins.len() > MAX_ORIGINS {
            return Err(ValidationError::at(
                "allowed_origins",
                format!("at most {MAX_ORIGINS} origins"),
            ));
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if origin != "*" && origin.matches('*').count() > 1 {
                return Err(ValidationError::at(
                    format!("allowed_origins[{i}]"),
                    format!("{origin:?} has more than one '*' wildcard"),
                ));
            }
        }
        for (i, h) in self.allowed_headers.iter().enumerate() {
            if h != "*" && http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ValidationError::at(
                    format!("allowed_headers[{i}]"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
        }
        Ok(())
    }
}

/// The checks of a configured `cors` (built once).
#[derive(Debug)]
pub struct Cors {
    any_origin: bool,
    /// (prefix, suffix): `*` matches what lies between; exact origins have
    /// no wildcard (`None`).
    origins: Vec<(String, Option<String>)>,
    any_header: bool,
    headers: Vec<String>,
    max_age: u32,
}

impl Cors {
    /// `None` when no origin is allowed: the collector then installs no
    /// CORS handler either.
    pub fn new(c: &CorsConfig) -> Option<Cors> {
        if c.allowed_origins.is_empty() {
            return None;
        }
        let origins = c
            .allowed_origins
            .iter()
            .filter(|o| o.as_str() != "*")
            .map(|o| {
                let o = o.to_ascii_lowercase();
                match o.split_once('*') {
                    Some((prefix, suffix)) => (prefix.to_string(), Some(suffix.to_string())),
                    None => (o, None),
                }
            })
            .collect();
        let mut headers: Vec<String> = ALWAYS_ALLOWED_HEADERS
            .iter()
            .map(|h| h.to_string())
            .chain(c.allowed_headers.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        headers.sort();
        headers.dedup();
        Some(Cors {
            any_origin: c.allowed_origins.iter().any(|o| o == "*"),
            origins,
            any_header: c.allowed_headers.iter().any(|h| h == "*"),
            headers,
            max_age: c.max_age,
        })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|(prefix, suffix)| match suffix {
            None => *prefix == origin,
            Some(suffix) => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
            }
        })
    }

    /// The answer to a preflight request (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), or `None` for any other request.
    /// A preflight that is not allowed gets 204 without CORS headers, so
    /// the browser refuses the real request (as rs/cors answers).
    pub fn preflight<B: Default>(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Response<B>> {
        if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        for vary in [
            "Origin",
            "Access-Control-Request-Method",
            "Access-Control-Request-Headers",
        ] {
            out.append(header::VARY, HeaderValue::from_static(vary));
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Some(response);
        };
        let origin_ok = origin.to_str().is_ok_and(|o| self.origin_allowed(o));
        // Only POST is served; rs/cors' default methods add GET and HEAD,
        // which this receiver would answer 405.
        let method_ok = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.eq_ignore_ascii_case("POST"));
        let requested: Vec<String> = headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let headers_ok = self.any_header
            || requested
                .iter()
                .all(|h| self.headers.binary_search(h).is_ok());
        if !(origin_ok && method_ok && headers_ok) {
            return Some(response);
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        if !requested.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if self.max_age > 0 {
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(self.max_age),
            );
        }
        Some(response)
    }

    /// Adds `Access-Control-Allow-Origin` to the response of an actual
    /// request from an allowed origin.
    pub fn decorate<B>(&self, request: &HeaderMap, response: &mut Response<B>) {
        let Some(origin) = request.get(header::ORIGIN) else {
            return;
        };
        let out = response.headers_mut();
        out.append(header::VARY, HeaderValue::from_static("Origin"));
        if origin.to_str().is_ok_and(|o| self.origin_allowed(o)) {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin_value(origin),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(json: serde_json::Value) -> Cors {
        let c: CorsConfig = serde_json::from_value(json).expect("valid");
        c.validate().expect("valid");
        Cors::new(&c).expect("origins set")
    }

    fn preflight(c: &Cors, origin: &str, method: &str, req_headers: &str) -> Response<()> {
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_str(origin).expect("origin"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).expect("method"),
        );
        if !req_headers.is_empty() {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(req_headers).expect("headers"),
            );
        }
        c.preflight(&Method::OPTIONS, &h).expect("a preflight")
    }

    #[test]
    fn preflight_by_origin_method_and_headers() {
        let c = cors(serde_json::json!({
            "allowed_origins": ["http://test.com", "https://*.example.com"],
            "allowed_headers": ["X-Custom-Header"],
            "max_age": 7200
        }));
        let ok = preflight(
            &c,
            "https://app.example.com",
            "POST",
            "Content-Type, x-custom-header",
        );
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        let h = ok.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, x-custom-header"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "7200");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        // A header neither safelisted nor in allowed_headers.
        assert!(preflight(&c, "http://test.com", "POST", "X-Other")
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        assert!(preflight(&c, "http://other.com", "POST", "")
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        assert!(preflight(&c, "http://test.com", "DELETE", "")
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        // A plain OPTIONS (no Access-Control-Request-Method) is no preflight.
        assert!(c
            .preflight::<()>(&Method::OPTIONS, &HeaderMap::new())
            .is_none());
    }

    #[test]
    fn default_headers_star_and_actual_requests() {
        let c = cors(serde_json::json!({"allowed_origins": ["*"]}));
        let ok = preflight(&c, "http://any.org", "POST", "content-type");
        assert_eq!(ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(ok.headers().get(header::ACCESS_CONTROL_MAX_AGE).is_none());
        let mut req = HeaderMap::new();
        req.insert(header::ORIGIN, HeaderValue::from_static("http://any.org"));
        let mut resp = Response::new(());
        c.decorate(&req, &mut resp);
        assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn config_is_checked() {
        let bad: CorsConfig =
            serde_json::from_value(serde_json::json!({"allowed_origins": ["https://*.*.x"]}))
                .expect("parses");
        assert!(bad.validate().is_err());
        assert!(
            serde_json::from_value::<CorsConfig>(serde_json::json!({"allow_origins": []})).is_err()
        );
        assert!(Cors::new(&CorsConfig::default()).is_none());
    }
}
