package client

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The import rules of DESIGN.md: client imports only broker/wire of the
// project; broker/wire only the standard library and msgpack.
func TestImports(t *testing.T) {
	check := func(dir string, allowed func(string) bool) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		if len(files) == 0 {
			t.Fatalf("no files in %s", dir)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range ast.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if !allowed(p) {
					t.Errorf("%s imports %s", f, p)
				}
			}
		}
	}
	std := func(p string) bool { return !strings.Contains(strings.SplitN(p, "/", 2)[0], ".") }
	check(".", func(p string) bool { return std(p) || p == "github.com/cimgo/cim/broker/wire" })
	check("../broker/wire", func(p string) bool { return std(p) || p == "github.com/vmihailenco/msgpack/v5" })
}
