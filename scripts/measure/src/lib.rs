//! Nothing to see here: the measurements are the `measure` bench target
//! (`benches/measure/`), run by `scripts/bench`. A bench target needs a
//! package, and a package needs a library or a binary.
