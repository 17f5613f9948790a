//! The few distributions the tests need, in plain `f64` (no statistics crate): the
//! normal quantile, Wilson score bounds, the exact one-sided binomial test and Fisher's
//! exact one-sided test.

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error below 1e-13).
pub fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEFFICIENTS[0];
    let t = x + 7.5;
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `ln C(n, k)`.
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// The standard normal quantile `Φ⁻¹(p)` for `0 < p < 1` (Acklam's rational
/// approximation, relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Wilson score interval bound for `k` successes in `n` trials with normal quantile `z`
/// (`z > 0`: the upper bound, `z < 0`: the lower). `n = 0` gives 0 (lower) or 1 (upper).
fn wilson(k: f64, n: f64, z: f64) -> f64 {
    if n <= 0.0 {
        return if z < 0.0 { 0.0 } else { 1.0 };
    }
    let p = (k / n).clamp(0.0, 1.0);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre + spread) / (1.0 + z2 / n)).clamp(0.0, 1.0)
}

/// One-sided Wilson lower confidence bound of a proportion `k / n` at `confidence`.
pub fn wilson_lower(k: f64, n: f64, confidence: f64) -> f64 {
    wilson(k, n, -normal_quantile(confidence))
}

/// Sums a unimodal discrete pmf from `first` to `last` given `ln pmf(first)` and the
/// ratio `pmf(x + 1) / pmf(x)`, stopping once the terms are past the mode and negligible.
fn tail_sum(first: u64, last: u64, ln_first: f64, ratio: impl Fn(u64) -> f64) -> f64 {
    let mut term = ln_first.exp();
    let mut sum = term;
    let mut x = first;
    while x < last {
        let r = ratio(x);
        term *= r;
        sum += term;
        x += 1;
        if r < 1.0 && term <= sum * 1e-17 {
            break;
        }
    }
    sum.min(1.0)
}

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`: the p-value of the exact one-sided test that the
/// proportion is greater than `p`.
pub fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let ln_first = ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (-p).ln_1p();
    let odds = p / (1.0 - p);
    tail_sum(k, n, ln_first, |x| (n - x) as f64 / (x + 1) as f64 * odds)
}

/// Fisher's exact one-sided test that the candidate's proportion `kc / nc` is greater
/// than stable's `ks / ns`: `P(X ≥ kc)` for `X` hypergeometric given the margins (all
/// `kc + ks` events, `nc + ns` trials). Exact, conservative, and well-behaved at zero
/// counts (no events at all gives 1).
pub fn fisher_greater(kc: u64, nc: u64, ks: u64, ns: u64) -> f64 {
    let (kc, ks) = (kc.min(nc), ks.min(ns));
    let events = kc + ks;
    let total = nc + ns;
    if kc == 0 || nc == 0 {
        return 1.0;
    }
    let non_events = total - events;
    let last = events.min(nc);
    // ln pmf(kc) = ln C(events, kc) + ln C(non_events, nc − kc) − ln C(total, nc).
    let ln_first = ln_choose(events, kc) + ln_choose(non_events, nc - kc) - ln_choose(total, nc);
    tail_sum(kc, last, ln_first, |x| {
        let numerator = (events - x) as f64 * (nc - x) as f64;
        // x + 1 ≤ last ≤ nc, so non_events − nc + x + 1 ≥ 1 whenever the next term exists.
        let denominator = (x + 1) as f64 * (non_events + x + 1).saturating_sub(nc) as f64;
        if denominator == 0.0 {
            0.0
        } else {
            numerator / denominator
        }
    })
}
