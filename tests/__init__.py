"""The test suite, a package so that its parts import each other by full name
(`tests.kit...`, `tests.kit.jobs`) rather than by a bare name pytest put on
the path. See tests/kit for what tests and benchmarks share."""
