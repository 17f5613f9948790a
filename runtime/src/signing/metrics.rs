//! Signature series: every verification by result, and failures by mode and reason.

use modelplane_config::SignatureMode;
use modelplane_verify::Failure;
use modelplane_verify::model_signing::SignedModel;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    model: String,
    version: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    model: String,
    version: String,
    mode: String,
    reason: String,
}

/// `modelplane_model_signature_verifications_total{model,version,result}` (`result` =
/// `Verified` or a failure reason) and
/// `modelplane_model_signature_failures_total{model,version,mode,reason}`.
#[derive(Clone, Debug, Default)]
pub struct SigningMetrics {
    verifications: Family<ResultLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
}

impl SigningMetrics {
    /// Adds both series to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "modelplane_model_signature_verifications",
            "Model signature verifications at load, by result",
            self.verifications.clone(),
        );
        registry.register(
            "modelplane_model_signature_failures",
            "Model signatures that did not verify at load, by mode and reason",
            self.failures.clone(),
        );
    }

    /// Counts one verification of `model` `version` under `mode`.
    pub fn record(
        &self,
        model: &str,
        version: &str,
        mode: SignatureMode,
        result: &Result<SignedModel, Failure>,
    ) {
        let label = match result {
            Ok(_) => "Verified",
            Err(failure) => failure.reason.as_str(),
        };
        self.verifications
            .get_or_create(&ResultLabels {
                model: model.to_owned(),
                version: version.to_owned(),
                result: label.to_owned(),
            })
            .inc();
        if let Err(failure) = result {
            self.failures
                .get_or_create(&FailureLabels {
                    model: model.to_owned(),
                    version: version.to_owned(),
                    mode: mode.as_str().to_owned(),
                    reason: failure.reason.as_str().to_owned(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use modelplane_verify::FailureReason;

    use super::*;

    fn exposition(metrics: &SigningMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn a_failure_is_counted_by_result_and_by_mode_and_reason() {
        let metrics = SigningMetrics::default();
        let failure = Err(Failure::new(FailureReason::WrongKey, "other key"));
        metrics.record("m", "2", SignatureMode::Audit, &failure);
        let text = exposition(&metrics);
        assert!(
            text.contains(r#"modelplane_model_signature_verifications_total{model="m",version="2",result="WrongKey"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modelplane_model_signature_failures_total{model="m",version="2",mode="Audit",reason="WrongKey"} 1"#),
            "{text}"
        );
    }
}
