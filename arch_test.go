package cim_test

// The architecture, locked: which project package may import which (the
// import direction of docs/architecture.md), and no fmt.Print* in library
// code (libraries log through slog or return errors). Like pebble's
// forbidden-imports test, it fails on the first edge nobody agreed to.

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/cimgo/cim"

// allowed lists, per project package, the project packages it may import
// (outside its own tests). A package not listed may import none.
var allowed = map[string][]string{
	"broker/mqtt":    {},
	"broker/wire":    {},
	"broker/topic":   {},
	"storage":        {},
	"internal/mp":    {},
	"cluster":        {"internal/mp"},
	"client":         {"broker/wire"},
	"broker":         {"broker/mqtt", "broker/wire", "broker/topic", "storage", "cluster", "internal/mp"},
	"broker/httpapi": {"broker", "broker/mqtt", "broker/wire", "broker/topic", "storage", "cluster"},
	"bench":          {"client", "broker/wire", "broker/mqtt"},
	"chat":           {"client", "broker/wire"},
	"cmd/cim":        {"*"},
}

// thirdParty lists, for the leaves, the only non-standard imports allowed.
var thirdParty = map[string][]string{
	"broker/mqtt":  {"github.com/mochi-mqtt/server/v2/packets"},
	"broker/wire":  {"github.com/vmihailenco/msgpack/v5"},
	"broker/topic": {},
	"internal/mp":  {},
	"client":       {"github.com/vmihailenco/msgpack/v5"},
}

type listed struct {
	ImportPath string
	Dir        string
	Imports    []string
	GoFiles    []string
	Name       string
	Standard   bool
}

func packages(t *testing.T) []listed {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportDirection(t *testing.T) {
	std := map[string]bool{}
	out, err := exec.Command("go", "list", "std").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		std[p] = true
	}
	for _, p := range packages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "" {
			continue // this test's own package
		}
		ok, listedPkg := allowed[rel]
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				if tp, leaf := thirdParty[rel]; leaf && !std[imp] && !contains(tp, imp) {
					t.Errorf("%s imports %s: a leaf uses only the standard library and %v", rel, imp, tp)
				}
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if strings.HasPrefix(dep, "cmd/") {
				t.Errorf("%s imports %s: nothing imports cmd", rel, dep)
			}
			if !listedPkg {
				t.Errorf("%s imports %s, but %s is not in the allowed table (add it deliberately)", rel, dep, rel)
				continue
			}
			if !contains(ok, "*") && !contains(ok, dep) {
				t.Errorf("%s imports %s: not an allowed edge (allowed: %v)", rel, dep, ok)
			}
		}
	}
}

func TestNoPrintInLibraries(t *testing.T) {
	for _, p := range packages(t) {
		if p.Name == "main" {
			continue
		}
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "fmt" && strings.HasPrefix(sel.Sel.Name, "Print") {
					t.Errorf("%s: fmt.%s in library code: log with slog or return an error", path, sel.Sel.Name)
				}
				return true
			})
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
