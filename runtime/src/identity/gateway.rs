//! The request headers a Gateway API inference extension gateway sets, read only when
//! the config trusts them (`identity.gateway.trustHeaders`): anyone reaching the
//! runtime directly could set them too.

use std::collections::BTreeMap;

use modelplane_config::GatewayConfig;

use crate::serve::Attributes;

/// The fairness key the gateway assigns the request (its flow's identity).
pub const FAIRNESS_ID_HEADER: &str = "x-gateway-inference-fairness-id";

/// The InferenceObjective the request is served under (its priority).
pub const OBJECTIVE_HEADER: &str = "x-gateway-inference-objective";

/// The longest fairness id taken; a longer one is ignored (it would only be a huge
/// fair-queuing key).
pub const MAX_FAIRNESS_ID: usize = 256;

/// A trusted gateway: its objectives' bands.
pub(super) struct Gateway {
    objectives: BTreeMap<String, i32>,
}

/// What the gateway's headers say about one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct GatewayHeaders {
    /// The fairness id, when sent (non-empty, visible ASCII, at most [`MAX_FAIRNESS_ID`]).
    pub(super) fairness_id: Option<String>,
    /// The objective's band, when one was sent (band 0 for an objective not configured).
    pub(super) band: Option<i32>,
}

impl Gateway {
    /// The gateway of `config`, when it trusts the headers.
    pub(super) fn new(config: Option<&GatewayConfig>) -> Option<Self> {
        let config = config.filter(|config| config.trust_headers)?;
        Some(Self {
            objectives: config.objectives.clone(),
        })
    }

    /// Reads the gateway's headers of a request.
    pub(super) fn read(&self, attributes: &Attributes) -> GatewayHeaders {
        let fairness_id = attributes
            .get(FAIRNESS_ID_HEADER)
            .map(str::trim)
            .filter(|id| !id.is_empty());
        let fairness_id = match fairness_id {
            Some(id) if id.len() > MAX_FAIRNESS_ID => {
                tracing::debug!(
                    len = id.len(),
                    "a fairness id longer than {MAX_FAIRNESS_ID} bytes is ignored"
                );
                None
            }
            other => other.map(str::to_owned),
        };
        let band = attributes
            .get(OBJECTIVE_HEADER)
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| self.objectives.get(name).copied().unwrap_or(0));
        GatewayHeaders { fairness_id, band }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn attributes(pairs: &[(&'static str, &str)]) -> Attributes {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        Attributes::new(headers)
    }

    fn config(trust_headers: bool) -> GatewayConfig {
        GatewayConfig {
            trust_headers,
            objectives: BTreeMap::from([("critical".to_owned(), 10), ("sheddable".to_owned(), -5)]),
            tenant: None,
        }
    }

    #[test]
    fn untrusted_headers_are_not_read() {
        assert!(Gateway::new(Some(&config(false))).is_none());
        assert!(Gateway::new(None).is_none());
    }

    #[test]
    fn objectives_map_to_their_bands_and_unknown_ones_to_band_zero() {
        let gateway = Gateway::new(Some(&config(true))).expect("trusted");
        let read = |objective| {
            gateway
                .read(&attributes(&[(OBJECTIVE_HEADER, objective)]))
                .band
        };
        assert_eq!(read("critical"), Some(10));
        assert_eq!(read("sheddable"), Some(-5));
        assert_eq!(read("something-else"), Some(0));
        assert_eq!(read(" "), None);
        assert_eq!(gateway.read(&attributes(&[])), GatewayHeaders::default());
    }

    #[test]
    fn the_fairness_id_is_taken_when_sane() {
        let gateway = Gateway::new(Some(&config(true))).expect("trusted");
        let read = |id: &str| {
            gateway
                .read(&attributes(&[(FAIRNESS_ID_HEADER, id)]))
                .fairness_id
        };
        assert_eq!(read("user-7").as_deref(), Some("user-7"));
        assert_eq!(read(""), None);
        assert_eq!(
            read(&"x".repeat(MAX_FAIRNESS_ID)).map(|id| id.len()),
            Some(MAX_FAIRNESS_ID)
        );
        assert_eq!(read(&"x".repeat(MAX_FAIRNESS_ID + 1)), None);
    }
}
