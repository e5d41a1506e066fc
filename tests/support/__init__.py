"""What the tests share: config and event builders, a real git repository,
the daemon as a subprocess, and bounded waiting. One home for each helper, so
no suite keeps its own copy."""
