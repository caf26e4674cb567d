//! Exponential backoff, the one shape every retry in warden uses: the first
//! pause is `base`, each next one doubles, none exceeds `max`. Integer
//! arithmetic on purpose: `apply` computes an action's retry time with it,
//! and a replicated state machine must get the same millisecond on every
//! replica (backoff crates multiply `f32` seconds, which is neither exact
//! nor what a reader of `backoff_ms = 200` expects). No jitter: callers that
//! retry against a shared resource add their own spread where it matters.

use std::time::Duration;

/// Pauses `base, 2·base, 4·base, …` capped at `max`, without end.
pub fn exponential(base: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    let mut next = base.min(max);
    std::iter::repeat_with(move || {
        let pause = next;
        next = next.saturating_mul(2).min(max);
        pause
    })
}

/// The `n`-th pause (1-based) of `exponential(base, max)`.
pub fn nth(base: Duration, max: Duration, n: usize) -> Duration {
    exponential(base, max).nth(n.saturating_sub(1)).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_base_and_stop_at_max() {
        let ms = Duration::from_millis;
        let pauses: Vec<Duration> = exponential(ms(20), ms(100)).take(5).collect();
        assert_eq!(pauses, [ms(20), ms(40), ms(80), ms(100), ms(100)]);
        assert_eq!(nth(ms(20), ms(2_000), 1), ms(20));
        assert_eq!(nth(ms(20), ms(2_000), 3), ms(80));
        assert_eq!(nth(ms(20), ms(2_000), 30), ms(2_000));
        // An action's retries: 7 ms doubled 13 times is 57 344 ms; the next is capped at a minute.
        assert_eq!(nth(ms(7), ms(60_000), 14), ms(57_344));
        assert_eq!(nth(ms(7), ms(60_000), 15), ms(60_000));
    }
}
