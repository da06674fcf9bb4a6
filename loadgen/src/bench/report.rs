//! The results table: each figure beside its baseline from the same run, as a ratio.

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

struct Row {
    figure: String,
    value: String,
    baseline: String,
    ratio: String,
}

impl Report {
    /// A figure compared with a baseline measured in the same run: (value, unit) each.
    pub fn compare(
        &mut self,
        figure: &str,
        (value, unit): (f64, &str),
        baseline_name: &str,
        (baseline, baseline_unit): (f64, &str),
    ) {
        let row = Row {
            figure: figure.to_owned(),
            value: format!("{} {unit}", round(value)),
            baseline: format!("{baseline_name}: {} {baseline_unit}", round(baseline)),
            ratio: format!("{:.2}×", value / baseline),
        };
        println!(
            "  {}: {} ({}; ratio {})",
            row.figure, row.value, row.baseline, row.ratio
        );
        self.rows.push(row);
    }

    /// A figure with no baseline of its own (latencies, memory).
    pub fn figure(&mut self, figure: &str, value: String) {
        println!("  {figure}: {value}");
        self.rows.push(Row {
            figure: figure.to_owned(),
            value,
            baseline: "-".to_owned(),
            ratio: "-".to_owned(),
        });
    }

    pub fn markdown(&self) -> String {
        let mut out =
            String::from("| figure | value | baseline (same run) | ratio |\n|---|---|---|---|\n");
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                row.figure, row.value, row.baseline, row.ratio
            ));
        }
        out
    }
}

/// Three significant digits are all a shared machine's timings can support.
pub fn round(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let digits = value.abs().log10().floor() as i32;
    let decimals = (2 - digits).max(0) as usize;
    let scale = 10f64.powi(digits - 2).max(f64::MIN_POSITIVE);
    let rounded = if digits >= 2 {
        (value / scale).round() * scale
    } else {
        value
    };
    format!("{rounded:.decimals$}")
}
