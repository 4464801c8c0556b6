package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildStamp builds the service as the Makefile and the Dockerfile do,
// with the version and revision given through -ldflags, and runs it: the
// first log line names them. (Telemetry turns them into service.version and
// flashsale_build_info: internal/telemetry's tests.) An exporter name that
// does not exist makes the service exit right after that line, before it
// needs a database.
func TestBuildStamp(t *testing.T) {
	const flags = "-X main.version=v9.9.9-test -X main.revision=0123456789abcdef"
	for _, path := range []string{"../../Makefile", "../../Dockerfile"} {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"-X main.version=", "-X main.revision="} {
			if !bytes.Contains(src, []byte(want)) {
				t.Errorf("%s does not stamp the build with %s", filepath.Base(path), want)
			}
		}
	}

	bin := filepath.Join(t.TempDir(), "flashsale")
	if out, err := exec.Command("go", "build", "-ldflags", flags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"DATABASE_URL=postgres://flashsale@127.0.0.1:1/none", "REDIS_URL=redis://127.0.0.1:1/0",
		"LOG_LEVEL=info", "HTTP_ADDR=127.0.0.1:0", "OTEL_TRACES_EXPORTER=not-an-exporter",
	}
	out, err := cmd.Output()
	if err == nil {
		t.Fatalf("the service started with OTEL_TRACES_EXPORTER=not-an-exporter:\n%s", out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	if !sc.Scan() {
		t.Fatalf("no log line; stdout %q", out)
	}
	var first struct{ Msg, Version, Revision string }
	if err := json.Unmarshal(sc.Bytes(), &first); err != nil {
		t.Fatalf("first log line %q: %v", sc.Text(), err)
	}
	if first.Msg != "starting" || first.Version != "v9.9.9-test" || first.Revision != "0123456789abcdef" {
		t.Errorf("first log line %s: want starting, version v9.9.9-test, revision 0123456789abcdef", strings.TrimSpace(sc.Text()))
	}
}
