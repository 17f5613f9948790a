//! `spec.fallback` in the runtime config: the breaker thresholds of the model's versions
//! and its chain (the fallback ModelDeployment's Service over OIP gRPC, then the fixed
//! answer).

use modelplane_api::model_deployment::{self as md, FixedDatatype};
use modelplane_config::{
    self as rc, BreakerConfig, Duration, FallbackHop, FixedValue, RemoteModel, RuntimeConfig,
};

use super::{GRPC_PORT, Owner};
use crate::health::Blocker;

/// Puts `owner`'s breaker and chain on every model of `config`. The fallback
/// ModelDeployment's hop needs the model name it serves (`owner.fallback_model`); while
/// it is unknown (that ModelDeployment is not there) the hop is left out and the chain
/// goes on with the fixed answer.
pub fn apply_fallback(config: &mut RuntimeConfig, owner: &Owner<'_>) -> Result<(), Blocker> {
    let Some(fallback) = &owner.spec.fallback else {
        return Ok(());
    };
    let breaker = breaker(fallback.breaker.as_ref())?;
    let chain = chain(owner, fallback)?;
    for model in &mut config.models {
        model.breaker = Some(breaker.clone());
        model.fallback.clone_from(&chain);
    }
    Ok(())
}

fn invalid(message: String) -> Blocker {
    Blocker {
        reason: "InvalidFallback",
        message,
    }
}

fn duration(field: &str, text: Option<&String>, default: Duration) -> Result<Duration, Blocker> {
    match text {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|error| invalid(format!("spec.fallback.{field}: {error}"))),
    }
}

fn count(field: &str, value: Option<i32>, default: u32) -> Result<u32, Blocker> {
    match value {
        None => Ok(default),
        Some(value) => u32::try_from(value)
            .map_err(|_| invalid(format!("spec.fallback.{field} must not be negative"))),
    }
}

fn breaker(spec: Option<&md::Breaker>) -> Result<BreakerConfig, Blocker> {
    let d = BreakerConfig::default();
    let Some(b) = spec else {
        return Ok(d);
    };
    Ok(BreakerConfig {
        window: duration("breaker.window", b.window.as_ref(), d.window)?,
        min_requests: count("breaker.minRequests", b.min_requests, d.min_requests)?,
        error_percent: count("breaker.errorPercent", b.error_percent, d.error_percent)?,
        baseline_factor: count(
            "breaker.baselineFactor",
            b.baseline_factor,
            d.baseline_factor,
        )?,
        min_error_percent: count(
            "breaker.minErrorPercent",
            b.min_error_percent,
            d.min_error_percent,
        )?,
        open_for: duration("breaker.openFor", b.open_for.as_ref(), d.open_for)?,
        max_open_for: duration(
            "breaker.maxOpenFor",
            b.max_open_for.as_ref(),
            d.max_open_for,
        )?,
        probes: count("breaker.probes", b.probes, d.probes)?,
    })
}

fn chain(owner: &Owner<'_>, fallback: &md::Fallback) -> Result<Vec<FallbackHop>, Blocker> {
    let mut chain = Vec::new();
    if let Some(name) = &fallback.model_deployment {
        if *name == owner.name {
            return Err(invalid(format!(
                "spec.fallback.modelDeployment names this ModelDeployment ({name}) itself"
            )));
        }
        if owner.spec.model.as_ref().map(|m| m.task) == Some(md::Task::Generate) {
            return Err(invalid(
                "spec.fallback.modelDeployment: a generate model falls back to a fixed text \
                 (spec.fallback.response.text), not to another ModelDeployment"
                    .into(),
            ));
        }
        if let Some(model) = &owner.fallback_model {
            let default_timeout = Duration::from_millis(5_000);
            chain.push(FallbackHop::Grpc(RemoteModel {
                address: format!("http://{name}.{}.svc:{GRPC_PORT}", owner.namespace),
                model: model.clone(),
                timeout: duration("timeout", fallback.timeout.as_ref(), default_timeout)?,
            }));
        }
    }
    if let Some(response) = &fallback.response {
        chain.push(FallbackHop::Response(fixed(response)?));
    }
    Ok(chain)
}

fn fixed(response: &md::FixedResponse) -> Result<rc::FixedResponse, Blocker> {
    let outputs = response
        .outputs
        .iter()
        .enumerate()
        .map(|(at, tensor)| {
            let data = tensor
                .data
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    value(tensor.datatype, text).ok_or_else(|| {
                        invalid(format!(
                            "spec.fallback.response.outputs[{at}].data[{i}]: {text:?} is not a {}",
                            tensor.datatype.as_str()
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(rc::FixedTensor {
                name: tensor.name.clone(),
                datatype: tensor.datatype.as_str().to_owned(),
                shape: tensor.shape.clone(),
                data,
            })
        })
        .collect::<Result<_, Blocker>>()?;
    Ok(rc::FixedResponse {
        outputs,
        text: response.text.clone(),
    })
}

/// One element from its text form; ranges are the runtime config's to check.
fn value(datatype: FixedDatatype, text: &str) -> Option<FixedValue> {
    match datatype {
        FixedDatatype::Bool => text.parse().ok().map(FixedValue::Bool),
        FixedDatatype::Bytes => Some(FixedValue::Text(text.to_owned())),
        _ => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(FixedValue::Number),
    }
}
