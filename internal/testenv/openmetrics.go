package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// PythonBin is the Debian interpreter whose python3-prometheus-client
// package (installed by scripts/services.sh) holds the strict OpenMetrics
// parser; a python3 on PATH is tried first.
const PythonBin = "/usr/bin/python3"

// parseOpenMetrics reads an exposition on stdin with the Python client's
// OpenMetrics parser, which enforces the specification's rules (a family's
// metadata before its samples, one family per name, _total, _created and
// exemplar syntax, # EOF), and prints the number of samples that carry an
// exemplar.
const parseOpenMetrics = `
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
print(sum(1 for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples if s.exemplar))
`

// ParseOpenMetrics parses body with a strict OpenMetrics parser and returns
// how many samples carry an exemplar, or the parser's complaint. The test is
// skipped (failed with FLASHSALE_REQUIRE_SERVICES=1) when no parser is
// installed.
func ParseOpenMetrics(tb testing.TB, body string) (exemplars int, err error) {
	tb.Helper()
	python := ""
	for _, bin := range []string{"python3", PythonBin} {
		if exec.Command(bin, "-c", "import prometheus_client.openmetrics.parser").Run() == nil {
			python = bin
			break
		}
	}
	if python == "" {
		msg := "no python3 with prometheus_client (apt-get install python3-prometheus-client)"
		if os.Getenv("FLASHSALE_REQUIRE_SERVICES") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	cmd := exec.Command(python, "-c", parseOpenMetrics)
	cmd.Stdin = strings.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		return 0, fmt.Errorf("OpenMetrics parser: %s", lines[len(lines)-1])
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}
