//! A whole run: settle the input tensor, connect, warm up, measure, report.

use std::path::PathBuf;

use crate::Error;
use crate::client::{self, Client, Protocol, Target, TensorSpec};
use crate::load::{self, Limits};
use crate::report::{Mode, Recorder, Report, Scenario};
use crate::schedule::{Arrivals, Schedule};
use crate::tensor::{DataType, InputTensor, parse_datatype};

/// The input to send; what is left unset comes from the model metadata.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub name: Option<String>,
    pub datatype: Option<DataType>,
    pub shape: Option<Vec<i64>>,
    /// Replaces a free (`-1`) first dimension of the metadata shape.
    pub batch: i64,
    /// Raw little-endian elements; random values when unset.
    pub file: Option<PathBuf>,
    /// Seed for random values (and Poisson arrivals).
    pub seed: u64,
}

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    Closed {
        concurrency: usize,
    },
    Open {
        rate: f64,
        arrivals: Arrivals,
        max_in_flight: usize,
    },
}

impl Load {
    /// How the report describes this load.
    pub fn mode(&self) -> Mode {
        match *self {
            Self::Closed { concurrency } => Mode::Closed { concurrency },
            Self::Open { rate, arrivals, .. } => Mode::Open { rate, arrivals },
        }
    }
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Free text copied into the report.
    pub label: String,
    pub protocol: Protocol,
    pub target: Target,
    pub input: Input,
    pub load: Load,
    pub limits: Limits,
    /// Requests sent first, at the run's concurrency, and not counted.
    pub warmup_requests: u64,
}

/// Runs `plan` and summarises it.
pub async fn run(plan: &Plan) -> Result<Report, Error> {
    let tensor = input_tensor(plan).await?;
    let connections = match plan.load {
        Load::Closed { concurrency } => concurrency,
        Load::Open { max_in_flight, .. } => max_in_flight,
    };
    let client = Client::connect(plan.protocol, &plan.target, &tensor, connections).await?;
    let warmup_concurrency = match plan.load {
        Load::Closed { concurrency } => concurrency,
        Load::Open { .. } => 1,
    };
    if plan.warmup_requests > 0 {
        let warmup = Limits {
            requests: plan.warmup_requests,
            duration: plan.limits.duration,
        };
        load::closed_loop::<_, Recorder>(&client, warmup_concurrency, warmup).await;
    }
    let measured: load::Measured<Recorder> = match plan.load {
        Load::Closed { concurrency } => load::closed_loop(&client, concurrency, plan.limits).await,
        Load::Open {
            rate,
            arrivals,
            max_in_flight,
        } => {
            let schedule = Schedule::new(arrivals, rate, plan.input.seed);
            load::open_loop(&client, schedule, max_in_flight, plan.limits).await
        }
    };
    let scenario = scenario(plan, &tensor);
    Ok(Report::new(
        scenario,
        &measured.tally,
        measured.elapsed,
        tensor.rows(),
    ))
}

/// The tensor `plan` sends: flags first, the model metadata for the rest.
pub async fn input_tensor(plan: &Plan) -> Result<InputTensor, Error> {
    let input = &plan.input;
    let complete = input.name.is_some() && input.datatype.is_some() && input.shape.is_some();
    let metadata = if complete {
        None
    } else {
        Some(client::first_input(plan.protocol, &plan.target).await?)
    };
    let (name, datatype, shape) = resolve_input(input, metadata)?;
    match &input.file {
        Some(path) => InputTensor::from_file(name, datatype, shape, path),
        None => InputTensor::random(name, datatype, shape, input.seed),
    }
}

/// Name, datatype and concrete shape: flags first, metadata for the rest.
pub fn resolve_input(
    input: &Input,
    metadata: Option<TensorSpec>,
) -> Result<(String, DataType, Vec<i64>), Error> {
    let missing = || Error::Metadata("no metadata to fill in the input".into());
    let name = match (&input.name, &metadata) {
        (Some(name), _) => name.clone(),
        (None, Some(spec)) => spec.name.clone(),
        (None, None) => return Err(missing()),
    };
    let datatype = match (input.datatype, &metadata) {
        (Some(datatype), _) => datatype,
        (None, Some(spec)) => parse_datatype(&spec.datatype)?,
        (None, None) => return Err(missing()),
    };
    let shape = match (&input.shape, &metadata) {
        (Some(shape), _) => shape.clone(),
        (None, Some(spec)) => concrete_shape(&spec.shape, input.batch)?,
        (None, None) => return Err(missing()),
    };
    Ok((name, datatype, shape))
}

fn concrete_shape(shape: &[i64], batch: i64) -> Result<Vec<i64>, Error> {
    let mut concrete = shape.to_vec();
    if let Some(first) = concrete.first_mut()
        && *first < 0
    {
        *first = batch;
    }
    if concrete.iter().any(|dim| *dim < 0) {
        return Err(Error::FreeDimension(shape.to_vec()));
    }
    Ok(concrete)
}

fn scenario(plan: &Plan, tensor: &InputTensor) -> Scenario {
    let mode = plan.load.mode();
    Scenario {
        label: plan.label.clone(),
        protocol: plan.protocol.as_str().to_owned(),
        url: plan.target.url.clone(),
        model: plan.target.model.clone(),
        model_version: plan.target.version.clone(),
        input: tensor.name.clone(),
        datatype: tensor.datatype.as_str().to_owned(),
        shape: tensor.shape.clone(),
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TensorSpec {
        TensorSpec {
            name: "input__0".into(),
            datatype: "FP32".into(),
            shape: vec![-1, 784],
        }
    }

    #[test]
    fn metadata_fills_what_flags_leave_out_and_batch_fills_the_free_dim() {
        let input = Input {
            batch: 8,
            ..Input::default()
        };
        let (name, datatype, shape) = resolve_input(&input, Some(spec())).unwrap();
        assert_eq!(name, "input__0");
        assert_eq!(datatype, DataType::Fp32);
        assert_eq!(shape, vec![8, 784]);
    }

    #[test]
    fn flags_win_over_metadata() {
        let input = Input {
            name: Some("x".into()),
            datatype: Some(DataType::Fp16),
            shape: Some(vec![2, 784]),
            batch: 8,
            ..Input::default()
        };
        let (name, datatype, shape) = resolve_input(&input, Some(spec())).unwrap();
        assert_eq!(
            (name.as_str(), datatype, shape),
            ("x", DataType::Fp16, vec![2, 784])
        );
    }

    #[test]
    fn a_free_inner_dimension_needs_an_explicit_shape() {
        let mut s = spec();
        s.shape = vec![-1, -1];
        let input = Input {
            batch: 1,
            ..Input::default()
        };
        assert!(matches!(
            resolve_input(&input, Some(s)),
            Err(Error::FreeDimension(_))
        ));
    }

    #[test]
    fn unknown_metadata_datatype_is_an_error() {
        let mut s = spec();
        s.datatype = "BYTES".into();
        assert!(matches!(
            resolve_input(&Input::default(), Some(s)),
            Err(Error::UnknownDatatype(_))
        ));
    }
}
