//! An in-memory registry for reconcile tests: tags, signatures, private hosts and outages,
//! no I/O.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use futures::future::BoxFuture;
use modelplane_verify::{Failure, FailureReason, Mode};

use super::{ArtifactVerifier, Check, Checked, Pins, Signed};

/// Tags, signed digests and whether the registry answers.
#[derive(Debug, Default)]
pub struct FakeRegistry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tags: HashMap<String, String>,
    signed: HashSet<String>,
    refused: HashMap<String, FailureReason>,
    private: HashSet<String>,
    unreachable: bool,
    checks: usize,
}

impl FakeRegistry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Points `reference` (a tag) at `digest` (`sha256:…`).
    pub fn tag(&self, reference: &str, digest: &str) -> &Self {
        self.state()
            .tags
            .insert(reference.to_owned(), digest.to_owned());
        self
    }

    /// Publishes a valid signature for `digest`.
    pub fn sign(&self, digest: &str) -> &Self {
        self.state().signed.insert(digest.to_owned());
        self
    }

    /// Makes the verification of `digest` fail with `reason` (e.g. `WrongKey`, `TagMoved`).
    pub fn refuse(&self, digest: &str, reason: FailureReason) -> &Self {
        self.state().refused.insert(digest.to_owned(), reason);
        self
    }

    /// Makes `host` refuse checks whose credentials do not name it.
    pub fn private(&self, host: &str) -> &Self {
        self.state().private.insert(host.to_owned());
        self
    }

    /// Makes every check fail as unreachable (or answer again).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.state().unreachable = unreachable;
    }

    /// How many checks were asked so far.
    pub fn checks(&self) -> usize {
        self.state().checks
    }

    fn answer(&self, check: &Check) -> Checked {
        let mut state = self.state();
        state.checks += 1;
        if state.unreachable {
            let failure = Failure::new(
                FailureReason::RegistryUnreachable,
                "registry.example: connection refused",
            );
            return Checked {
                result: Err(failure),
                pins: None,
            };
        }
        if let Some(failure) = unauthorized(&state, check) {
            return Checked {
                result: Err(failure),
                pins: None,
            };
        }
        let resolved = resolve(&state, &check.image).and_then(|image| {
            let model = check
                .model_oci
                .as_deref()
                .map(|m| resolve(&state, m))
                .transpose()?;
            Ok(Pins {
                image: image.0,
                image_digest: image.1,
                model_digest: model.as_ref().map(|m| m.1.clone()),
                model_oci: model.map(|m| m.0),
            })
        });
        let pins = match resolved {
            Ok(pins) => pins,
            Err(failure) => {
                return Checked {
                    result: Err(failure),
                    pins: None,
                };
            }
        };
        let failure = [Some(&pins.image_digest), pins.model_digest.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|digest| verification_failure(&state, digest));
        match (check.mode, failure) {
            (Mode::Disabled, _) => signed(pins, None),
            (_, None) => {
                let signer = check.keys.keys().first().map(|k| k.name().to_owned());
                signed(pins, signer)
            }
            // Like the real verifier, Audit resolves what failed (unless it is unreachable).
            (mode, Some(failure)) => Checked {
                pins: (mode == Mode::Audit && !failure.is_retryable()).then_some(pins),
                result: Err(failure),
            },
        }
    }
}

/// Why `digest` does not verify: the reason it was refused with, or no signature.
fn verification_failure(state: &State, digest: &str) -> Option<Failure> {
    match state.refused.get(digest) {
        Some(reason) => Some(Failure::new(*reason, format!("{reason} for {digest}"))),
        None if !state.signed.contains(digest) => Some(Failure::new(
            FailureReason::NoSignature,
            format!("no signature for {digest}"),
        )),
        None => None,
    }
}

fn signed(pins: Pins, signer: Option<String>) -> Checked {
    Checked {
        result: Ok(Signed {
            signer,
            from_cache: false,
        }),
        pins: Some(pins),
    }
}

/// The refusal of the first private host the check names without credentials for it.
fn unauthorized(state: &State, check: &Check) -> Option<Failure> {
    let hosts = std::iter::once(&check.image)
        .chain(&check.model_oci)
        .filter_map(|reference| reference.split_once('/').map(|(host, _)| host));
    let refused = hosts
        .filter(|host| state.private.contains(*host))
        .find(|host| {
            check
                .credentials
                .as_ref()
                .and_then(|c| c.credentials_for(host))
                .is_none()
        })?;
    Some(Failure::new(
        FailureReason::RegistryUnauthorized,
        format!("{refused}: unauthorized"),
    ))
}

/// `(pinned reference, digest)` of `reference`.
fn resolve(state: &State, reference: &str) -> Result<(String, String), Failure> {
    if let Some((_, digest)) = reference.split_once('@') {
        return Ok((reference.to_owned(), digest.to_owned()));
    }
    let digest = state.tags.get(reference).ok_or_else(|| {
        Failure::new(
            FailureReason::ArtifactNotFound,
            format!("{reference} not found"),
        )
    })?;
    Ok((format!("{reference}@{digest}"), digest.clone()))
}

impl ArtifactVerifier for FakeRegistry {
    fn check<'a>(&'a self, check: &'a Check) -> BoxFuture<'a, Checked> {
        Box::pin(std::future::ready(self.answer(check)))
    }
}
