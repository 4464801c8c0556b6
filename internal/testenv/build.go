package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildMu  sync.Mutex
	buildDir string
	builds   = map[string]error{} // package -> build error, once built
)

// Command builds a main package of the module (an import path) once per test
// process and returns the binary's path, for tests that run the service or
// the load generator as an operator does: as processes that can be signalled
// and killed. Call RemoveCommands from TestMain once the tests are done.
func Command(tb testing.TB, pkg string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "flashsale-test-bin-")
		if err != nil {
			tb.Fatal(err)
		}
		buildDir = dir
	}
	bin := filepath.Join(buildDir, filepath.Base(pkg))
	err, done := builds[pkg]
	if !done {
		var gobin string
		gobin, err = exec.LookPath("go") // go test puts $GOROOT/bin first on PATH
		if err == nil {
			if out, berr := exec.Command(gobin, "build", "-o", bin, pkg).CombinedOutput(); berr != nil {
				err = fmt.Errorf("go build %s: %v\n%s", pkg, berr, out)
			}
		}
		builds[pkg] = err
	}
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// RemoveCommands removes the binaries Command built.
func RemoveCommands() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir = ""
		clear(builds)
	}
}
