//! The generator's own CPU time: on a small machine it competes with what it measures, so the
//! flood and the traffic report what they took.

/// This process's CPU time so far (all threads; clock ticks are 1/100 s on Linux).
pub fn own_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds this process used since `before` (an [`own_cpu_s`] reading), to 1/100 s.
pub fn cpu_since(before: Option<f64>) -> Option<f64> {
    own_cpu_s()
        .zip(before)
        .map(|(after, before)| ((after - before) * 100.0).round() / 100.0)
}
