"""Parse an OpenMetrics exposition from stdin with the Prometheus Python
client's parser, which enforces the specification (one family per name, no
metadata after samples, canonical numbers, valid exemplars, a final # EOF).

Prints one line per family, "<name> <type> <samples>", and exits 0; on the
first violation, prints the parser's message to stderr and exits 1. Run by
TestMetricsExpositionStrict (cmd/flashsale/exposition_test.go).
"""

import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

try:
    for family in text_string_to_metric_families(sys.stdin.read()):
        print(family.name, family.type, len(family.samples))
except ValueError as err:
    print(f"invalid OpenMetrics: {err}", file=sys.stderr)
    sys.exit(1)
