//! Reading a process's `/metrics` the way Prometheus's text format puts
//! it: one `name{labels} value` line per sample.

use anyhow::Result;

/// The `/metrics` text of the process at `base_url`.
pub async fn scrape(base_url: &str) -> Result<String> {
    Ok(reqwest::get(format!("{base_url}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The value of the sample `series` (name and labels, exactly as
/// exposed) in `scrape`, if present.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    let series = series.trim_end();
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// [`sample`] of a fresh [`scrape`].
pub async fn metric(base_url: &str, series: &str) -> Result<Option<f64>> {
    Ok(sample(&scrape(base_url).await?, series))
}
