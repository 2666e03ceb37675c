//! The latency table printed after a conversation: p50 and p95 of each stage over all turns.

use voicebackend::VbTurnMetrics;

/// Percentile `p` (0–100) of `values` by nearest rank; `None` when empty.
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// Picks one stage's latency out of a turn's metrics.
type Stage = fn(&VbTurnMetrics) -> u64;

/// Formats the table for the turns' metrics.
pub fn latency_table(turns: &[VbTurnMetrics]) -> String {
    let stages: [(&str, Stage); 4] = [
        ("final transcript (STT)", |m| m.stt_final_us),
        ("first reply text (agent)", |m| m.agent_first_text_us),
        ("first synthesized audio (TTS)", |m| m.tts_first_audio_us),
        ("first reply sample (voice to voice)", |m| {
            m.first_output_audio_us
        }),
    ];
    let ms =
        |us: Option<u64>| us.map_or("-".to_owned(), |us| format!("{:.0} ms", us as f64 / 1000.0));
    let mut out = format!(
        "Latency from the end of user speech over {} turn(s):\n  {:<38} {:>9} {:>9}\n",
        turns.len(),
        "stage",
        "p50",
        "p95"
    );
    for (name, stage) in stages {
        let values: Vec<u64> = turns.iter().map(stage).filter(|&v| v > 0).collect();
        out += &format!(
            "  {:<38} {:>9} {:>9}\n",
            name,
            ms(percentile(&values, 50.0)),
            ms(percentile(&values, 95.0))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 50.0), Some(10));
        assert_eq!(percentile(&v, 95.0), Some(19));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_table_lists_every_stage() {
        let m = VbTurnMetrics {
            stt_final_us: 600_000,
            agent_first_text_us: 601_000,
            tts_first_audio_us: 640_000,
            first_output_audio_us: 650_000,
        };
        let table = latency_table(&[m]);
        assert!(
            table.contains("voice to voice") && table.contains("650 ms"),
            "{table}"
        );
    }
}
