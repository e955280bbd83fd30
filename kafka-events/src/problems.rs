//! The one shape of "every problem at once": a start-up check (configuration, handler topology,
//! topic provisioning) collects every problem it finds and fails with all of them, under one
//! heading, one problem per line.

use std::fmt;

/// One kind of problem a start-up check lists, and the heading its list goes under.
pub trait Problem: fmt::Display + fmt::Debug {
    /// What the list says, before its count: `invalid configuration`.
    const HEADING: &'static str;
}

/// Every problem a start-up check found.
///
/// ```text
/// invalid configuration (2 problems):
///   - KAFKA_BROKERS: `localhost` is not `host:port`
///   - SERVICE_NAME: required: it names the consumer groups (`${SERVICE_NAME}-main`)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems<P> {
    /// Every problem found, in the order found.
    pub problems: Vec<P>,
}

impl<P: Problem> Problems<P> {
    /// `Ok` when `problems` is empty, the list otherwise.
    pub(crate) fn check(problems: Vec<P>) -> Result<(), Self> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Self { problems })
        }
    }
}

impl<P: Problem> fmt::Display for Problems<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{} ({n} problem{}):", P::HEADING, if n == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl<P: Problem> std::error::Error for Problems<P> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Bad(&'static str);
    impl fmt::Display for Bad {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Problem for Bad {
        const HEADING: &'static str = "bad things";
    }

    #[test]
    fn one_heading_then_one_problem_per_line() {
        assert!(Problems::<Bad>::check(vec![]).is_ok());
        let one = Problems::check(vec![Bad("a")]).unwrap_err();
        assert_eq!(one.to_string(), "bad things (1 problem):\n  - a");
        let two = Problems::check(vec![Bad("a"), Bad("b")]).unwrap_err();
        assert_eq!(two.to_string(), "bad things (2 problems):\n  - a\n  - b");
    }
}
