"""Protocol compliance tests (Autobahn|Testsuite)."""
