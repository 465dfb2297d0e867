//! Figures of repeated timed runs, as the fleet bench and the `fleet_run` example print them
//! (`docs/PERFORMANCE.md`): the fastest and the median.

/// The smallest of `values` and their median (the mean of the middle two of an even number),
/// sorting them; `None` for no values.
pub fn min_and_median(values: &mut [f64]) -> Option<(f64, f64)> {
    values.sort_by(f64::total_cmp);
    let (fastest, n) = (*values.first()?, values.len());
    let median = match n % 2 {
        1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    };
    Some((fastest, median))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_number_is_the_mean_of_the_middle_two() {
        assert_eq!(min_and_median(&mut [3.0, 1.0, 2.0]), Some((1.0, 2.0)));
        assert_eq!(min_and_median(&mut [4.0, 1.0, 3.0, 2.0]), Some((1.0, 2.5)));
        assert_eq!(min_and_median(&mut [5.0]), Some((5.0, 5.0)));
        assert_eq!(min_and_median(&mut []), None);
    }
}
