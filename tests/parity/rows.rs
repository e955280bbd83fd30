// Included by the unit tests of both crates (`kafka-events/src/names.rs`,
// `kafka-events-macros/src/attr.rs`): the rows of `tests/parity/names.tsv` they both check.

/// `(kind, input, expected)` per row of `table`; `unit*n` inputs are expanded to `unit`
/// repeated `n` times.
fn parity_rows(table: &'static str) -> Vec<(&'static str, String, &'static str)> {
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|row| {
            let mut fields = row.split('\t');
            let (kind, input, expected) =
                (fields.next().unwrap_or(""), fields.next().unwrap_or(""), fields.next().unwrap_or(""));
            let input = match input.split_once('*').map(|(unit, n)| (unit, n.parse::<usize>())) {
                Some((unit, Ok(n))) => unit.repeat(n),
                _ => input.to_string(),
            };
            (kind, input, expected)
        })
        .collect()
}
