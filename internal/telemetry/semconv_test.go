package telemetry

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// TestOneSemconvVersion: every package of the module imports the semantic
// conventions of one version, the SDK's own, so that attributes and the
// resource's schema URL agree.
func TestOneSemconvVersion(t *testing.T) {
	if sdk := resource.Default().SchemaURL(); sdk != semconv.SchemaURL {
		t.Errorf("the SDK's schema is %s, this module's %s", sdk, semconv.SchemaURL)
	}
	const want = "go.opentelemetry.io/otel/semconv/v1.43.0"
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "go.opentelemetry.io/otel/semconv/") && p != want && !strings.HasPrefix(p, want+"/") {
				t.Errorf("%s imports %s, want %s", path, p, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
