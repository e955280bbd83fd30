//! Compile errors of `#[kafka_handler]`: one case per message, pinned in `tests/ui/fail/*.stderr`.
//! Regenerate after an intended change with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn misuse_is_a_spanned_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
}
